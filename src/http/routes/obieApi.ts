// One OBIE API version's router, mounted at its base path (/open-banking/v3.1, /open-banking/v4.0)
// with the version's profile (src/http/apiProfiles.ts). Route matching and the order of checks are
// one thing here: every request that reaches this router goes through the same steps, in order,
// and no other router reads an OBIE request's body:
//   1. the profile          the error model of every answer below, 404s included
//   2. Accept               must allow application/json, else 406 (in the version's model)
//   3. GET /openapi.json    public: the version's OpenAPI document
//   4. the access token     every other path, known or not (401 before anything else)
//   5. payload-version      the optional v4.0 header, logged
//   6. per route: its scope, its body policy (src/http/bodyPolicy.ts), the version's OpenAPI
//      validator, the handler; a known path with another method is 405 with Allow
//   7. anything else        404
// The router is case-sensitive (so is the mount): `/OPEN-BANKING/V3.1/events` matches nothing, reads
// nothing and is a 404 from the root router.
// obieApisRouter holds every version's router; the root router (src/http/openapi.ts) hands it each
// /open-banking/ request first, ahead of the root paths' steps.
// A request for one of the routes' exact paths (no path parameter, no query string, the method
// the route serves) runs the same steps straight from a table (`direct`), without the nested
// routers' path matching and hand-ons; every other request takes the express routers.
import { Router, type RequestHandler } from 'express';
import { AppError } from '../../errors.js';
import { selectProfile, type ApiProfile } from '../apiProfiles.js';
import { authenticateCaller } from '../auth/accessToken.js';
import { obieJsonBody } from '../bodyPolicy.js';
import { requestContext } from '../context.js';
import { methodNotAllowed } from '../errorMapper.js';
import { inSequence } from '../inSequence.js';
import { acceptJson, openApiValidator, type OpenApiDocument } from '../openapi.js';
import { eventSubscriptionRoutes } from './eventSubscriptions.js';
import { eventsRoutes } from './events.js';
import type { RouteDeps } from './index.js';
import { ROUTE_LOCAL } from '../../metrics.js';

export const OPENAPI_DOCUMENT = '/openapi.json';

type Method = 'get' | 'post' | 'put' | 'delete';

/** How a route file adds its paths to a version (relative to the version's base path). */
export interface VersionRoutes {
  /** A path's operations, each its steps in order; any other method is 405 with Allow. */
  path(path: string, operations: Partial<Record<Method, RequestHandler[]>>): void;
}

/** Every version's router, each at its base path (one router: one hand-on when none matches). */
export function obieApisRouter(
  deps: RouteDeps,
  versions: readonly { profile: ApiProfile; openApi: OpenApiDocument }[],
): RequestHandler {
  const router = Router({ caseSensitive: true });
  // "GET /open-banking/v3.1/event-subscriptions" -> the steps the routers would run for it.
  const direct = new Map<string, RequestHandler>();
  for (const { profile, openApi } of versions) {
    router.use(profile.basePath, versionRouter(deps, profile, openApi, direct));
  }
  return (req, res, next) => {
    const steps = direct.get(`${req.method} ${req.url}`);
    if (steps) steps(req, res, next);
    else router(req, res, next);
  };
}

function versionRouter(
  deps: RouteDeps,
  profile: ApiProfile,
  openApi: OpenApiDocument,
  direct: Map<string, RequestHandler>,
): Router {
  const api = Router({ caseSensitive: true });
  const chosen: RequestHandler = (_req, res, next) => {
    selectProfile(res, profile);
    next();
  };
  api.use(chosen, acceptJson);
  api
    .route(OPENAPI_DOCUMENT)
    .get((_req, res) => {
      res.setHeader('Cache-Control', 'public, max-age=300');
      res.type('application/json').send(openApi.text);
    })
    .all(methodNotAllowed(['GET']));
  // Every path below: the access token first, then (v4.0) the payload-version header.
  const guard = [
    authenticateCaller(deps),
    ...(profile.payloadVersionHeader ? [payloadVersion] : []),
  ];
  api.use(...guard);
  const notFound: RequestHandler = (req, _res, next) => {
    next(new AppError('not_found', `no endpoint ${req.method} ${req.originalUrl.split('?')[0]}`));
  };

  const routes: VersionRoutes = {
    path(path, operations) {
      const route = api.route(path);
      const methods = Object.keys(operations) as Method[];
      for (const method of methods) {
        const steps = operations[method]!;
        route[method](...steps);
        if (!path.includes(':')) {
          const pattern = `${profile.basePath}${path}`;
          // What the routers would leave for the metrics: the route pattern.
          const named: RequestHandler = (req, res, next) => {
            res.locals[ROUTE_LOCAL] = pattern;
            chosen(req, res, next);
          };
          direct.set(
            `${method.toUpperCase()} ${pattern}`,
            inSequence([named, acceptJson, ...guard, ...steps, notFound]),
          );
        }
      }
      route.all(methodNotAllowed(methods.map((m) => m.toUpperCase())));
    },
  };
  const ours = (path: string) => path.startsWith(`${profile.basePath}/`);
  const validator = openApiValidator(openApi, deps.config.http.validateResponses, undefined, ours);
  const body = [obieJsonBody, ...validator];
  eventSubscriptionRoutes(routes, deps, profile, body);
  eventsRoutes(routes, { ...deps, polling: deps.services.polling }, body);
  api.use(notFound);
  return api;
}

/**
 * `payload-version` (OBIE 4.0, optional, a migration aid): the payloads of these APIs are the same
 * in 3.1.11 and 4.0, so it changes nothing; it is logged with the request, and the OpenAPI
 * validator checks its length.
 */
const payloadVersion: RequestHandler = (req, res, next) => {
  const value = req.get('payload-version');
  if (value !== undefined) {
    requestContext(res).log.debug({ payloadVersion: value.slice(0, 40) }, 'payload-version');
  }
  next();
};
