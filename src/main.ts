// The one place that wires dependencies: database, keys, services, listeners and workers.
// startServer() returns the bound addresses and a stop() that shuts down in order; tests call it
// with port 0 and their own config, so two servers can run side by side.
import fs from 'node:fs';
import type http from 'node:http';
import type https from 'node:https';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateLatest, pendingMigrations } from './db/migrate.js';
import { AdminRequestMacsStore } from './db/stores/adminRequestMacsStore.js';
import { AssertionJtisStore } from './db/stores/assertionJtisStore.js';
import { ClientsStore } from './db/stores/clientsStore.js';
import { SigningKeysStore } from './db/stores/signingKeysStore.js';
import { SubscriptionsStore } from './db/stores/subscriptionsStore.js';
import { Clients, validatePublicJwks, withoutTransportIdentity } from './domain/clients.js';
import { EventTypeCatalog } from './domain/eventTypes.js';
import { RemoteJwks } from './net/remoteJwks.js';
import { createSetSigner, type SetSigner } from './crypto/setSigner.js';
import { DeliveriesStore } from './db/stores/deliveriesStore.js';
import { LongPollHub } from './domain/longPoll.js';
import { OperatorAuth } from './domain/operatorAuth.js';
import { Operations } from './domain/operations.js';
import { OperatorSessionsStore } from './db/stores/operatorSessionsStore.js';
import { Polling } from './domain/polling.js';
import { RateLimits } from './domain/rateLimits.js';
import { Publisher } from './domain/publishing.js';
import { RequestSignatures } from './domain/requestSignatures.js';
import { ResponseSigner } from './domain/responseSigner.js';
import { KeyRing } from './domain/signingKeys.js';
import { Subscriptions } from './domain/subscriptions.js';
import { Tokens } from './domain/tokens.js';
import { BankAccessTokens } from './domain/bankAccessTokens.js';
import type { AccessTokenVerifier } from './http/auth/accessToken.js';
import { AuthServer } from './net/authServer.js';
import { DatabaseOutage } from './db/outage.js';
// Type-only: the listeners, metrics and workers load in serverModules() (bottom of the file).
import type { Readiness } from './http/adminApp.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { PushEngine } from './push/engine.js';
import type { OutboxWorker } from './workers/outboxWorker.js';

export interface Services {
  db: Database;
  clients: Clients;
  keys: KeyRing;
  tokens: Tokens;
  /** Who checks access tokens: `tokens` (our own /token), or the bank's AS (AUTH_ISSUER_URL). */
  accessTokens: AccessTokenVerifier;
  signer: SetSigner;
  publisher: Publisher;
  longPolls: LongPollHub;
  polling: Polling;
  subscriptions: Subscriptions;
  requestSignatures: RequestSignatures;
  responseSigner: ResponseSigner;
  operations: Operations;
  operatorAuth: OperatorAuth;
  /** The event types this bank offers (SUPPORTED_EVENT_TYPES, EXTENSION_EVENT_TYPES). */
  eventTypes: EventTypeCatalog;
  rateLimits: RateLimits;
}

