// What every database-using command shares: config from the environment, a logger on stderr,
// the database (migrated when MIGRATE_ON_START allows, as `serve` does) and the services.
// Two guards keep a command from quietly using the wrong database (issue 15): it says on stderr
// which database it opens, and it refuses one that does not exist yet (an embedded folder with
// no database in it, or a Postgres database that was never migrated): only `serve` and
// `migrate` create databases.
import type { Config } from '../config.js';
import { loadConfig } from '../config.js';
import type { Database } from '../db/database.js';
import { embeddedDatabaseExists } from '../db/embedded.js';
import { createLogger, type Logger } from '../logger.js';
import type { Services } from '../main.js';
import { CliError } from './index.js';

export function cliConfig(): { config: Config; logger: Logger } {
  const config = loadConfig();
  // Commands other than `serve` log only warnings unless LOG_LEVEL says otherwise.
  const level = process.env.LOG_LEVEL ? config.log.level : 'warn';
  return { config, logger: createLogger({ level, format: config.log.format, sync: true }) };
}

/** The database as an operator should see it: the URL without its password, or the data folder. */
export function describeDatabase(database: Config['database']): string {
  if (!database.url) return `embedded PGlite in ${database.dataDir}`;
  try {
    const u = new URL(database.url);
    if (u.password) u.password = '';
    for (const secret of ['password', 'sslpassword', 'sslkey']) u.searchParams.delete(secret);
    return u.toString();
  } catch {
    return 'Postgres (DATABASE_URL is not a URL)';
  }
}

/**
 * One log line naming the database, written before it is opened (so a failure to connect also
 * says where). It is written at `info` even when the command's level is `warn`: an operator
 * must always be able to see which database a command used; only LOG_LEVEL=silent hides it.
 */
export function announceDatabase(logger: Logger, database: Config['database']): void {
  if (logger.level === 'silent') return;
  const description = describeDatabase(database);
  logger.child({}, { level: 'info' }).info({ database: description }, `database: ${description}`);
}

/** Refuses to create an embedded database: only `serve` and `migrate` may (see the top). */
export function assertEmbeddedDatabaseExists(database: Config['database']): void {
  if (database.url || embeddedDatabaseExists(database.dataDir)) return;
  throw new CliError(
    `no database in ${database.dataDir}, and this command does not create one: point it at the ` +
      `server's database with DATABASE_URL (Postgres) or DATA_DIR (the server's data folder), ` +
      `or create one here with \`ob-events migrate\``,
  );
}

/** Opens the configured database for a command that must not create it; says which one. */
export async function openExistingDatabase(
  config: Config,
  logger: Logger,
  applicationName: string,
): Promise<Database> {
  announceDatabase(logger, config.database);
  assertEmbeddedDatabaseExists(config.database);
  // Loaded here, not at the top: `tpp` commands read the config and never touch a database.
  const { openDatabase } = await import('../db/database.js');
  const { migrateLatest, pendingMigrations, MIGRATIONS_TABLE } = await import('../db/migrate.js');
  const db = await openDatabase(config.database, logger, applicationName);
  try {
    if (!(await db.knex.schema.hasTable(MIGRATIONS_TABLE))) {
      throw new CliError(
        `${describeDatabase(config.database)} has no ob-events schema (never migrated): is it ` +
          `the server's database? Set DATABASE_URL or DATA_DIR to it, or run \`ob-events migrate\``,
      );
    }
    // Listing first (a read) keeps the usual case cheap; migrating takes the migration lock.
    if ((await pendingMigrations(db.knex)).length > 0) {
      if (!config.database.migrateOnStart) {
        throw new CliError('the database schema is not current: run `ob-events migrate` first');
      }
      const applied = await migrateLatest(db.knex);
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    }
    return db;
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

export async function withServices<T>(
  fn: (s: Services, config: Config, logger: Logger) => Promise<T>,
): Promise<T> {
  const { config, logger } = cliConfig();
  const db = await openExistingDatabase(config, logger, 'ob-events-cli');
  try {
    const { buildServices } = await import('../main.js');
    const services = buildServices(cliSigning(config), db, logger);
    try {
      return await fn(services, config, logger);
    } finally {
      await services.signer.close();
    }
  } finally {
    await db.close();
  }
}

/**
 * A command signs a few SETs: starting signing worker threads (an isolate each, loading jose)
 * costs more CPU than they save (~0.1 s of `events publish`, issue 15), so the CLI signs on the
 * main thread unless SIGNING_WORKERS is set in its environment.
 */
export function cliSigning(config: Config): Config {
  if (process.env.SIGNING_WORKERS) return config;
  return { ...config, keys: { ...config.keys, signingWorkers: 0 } };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
