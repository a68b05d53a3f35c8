// The API listener's express app: interaction id and request log first, then security headers,
// the client certificate, the routes, and the one error mapper last.
import express, { type Express, type Router } from 'express';
import helmet from 'helmet';
import type { RevocationLists } from '../crypto/revocation.js';
import type { Logger } from '../logger.js';
import { clientCertificate, type ProxyCertificateOptions } from './clientCertificate.js';
import type { DatabaseOutage } from '../db/outage.js';
import { DATABASE_OUTAGE_LOCAL, errorMapper, notFoundHandler } from './errorMapper.js';
import { interactionId } from './interactionId.js';
import { httpMetrics, type Metrics } from '../metrics.js';

export interface ApiAppDeps {
  logger: Logger;
  /** Route groups, mounted in order; each owns its paths and body parsers. */
  routers: Router[];
  /** Proxy mode (CLIENT_CERT_HEADER): where the client certificate may come from instead. */
  proxyCertificate?: ProxyCertificateOptions | undefined;
  /** CRL_FILES: revoked client certificates are refused in both modes. */
  revocation?: RevocationLists | undefined;
  metrics?: Metrics;
  /** Logs a database outage once; requests that hit it answer 503 (errorMapper.ts). */
  databaseOutage?: DatabaseOutage;
}

export function createApiApp(deps: ApiAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.locals[DATABASE_OUTAGE_LOCAL] = deps.databaseOutage;
  app.use(interactionId(deps.logger));
  if (deps.metrics) app.use(httpMetrics(deps.metrics, 'api'));
  app.use(helmet());
  app.use(clientCertificate(deps.proxyCertificate, deps.revocation));
  for (const router of deps.routers) app.use(router);
  app.use(notFoundHandler);
  app.use(errorMapper);
  return app;
}
