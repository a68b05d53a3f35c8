// What every database-using command shares: config from the environment, a logger on stderr,
// the database (migrated when MIGRATE_ON_START allows, as `serve` does) and the services.
import { loadConfig, type Config } from '../config.js';
import { openDatabase } from '../db/database.js';
import { migrateLatest, pendingMigrations } from '../db/migrate.js';
import { createLogger, type Logger } from '../logger.js';
import { buildServices, type Services } from '../main.js';
import { CliError } from './index.js';

export function cliConfig(): { config: Config; logger: Logger } {
  const config = loadConfig();
  // Commands other than `serve` log only warnings unless LOG_LEVEL says otherwise.
  const level = process.env.LOG_LEVEL ? config.log.level : 'warn';
  return { config, logger: createLogger({ level, format: config.log.format, sync: true }) };
}

export async function withServices<T>(
  fn: (s: Services, config: Config, logger: Logger) => Promise<T>,
): Promise<T> {
  const { config, logger } = cliConfig();
  const db = await openDatabase(config.database, logger, 'ob-events-cli');
  try {
    if (config.database.migrateOnStart) {
      await migrateLatest(db.knex);
    } else if ((await pendingMigrations(db.knex)).length > 0) {
      throw new CliError('the database schema is not current: run `ob-events migrate` first');
    }
    const services = buildServices(config, db, logger);
    try {
      return await fn(services, config, logger);
    } finally {
      await services.signer.close();
    }
  } finally {
    await db.close();
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
