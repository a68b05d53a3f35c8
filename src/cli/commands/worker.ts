// `ob-events worker`: push delivery and the outbox worker without the API listener, for banks
// that scale delivery apart from the API (run `serve` with PUSH_CONCURRENCY=0 beside it, or not:
// any number of engines share the work). It also serves /health/live, /health/ready and
// /metrics on ADMIN_PORT for the orchestrator (give it its own port when it shares a host with
// `serve`), but not the publishing or deliveries APIs. SIGTERM/SIGINT: stop claiming, finish the
// requests in flight, record their outcomes, exit 0.
import { loadConfig } from '../../config.js';
import { createAdminApp } from '../../http/adminApp.js';
import { closeGracefully, createAdminServer, listen } from '../../http/listeners.js';
import { createLogger } from '../../logger.js';
import { buildServices, readiness, startDeliveryWorkers } from '../../main.js';
import { systemClock } from '../../clock.js';
import { createMetrics, metricsRouter, registerCollectedGauges } from '../../metrics.js';
import { openExistingDatabase } from '../context.js';

export async function worker(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  // Like the other commands (not `serve`): says which database, and never creates one.
  const db = await openExistingDatabase(config, logger, 'ob-events-worker');

  const metrics = createMetrics();
  const services = buildServices(config, db, logger, undefined, metrics);
  registerCollectedGauges(metrics, { knex: db.knex });
  await services.keys.sealPlaintextKeys();
  await services.keys.ensureActiveKey();
  await services.keys.watch(db.notifier);

  const admin = createAdminServer(
    createAdminApp({
      logger,
      readiness: () => readiness(db, services.signer),
      routers: [metricsRouter(metrics)],
      metrics,
    }),
    config.http.adminTls,
    config.http.limits,
  );
  const bound = await listen(admin, config.http.adminHost, config.http.adminPort).catch(
    async (err: unknown) => {
      await services.signer.close();
      await db.close().catch(() => {});
      throw err;
    },
  );
  const { outbox, push } = await startDeliveryWorkers({
    config,
    db,
    services,
    logger,
    clock: systemClock,
    metrics,
  });
  if (config.push.concurrency === 0)
    logger.warn('PUSH_CONCURRENCY=0: this worker publishes the outbox only, it pushes nothing');
  logger.info(
    {
      admin: `${config.http.adminTls ? 'https' : 'http'}://${config.http.adminHost}:${bound.port}`,
      database: db.kind,
      worker: push.worker,
    },
    'ob-events worker running',
  );

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'signal received: stopping the worker');
    (async () => {
      await closeGracefully(admin, config.http.shutdownTimeoutMs);
      await Promise.all([push.stop(), outbox.stop()]);
      await services.signer.close();
      await db.close();
      logger.info('stopped');
    })().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}