/** Builds the domain services on an open database (shared by `serve` and the CLI commands). */
export function buildServices(
  config: Config,
  db: Database,
  logger: Logger,
  clock: Clock = systemClock,
  metrics?: Metrics,
  /** The SET signing worker module (default: setSignerWorker); tests inject one that fails. */
  signingWorkerUrl?: string,
): Services {
  const clients = new Clients({
    store: ClientsStore.create(db.knex),
    knex: db.knex,
    clock,
    policy: {
      requireTransportIdentity: config.mode === 'production',
      maxJwksKeys: config.clients.maxJwksKeys,
    },
    remoteJwks: new RemoteJwks({
      allowPrivate: config.subscriptions.callbackAllowPrivateNetworks,
      ca: config.push.caFile ? fs.readFileSync(config.push.caFile) : undefined,
      clock,
      validate: validatePublicJwks,
    }),
    logger,
  });
  const keys = new KeyRing({
    store: SigningKeysStore.create(db.knex),
    knex: db.knex,
    config: config.keys,
    clock,
    logger,
  });
  const rateLimits = new RateLimits(config.rateLimits, clock);
  const tokens = new Tokens({
    clients,
    keys,
    rateLimits,
    jtis: AssertionJtisStore.create(db.knex),
    config,
    clock,
    logger,
  });
  // Worker threads start on the first signature, so commands that never sign pay nothing.
  const signer = lazySetSigner(config.keys.signingWorkers, logger, signingWorkerUrl);
  const eventTypes = new EventTypeCatalog({
    supported: config.events.supportedEventTypes,
    extensions: config.events.extensionEventTypes,
  });
  const publisher = new Publisher({
    eventTypes,
    knex: db.knex,
    keys,
    signer,
    config,
    clock,
    onPublished: metrics
      ? (inputs, outcomes) =>
          outcomes.forEach((o, i) =>
            metrics.eventsPublished.inc({ type: inputs[i]!.type, outcome: o.status }),
          )
      : undefined,
  });
  const longPolls = new LongPollHub(config.polling.longPollMaxPerClient);
  const polling = new Polling({
    deliveries: DeliveriesStore.create(db.knex, {
      maxPerSet: config.operations.historyMaxPerSet,
    }),
    hub: longPolls,
    config: config.polling,
    onPolled: metrics
      ? (_clientId, returned, resolved) => {
          metrics.setsDelivered.inc({ channel: 'poll' }, returned);
          metrics.setsResolvedByPoll.inc(resolved);
        }
      : undefined,
  });
  const subscriptions = new Subscriptions({
    store: SubscriptionsStore.create(db.knex),
    knex: db.knex,
    clock,
    allowPrivateNetworks: config.subscriptions.callbackAllowPrivateNetworks,
    eventTypesDocUrl: (api) =>
      `${config.http.publicUrl}/open-banking/${api.id}/openapi.json#/components/schemas/OBEventType1Code`,
    eventTypes,
  });
  const requestSignatures = new RequestSignatures({
    clients,
    clock,
    required: config.subscriptions.requireRequestSignature,
    trustAnchor: config.subscriptions.trustAnchor,
    clockToleranceSeconds: config.auth.clockToleranceSeconds,
  });
  const responseSigner = new ResponseSigner({
    keys,
    iss: config.push.financialId,
    tan: config.subscriptions.trustAnchor,
    clock,
  });
  const accessTokens: AccessTokenVerifier = config.authServer
    ? new BankAccessTokens({
        authServer: new AuthServer(config.authServer, clock),
        clients,
        config: config.authServer,
        clockToleranceSeconds: config.auth.clockToleranceSeconds,
        clock,
        logger,
      })
    : tokens;
  const operations = new Operations({ knex: db.knex, keys, config: config.operations });
  const operatorAuth = new OperatorAuth({
    store: OperatorSessionsStore.create(db.knex),
    clock,
    credential: () => operatorCredential(config.operations),
  });
  return {
    ...{ db, clients, keys, tokens, accessTokens, signer, publisher, longPolls, polling },
    ...{ subscriptions, requestSignatures, responseSigner, operations, operatorAuth, eventTypes },
    rateLimits,
  };
}

/** OPERATOR_PASSWORD, or the first line of OPERATOR_PASSWORD_FILE (read when the console starts). */
function operatorCredential(config: Config['operations']): string | undefined {
  if (config.operatorPassword) return config.operatorPassword;
  if (!config.operatorPasswordFile) return undefined;
  const value = fs.readFileSync(config.operatorPasswordFile, 'utf8').split(/\r?\n/)[0]!.trim();
  if (value.length < 12) {
    throw new Error(`OPERATOR_PASSWORD_FILE: the credential must be at least 12 characters`);
  }
  return value;
}

/** Production: such clients get no tokens (src/domain/tokens.ts); say so once, loudly. */
async function warnClientsWithoutTransportIdentity(services: Services, logger: Logger) {
  const missing = withoutTransportIdentity(await services.clients.list());
  if (missing.length === 0) return;
  logger.warn(
    { clients: missing.slice(0, 20).map((c) => c.clientId), count: missing.length },
    'clients without a transport identity get no tokens in production: register their certificate subject DN (clients add --tls-subject-dn) or thumbprint',
  );
}

function lazySetSigner(workers: number, logger: Logger, workerUrl?: string): SetSigner {
  let signer: SetSigner | undefined;
  const onWorkerError = (err: Error) =>
    logger.error({ err }, 'SET signing workers failed: signatures answer 503 until they start');
  const get = () =>
    (signer ??= createSetSigner({ workers, onWorkerError, ...(workerUrl ? { workerUrl } : {}) }));
  return {
    get mode() {
      return get().mode;
    },
    workers,
    sign: (payloads, key, typ) => get().sign(payloads, key, typ),
    close: async () => {
      await signer?.close();
    },
    check: () => signer?.check() ?? Promise.resolve({ ok: true }),
  };
}

