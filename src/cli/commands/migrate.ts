// `ob-events migrate [--rollback [--all]]`: for banks that migrate as a deploy step.
import { openDatabase } from '../../db/database.js';
import { migrateLatest, migrateRollback } from '../../db/migrate.js';
import { announceDatabase, cliConfig, printJson } from '../context.js';

export async function migrate(opts: { rollback?: boolean; all?: boolean }): Promise<void> {
  const { config, logger } = cliConfig();
  announceDatabase(logger, config.database); // migrate may create the database: it says which
  const db = await openDatabase(config.database, logger, 'ob-events-migrate');
  try {
    if (opts.rollback) printJson({ reverted: await migrateRollback(db.knex, opts.all ?? false) });
    else printJson({ applied: await migrateLatest(db.knex) });
  } finally {
    await db.close();
  }
}
