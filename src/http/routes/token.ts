// POST /token: the client credentials grant (src/domain/tokens.ts does the work). Form-encoded
// body with a small limit; answers are never cached (RFC 6749 §5.1).
import { Router, type RequestHandler } from 'express';
import { OAuthError } from '../../errors.js';
import { parseTokenForm } from '../bodyPolicy.js';
import { identifyClient, requestContext, type RequestContext } from '../context.js';
import { methodNotAllowed, OAUTH_ERROR_SHAPE } from '../errorMapper.js';
import type { RouteDeps } from './index.js';

// Body parser failures on this endpoint are OAuth errors, not OBIE ones.
const formBody: RequestHandler = (req, res, next) => {
  if (!req.is('application/x-www-form-urlencoded')) {
    next(
      new OAuthError(
        'invalid_request',
        'the request body must be application/x-www-form-urlencoded',
      ),
    );
    return;
  }
  parseTokenForm(req, res, (err?: unknown) => {
    if (err === undefined) next();
    else
      next(
        new OAuthError(
          'invalid_request',
          'the request body could not be read',
          `body parser: ${(err as Error).message}`,
        ),
      );
  });
};

export function tokenRouter(deps: RouteDeps): Router {
  const router = Router();
  const issue = tokenIssuer(deps);
  router.post(TOKEN_PATH, noStore, formBody, async (req, res) => {
    const ctx = requestContext(res);
    const response = await issue(
      {
        form: req.body as unknown,
        certificate: ctx.clientCertificate,
        hasAuthorizationHeader: req.get('authorization') !== undefined,
      },
      ctx,
    );
    res.status(200).json(response);
  });
  router.all(TOKEN_PATH, methodNotAllowed(['POST']));
  // The plain requests every TPP sends are answered ahead of express with the same work.
  return publishTokenIssuer(router, issue);
}

/** The token route's work once the form is read, wherever it was read (here or directToken.ts). */
function tokenIssuer(deps: RouteDeps): TokenIssuer {
  return async (request, ctx) => {
    const issued = await deps.services.tokens.issue(request).catch((err: unknown) => {
      if (err instanceof OAuthError) deps.metrics?.tokensRefused.inc({ reason: err.error });
      throw err;
    });
    deps.metrics?.tokensIssued.inc({ auth_method: issued.authMethod });
    identifyClient(ctx, issued.clientId);
    return issued.response;
  };
}

export const TOKEN_PATH = '/token';

/** The token route's work once the form is read: the response body, or a thrown error. */
export type TokenIssuer = (
  request: {
    form: unknown;
    certificate: RequestContext['clientCertificate'];
    hasAuthorizationHeader: boolean;
  },
  ctx: RequestContext,
) => Promise<object>;

const ISSUER = Symbol('tokenIssuer');
type WithIssuer = Router & { [ISSUER]?: TokenIssuer };

/** Marks `router` as the token route, whose work the API app also does ahead of express. */
export function publishTokenIssuer(router: Router, issue: TokenIssuer): Router {
  (router as WithIssuer)[ISSUER] = issue;
  return router;
}

/** The token route's work, when one of `routers` is the token route (directToken.ts). */
export function tokenIssuerOf(routers: readonly Router[]): TokenIssuer | undefined {
  return routers.map((r) => (r as WithIssuer)[ISSUER]).find((issue) => issue !== undefined);
}

/** Every answer of POST /token: never cached (RFC 6749 §5.1). */
export const NO_STORE_HEADERS: readonly [string, string][] = [
  ['Cache-Control', 'no-store'],
  ['Pragma', 'no-cache'],
];

const noStore: RequestHandler = (_req, res, next) => {
  res.locals.errorShape = OAUTH_ERROR_SHAPE; // a 503 here is OAuth JSON too (errorMapper.ts)
  for (const [name, value] of NO_STORE_HEADERS) res.setHeader(name, value);
  next();
};