export interface RunningServer {
  apiPort: number;
  adminPort: number;
  /** The address the admin listener is bound to (ADMIN_HOST). */
  adminAddress: string;
  services: Services;
  stop(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
  /** Test seam: the SET signing worker module (see createSetSigner). */
  signingWorkerUrl?: string;
}

export async function startServer(opts: StartOptions): Promise<RunningServer> {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const modules = await serverModules();
  const { devPkiComplete, writeDevPki, createAdminApp, createApiApp } = modules;
  const { proxyCertificateOptions, revocationLists } = modules;
  const { closeGracefully, createAdminServer, createApiServer, listen, adminRouters, apiRouters } =
    modules;
  const { createMetrics, metricsRouter, registerCollectedGauges, every, runRetention } = modules;

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
    const metrics = createMetrics();
    const services = buildServices(config, db, logger, clock, metrics, opts.signingWorkerUrl);
    registerCollectedGauges(metrics, { knex: db.knex, longPolls: () => services.longPolls.size });
    if ((await pendingMigrations(db.knex)).length === 0) {
      await services.keys.sealPlaintextKeys();
      await services.keys.ensureActiveKey();
    }
    await services.keys.watch(db.notifier);
    await services.clients.watch(db.notifier);
    if (config.mode === 'production') await warnClientsWithoutTransportIdentity(services, logger);
    await services.subscriptions.watch(db.notifier);
    await services.longPolls.start(db.notifier);

    // Reads OPERATOR_PASSWORD_FILE now, so a bad file stops the start rather than the console.
    if (services.operatorAuth.enabled)
      logger.info('operator console on the admin listener at /console');
    const routeDeps = { config, services, logger, clock, metrics };
    const databaseOutage = new DatabaseOutage({ knex: db.knex, logger });
    const apiApp = createApiApp({
      logger,
      routers: apiRouters(routeDeps),
      proxyCertificate: proxyCertificateOptions(config, clock),
      revocation: revocationLists(config, clock, logger),
      metrics,
      databaseOutage,
    });
    const apiServer = createApiServer(
      apiApp,
      {
        certFile: config.http.tlsCertFile,
        keyFile: config.http.tlsKeyFile,
        clientCaFile: config.http.tlsClientCaFile,
        allowConnectionsWithoutCertificate: config.http.clientCertHeader !== undefined,
        proxyCaFile:
          config.http.clientCertHeader !== undefined ? config.http.proxyCaFile : undefined,
      },
      config.http.limits,
    );
    const adminApp = createAdminApp({
      logger,
      readiness: () => readiness(db, services.signer),
      routers: [metricsRouter(metrics), ...adminRouters(routeDeps)],
      metrics,
      databaseOutage,
    });
    const adminServer = createAdminServer(adminApp, config.http.adminTls, config.http.limits);

    const api = await listen(apiServer, config.http.host, config.http.port);
    const admin = await listen(adminServer, config.http.adminHost, config.http.adminPort).catch(
      async (err: unknown) => {
        await closeGracefully(apiServer, 0);
        throw err;
      },
    );

    if (config.developmentDefaults.length > 0) {
      logger.warn(
        { defaults: config.developmentDefaults },
        `DEVELOPMENT DEFAULTS IN USE: ${config.developmentDefaults.join('; ')}`,
      );
    }
    logger.info(
      {
        api: `https://${config.http.host}:${api.port}`,
        admin: `${config.http.adminTls ? 'https' : 'http'}://${config.http.adminHost}:${admin.port}`,
        publicUrl: config.http.publicUrl,
        database: db.kind,
        tokens: config.authServer ? `bank AS ${config.authServer.issuer}` : 'own /token',
      },
      'ob-events listening',
    );

    const { outbox, push } = await startDeliveryWorkers({
      config,
      db,
      services,
      logger,
      clock,
      metrics,
    });
    const tasks: { stop(): Promise<void> }[] = [
      outbox,
      push,
      every(
        'assertion-jti-purge',
        60_000,
        () => services.tokens.purgeExpiredAssertionJtis(),
        logger,
      ),
      every(
        'admin-mac-purge',
        60_000,
        () => AdminRequestMacsStore.create(db.knex).purgeExpired(new Date(clock.now())),
        logger,
      ),
      every(
        'retention',
        10 * 60_000,
        () =>
          runRetention({
            knex: db.knex,
            keys: services.keys,
            clock,
            logger,
            retentionDays: config.events.retentionDays,
          }),
        logger,
      ),
    ];

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= shutdown({
        logger,
        config,
        db,
        apiServer,
        adminServer,
        tasks,
        services,
        databaseOutage,
      }));
    return {
      ...{ apiPort: api.port, adminPort: admin.port, adminAddress: admin.address },
      ...{ services, stop },
    };
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
  tasks: { stop(): Promise<void> }[];
  services: Services;
  databaseOutage: DatabaseOutage;
}): Promise<void> {
  const { logger, config, db } = parts;
  const { closeGracefully } = await import('./http/listeners.js');
  logger.info('shutting down: no new connections, finishing requests in flight');
  parts.services.longPolls.close(); // waiting polls answer now instead of holding the shutdown
  await Promise.all([
    closeGracefully(parts.apiServer, config.http.shutdownTimeoutMs),
    closeGracefully(parts.adminServer, config.http.shutdownTimeoutMs),
  ]);
  await Promise.all(parts.tasks.map((t) => t.stop()));
  await parts.services.signer.close();
  parts.databaseOutage.close();
  await db.close();
  logger.info('stopped');
}

