// The API listener's request handler: the fixed public documents first (fixedResponses.ts: a
// plain GET of the discovery metadata or the JWKS, answered with the bytes the route sends, after
// the same checks), and the plain token requests (directToken.ts: the token route's work, after
// the same checks), then the express app: interaction id and request log first, then security
// headers, the client certificate, the routes, and the one error mapper last.
import express, { type Router } from 'express';
import type { RevocationLists } from '../crypto/revocation.js';
import type { Logger } from '../logger.js';
import {
  clientCertificate,
  clientCertificateCheck,
  type ProxyCertificateOptions,
} from './clientCertificate.js';
import type { DatabaseOutage } from '../db/outage.js';
import { DATABASE_OUTAGE_LOCAL, errorMapper, notFoundHandler } from './errorMapper.js';
import type { AheadOfExpressDeps } from './aheadOfExpress.js';
import { directToken } from './directToken.js';
import { fixedDocumentsOf, fixedResponder } from './fixedResponses.js';
import { inSequence } from './inSequence.js';
import { served, type ServedApp } from './requestClasses.js';
import { interactionId } from './interactionId.js';
import { httpMetrics, httpRequestRecorder, type Metrics } from '../metrics.js';
import { tokenIssuerOf } from './routes/token.js';
import { helmetHeaderSteps, securityHeaderPairs, securityHeaders } from './securityHeaders.js';

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

export function createApiApp(deps: ApiAppDeps): ServedApp {
  const helmetSteps = helmetHeaderSteps();
  const certificate = clientCertificateCheck(deps.proxyCertificate, deps.revocation);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.locals[DATABASE_OUTAGE_LOCAL] = deps.databaseOutage;
  // One layer for the four steps every request takes.
  app.use(
    inSequence([
      interactionId(deps.logger),
      ...(deps.metrics ? [httpMetrics(deps.metrics, 'api')] : []),
      securityHeaders(helmetSteps),
      clientCertificate(certificate),
    ]),
  );
  for (const router of deps.routers) app.use(router);
  app.use(notFoundHandler);
  app.use(errorMapper);

  const ahead: AheadOfExpressDeps = {
    securityHeaders: securityHeaderPairs(helmetSteps),
    certificate,
    logger: deps.logger,
    record: deps.metrics && httpRequestRecorder(deps.metrics, 'api'),
  };
  const fixed = fixedResponder({ documents: fixedDocumentsOf(deps.routers), ...ahead });
  const issue = tokenIssuerOf(deps.routers);
  const token = issue ? directToken({ issue, ...ahead }) : () => false;
  return served(app, (req, res) => {
    const express = () => app(req, res);
    if (!fixed(req, res, express) && !token(req, res, express)) express();
  });
}
