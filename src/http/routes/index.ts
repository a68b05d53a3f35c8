// Which routers each listener mounts, in order. Each route file builds one express Router from
// the services it needs; this list is the table of contents of the HTTP surface.
import { Router } from 'express';
import type { Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { Services } from '../../main.js';
import type { Metrics } from '../../metrics.js';
import { adminClientsRouter } from '../admin/clientsRoute.js';
import { adminDeliveriesRouter } from '../admin/deliveriesRoute.js';
import { adminEventsRouter } from '../admin/eventsRoute.js';
import { authenticateApiRequests } from '../auth/accessToken.js';
import { loadOpenApiDocument, OPENAPI_PATH, openApiRouter } from '../openapi.js';
import { notFoundHandler } from '../errorMapper.js';
import { discoveryRouter, METADATA_PATHS } from './discovery.js';
import { eventSubscriptionsRouter } from './eventSubscriptions.js';
import { eventsRouter } from './events.js';
import { tokenRouter } from './token.js';

export interface RouteDeps {
  config: Config;
  services: Services;
  logger: Logger;
  clock: Clock;
  metrics?: Metrics;
}

/** The API listener (mTLS): discovery, JWKS, token, and the OBIE event APIs. */
export function apiRouters(deps: RouteDeps): Router[] {
  return [
    // First the caller: an access token on every /open-banking/v3.1/* request but the document.
    authenticateRouter(deps),
    // Resource-server mode: our /token and metadata are 404, before the API definition is checked.
    ...(deps.config.authServer ? [notOurs()] : []),
    // Then every request below is checked against openapi/openapi.yaml.
    openApiRouter({
      openApi: loadOpenApiDocument(),
      validateResponses: deps.config.http.validateResponses,
    }),
    discoveryRouter(deps),
    // Resource-server mode: the bank's AS issues the tokens; our /token is a 404.
    ...(deps.config.authServer ? [] : [tokenRouter(deps)]),
    eventSubscriptionsRouter(deps),
    eventsRouter({ ...deps, polling: deps.services.polling }),
  ];
}

function notOurs(): Router {
  const router = Router();
  router.all(['/token', ...METADATA_PATHS], notFoundHandler);
  return router;
}

function authenticateRouter(deps: RouteDeps): Router {
  const router = Router();
  router.use(authenticateApiRequests(deps, [OPENAPI_PATH]));
  return router;
}

/** The admin listener (bank side): metrics, publishing, deliveries. Health is built in. */
export function adminRouters(deps: RouteDeps): Router[] {
  return [
    adminEventsRouter({
      publisher: deps.services.publisher,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
    }),
    adminDeliveriesRouter({
      knex: deps.services.db.knex,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
    }),
    adminClientsRouter({
      clients: deps.services.clients,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
    }),
  ];
}