/**
 * The outbox worker and real-time push (src/push/engine.ts), for `serve` and `ob-events worker`.
 * PUSH_CONCURRENCY=0 leaves push to another process.
 */
export async function startDeliveryWorkers(deps: {
  config: Config;
  db: Database;
  services: Services;
  logger: Logger;
  clock: Clock;
  metrics: Metrics;
}): Promise<{ outbox: OutboxWorker; push: PushEngine }> {
  const { config, db, logger } = deps;
  const { OutboxWorker, PushEngine, pushMetricsHooks } = await serverModules();
  const outbox = new OutboxWorker({
    knex: db.knex,
    publisher: deps.services.publisher,
    notifier: db.notifier,
    logger,
  });
  await outbox.start();
  const push = new PushEngine({
    knex: db.knex,
    notifier: db.notifier,
    config: config.push,
    allowPrivateNetworks: config.subscriptions.callbackAllowPrivateNetworks,
    logger,
    clock: deps.clock,
    hooks: pushMetricsHooks(deps.metrics),
  });
  if (config.push.concurrency > 0) await push.start();
  return { outbox, push };
}

/**
 * Ready when the database answers, its schema is current and (once started) the SET signing
 * workers run (/health/ready).
 */
export async function readiness(db: Database, signer?: SetSigner): Promise<Readiness> {
  const checks: Readiness['checks'] = {};
  try {
    const pending = await pendingMigrations(db.knex);
    checks.database = { ok: true };
    checks.migrations =
      pending.length === 0 ? { ok: true } : { ok: false, detail: `pending: ${pending.join(', ')}` };
  } catch (err) {
    checks.database = { ok: false, detail: (err as Error).message };
  }
  if (signer) checks.signing = await signer.check();
  return {
    ready: Object.values(checks).every((c) => c.ok) && checks.migrations !== undefined,
    checks,
  };
}

/**
 * The server's heavier modules (express, the OpenAPI validator, prom-client, undici, node-forge),
 * loaded when a server or worker starts, not when a CLI command imports buildServices: a
 * command like `clients list` then loads about half the modules and starts twice as fast
 * (bench/cli.bench.ts). Keep listener, HTTP and worker imports in here.
 */
async function serverModules() {
  const [devPki, adminApp, apiApp, clientCert, listeners, routes, metrics] = await Promise.all([
    import('./crypto/devPki.js'),
    import('./http/adminApp.js'),
    import('./http/apiApp.js'),
    import('./http/clientCertificate.js'),
    import('./http/listeners.js'),
    import('./http/routes/index.js'),
    import('./metrics.js'),
  ]);
  const [engine, outbox, periodic, retention] = await Promise.all([
    import('./push/engine.js'),
    import('./workers/outboxWorker.js'),
    import('./workers/periodic.js'),
    import('./workers/retention.js'),
  ]);
  return {
    ...{ ...devPki, ...adminApp, ...apiApp, ...clientCert, ...listeners, ...routes, ...metrics },
    ...{ ...engine, ...outbox, ...periodic, ...retention },
  };
}
