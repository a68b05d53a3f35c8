// Which routers each listener mounts, in order. Each route file builds one express Router from
// the services it needs; this list is the table of contents of the HTTP surface.
import type { Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { Services } from '../../main.js';
import type { Metrics } from '../../metrics.js';
import { adminClientsRouter } from '../admin/clientsRoute.js';
import { adminDeliveriesRouter } from '../admin/deliveriesRoute.js';
import { adminEventsRouter } from '../admin/eventsRoute.js';
import { Router } from 'express';
import { adminOperationsRouter } from '../admin/operationsRoute.js';
import { consoleRouter } from '../console/consoleRouter.js';
import { API_PROFILES, V3_1_PROFILE } from '../apiProfiles.js';
import { loadOpenApiDocument, openApiRouter } from '../openapi.js';
import { documentFor } from '../openapiDocuments.js';
import { publicJwksRouter } from './publicJwks.js';
import { adminPushEndpointsRouter } from '../admin/pushEndpointsRoute.js';
import { AdminRequestMacsStore } from '../../db/stores/adminRequestMacsStore.js';
import { notFoundHandler } from '../errorMapper.js';
import { discoveryRouter, METADATA_PATHS } from './discovery.js';
import { obieApisRouter } from './obieApi.js';
import { tokenRouter } from './token.js';

export interface RouteDeps {
  config: Config;
  services: Services;
  logger: Logger;
  clock: Clock;
  metrics?: Metrics;
}

/** The API listener (mTLS): discovery, JWKS, token, and the OBIE event APIs per version. */
export function apiRouters(deps: RouteDeps): Router[] {
  const base = loadOpenApiDocument();
  const documentOptions = { eventTypes: deps.services.eventTypes.codes() };
  return [
    // Resource-server mode: our /token and metadata are 404, before the API definition is checked.
    ...(deps.config.authServer ? [notOurs()] : []),
    // Accept, then the OBIE API versions (src/http/routes/obieApi.ts: the access token first,
    // then each route's body and validation), then the root paths (discovery, JWKS, token)
    // checked against openapi/openapi.yaml.
    openApiRouter({
      openApi: documentFor(base, V3_1_PROFILE, documentOptions),
      validateResponses: deps.config.http.validateResponses,
      obieApis: obieApisRouter(
        deps,
        API_PROFILES.map((profile) => ({
          profile,
          openApi: documentFor(base, profile, documentOptions),
        })),
      ),
    }),
    discoveryRouter(deps),
    // Resource-server mode: the bank's AS issues the tokens; our /token is a 404.
    ...(deps.config.authServer ? [] : [tokenRouter(deps)]),
  ];
}

function notOurs(): Router {
  const router = Router();
  router.all(['/token', ...METADATA_PATHS], notFoundHandler);
  return router;
}

/** The admin listener (bank side): metrics, publishing, deliveries. Health is built in. */
export function adminRouters(deps: RouteDeps): Router[] {
  const replays = AdminRequestMacsStore.create(deps.services.db.knex);
  return [
    adminEventsRouter({
      publisher: deps.services.publisher,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
      replays,
    }),
    adminDeliveriesRouter({
      knex: deps.services.db.knex,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
      replays,
    }),
    adminOperationsRouter({
      operations: deps.services.operations,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
      replays,
    }),
    consoleRouter({
      operations: deps.services.operations,
      auth: deps.services.operatorAuth,
      clock: deps.clock,
      logger: deps.logger,
      secureCookies: deps.config.mode === 'production',
    }),
    ...(deps.config.http.adminPublicJwks ? [publicJwksRouter(deps.services.keys)] : []),
    adminPushEndpointsRouter({
      knex: deps.services.db.knex,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
      replays,
    }),
    adminClientsRouter({
      clients: deps.services.clients,
      adminApiSecret: deps.config.events.adminApiSecret,
      clock: deps.clock,
      replays,
    }),
  ];
}
