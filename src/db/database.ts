// Opens the database: Postgres at DATABASE_URL, or the embedded PGlite (see embedded.ts).
// Either way the rest of the code gets a knex instance on the `pg` driver and a Notifier.
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { openEmbedded } from './embedded.js';
import { EmbeddedNotifier, PgNotifier, type Notifier } from './notifier.js';

// int8 (counts, bigint ids) as numbers: our values stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface Database {
  knex: Knex;
  kind: 'postgres' | 'embedded';
  notifier: Notifier;
  close(): Promise<void>;
}

export async function openDatabase(
  config: Config['database'],
  logger: Logger,
  applicationName = 'ob-events',
): Promise<Database> {
  if (config.url) {
    const knex = createKnex(config.url, config.poolMax, applicationName, logger);
    const notifier = new PgNotifier(config.url, logger);
    return {
      knex,
      kind: 'postgres',
      notifier,
      close: async () => {
        await notifier.close();
        await knex.destroy();
      },
    };
  }
  const embedded = await openEmbedded(config.dataDir, logger);
  const knex = createKnex(embedded.connectionString, config.poolMax, applicationName, logger);
  const notifier = new EmbeddedNotifier(embedded.notifications, knex, logger);
  return {
    knex,
    kind: 'embedded',
    notifier,
    close: async () => {
      await notifier.close();
      await knex.destroy();
      await embedded.close();
    },
  };
}

const CONNECTION_WARNING = /^(Acquire connection error|Connection Error)/;

export function createKnex(
  connectionString: string,
  poolMax: number,
  applicationName: string,
  logger?: Logger,
): Knex {
  return knexFactory({
    client: 'pg',
    connection: { connectionString, application_name: applicationName },
    pool: { min: 0, max: poolMax, idleTimeoutMillis: 30_000 },
    acquireConnectionTimeout: 10_000,
    // knex's own warnings (pool, deprecations) go to our logger, not to stdout.
    log: {
      // Connection errors come once per query during an outage, which outage.ts logs once.
      warn: (m: unknown) =>
        CONNECTION_WARNING.test(String(m))
          ? logger?.debug({ knex: String(m) }, 'knex')
          : logger?.warn({ knex: String(m) }, 'knex'),
      error: (m: unknown) => logger?.error({ knex: String(m) }, 'knex'),
      deprecate: (m: unknown) => logger?.debug({ knex: String(m) }, 'knex'),
      debug: (m: unknown) => logger?.debug({ knex: String(m) }, 'knex'),
    },
  });
}

/** True when the database answers a trivial query. */
export async function isReachable(knex: Knex): Promise<boolean> {
  try {
    await knex.raw('select 1');
    return true;
  } catch {
    return false;
  }
}
