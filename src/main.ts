// The one place that wires dependencies: database, keys, services, listeners and workers.
// startServer() returns the bound addresses and a stop() that shuts down in order; tests call it
// with port 0 and their own config, so two servers can run side by side.
import type http from 'node:http';
import type https from 'node:https';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { devPkiComplete, writeDevPki } from './crypto/devPki.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateLatest, pendingMigrations } from './db/migrate.js';
import { ClientsStore } from './db/stores/clientsStore.js';
import { SigningKeysStore } from './db/stores/signingKeysStore.js';
import { Clients } from './domain/clients.js';
import { KeyRing } from './domain/signingKeys.js';
import { createAdminApp, type Readiness } from './http/adminApp.js';
import { createApiApp } from './http/apiApp.js';
import { closeGracefully, createAdminServer, createApiServer, listen } from './http/listeners.js';
import { adminRouters, apiRouters } from './http/routes/index.js';
import type { Logger } from './logger.js';

export interface Services {
  db: Database;
  clients: Clients;
  keys: KeyRing;
}

/** Builds the domain services on an open database (shared by `serve` and the CLI commands). */
export function buildServices(
  config: Config,
  db: Database,
  logger: Logger,
  clock: Clock = systemClock,
): Services {
  const clients = new Clients({ store: ClientsStore.create(db.knex), knex: db.knex, clock });
  const keys = new KeyRing({
    store: SigningKeysStore.create(db.knex),
    knex: db.knex,
    config: config.keys,
    clock,
    logger,
  });
  return { db, clients, keys };
}

export interface RunningServer {
  apiPort: number;
  adminPort: number;
  services: Services;
  stop(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
}

export async function startServer(opts: StartOptions): Promise<RunningServer> {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;

  if (config.http.devPkiDir && !devPkiComplete(config.http.devPkiDir)) {
    await writeDevPki(config.http.devPkiDir);
    logger.warn(
      { dir: config.http.devPkiDir },
      'created a development PKI (CA, server and demo TPP certificates): not for production',
    );
  }

  const db = await openDatabase(config.database, logger);
  try {
    if (config.database.migrateOnStart) {
      const applied = await migrateLatest(db.knex);
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    } else {
      const pending = await pendingMigrations(db.knex);
      if (pending.length > 0)
        logger.warn(
          { pending },
          'migrations pending (MIGRATE_ON_START=false): not ready until `ob-events migrate` runs',
        );
    }
    const services = buildServices(config, db, logger, clock);
    if ((await pendingMigrations(db.knex)).length === 0) await services.keys.ensureActiveKey();
    await services.keys.watch(db.notifier);
    await services.clients.watch(db.notifier);

    const routeDeps = { config, services, logger, clock };
    const apiApp = createApiApp({ logger, routers: apiRouters(routeDeps) });
    const apiServer = createApiServer(apiApp, {
      certFile: config.http.tlsCertFile,
      keyFile: config.http.tlsKeyFile,
      clientCaFile: config.http.tlsClientCaFile,
      allowConnectionsWithoutCertificate: config.http.clientCertHeader !== undefined,
    });
    const adminApp = createAdminApp({
      logger,
      readiness: () => readiness(db),
      routers: adminRouters(routeDeps),
    });
    const adminServer = createAdminServer(adminApp);

    const api = await listen(apiServer, config.http.host, config.http.port);
    const admin = await listen(adminServer, config.http.host, config.http.adminPort).catch(
      async (err: unknown) => {
        await closeGracefully(apiServer, 0);
        throw err;
      },
    );

    logger.info(
      {
        api: `https://${config.http.host}:${api.port}`,
        admin: `http://${config.http.host}:${admin.port}`,
        publicUrl: config.http.publicUrl,
        database: db.kind,
      },
      'ob-events listening',
    );
    if (config.developmentDefaults.length > 0) {
      logger.warn(
        { defaults: config.developmentDefaults },
        `DEVELOPMENT DEFAULTS IN USE: ${config.developmentDefaults.join('; ')}`,
      );
    }

    let stopping: Promise<void> | undefined;
    const stop = () => (stopping ??= shutdown({ logger, config, db, apiServer, adminServer }));
    return { apiPort: api.port, adminPort: admin.port, services, stop };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

async function shutdown(parts: {
  logger: Logger;
  config: Config;
  db: Database;
  apiServer: https.Server;
  adminServer: http.Server;
}): Promise<void> {
  const { logger, config, db } = parts;
  logger.info('shutting down: no new connections, finishing requests in flight');
  await Promise.all([
    closeGracefully(parts.apiServer, config.http.shutdownTimeoutMs),
    closeGracefully(parts.adminServer, config.http.shutdownTimeoutMs),
  ]);
  await db.close();
  logger.info('stopped');
}

async function readiness(db: Database): Promise<Readiness> {
  const checks: Readiness['checks'] = {};
  try {
    const pending = await pendingMigrations(db.knex);
    checks.database = { ok: true };
    checks.migrations =
      pending.length === 0 ? { ok: true } : { ok: false, detail: `pending: ${pending.join(', ')}` };
  } catch (err) {
    checks.database = { ok: false, detail: (err as Error).message };
  }
  return {
    ready: Object.values(checks).every((c) => c.ok) && checks.migrations !== undefined,
    checks,
  };
}
