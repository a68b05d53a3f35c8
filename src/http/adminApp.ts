// The admin listener (plain HTTP, loopback by default): health for orchestrators, and the
// bank-facing routes (metrics, publishing, deliveries) that later mount here.
import express, { type Router } from 'express';
import type { Logger } from '../logger.js';
import type { DatabaseOutage } from '../db/outage.js';
import { DATABASE_OUTAGE_LOCAL, errorMapper, notFoundHandler } from './errorMapper.js';
import { interactionId } from './interactionId.js';
import { served, type ServedApp } from './requestClasses.js';
import { httpMetrics, type Metrics } from '../metrics.js';

export interface Readiness {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

export interface AdminAppDeps {
  logger: Logger;
  readiness: () => Promise<Readiness>;
  routers: Router[];
  metrics?: Metrics;
  /** Logs a database outage once; requests that hit it answer 503 (errorMapper.ts). */
  databaseOutage?: DatabaseOutage;
}

export function createAdminApp(deps: AdminAppDeps): ServedApp {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.locals[DATABASE_OUTAGE_LOCAL] = deps.databaseOutage;
  app.use(interactionId(deps.logger));
  if (deps.metrics) app.use(httpMetrics(deps.metrics, 'admin'));
  app.get('/health/live', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/health/ready', async (_req, res) => {
    const r = await deps.readiness();
    res
      .status(r.ready ? 200 : 503)
      .json({ status: r.ready ? 'ok' : 'unavailable', checks: r.checks });
  });
  for (const router of deps.routers) app.use(router);
  app.use(notFoundHandler);
  app.use(errorMapper);
  return served(app);
}
