// The resource server's guard for every /open-banking/v*/ route (FAPI 1 §6.2.1, RFC 6750,
// RFC 8705 §3): a bound access token in the Authorization header, verified, presented over the
// certificate it was issued for, of a client still active, with a scope the route accepts.
// What it leaves in the request context (clientId, scopes) is the only identity later code uses;
// nothing from the request body can change it.
import type { X509Certificate } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { RateLimits } from '../../domain/rateLimits.js';
import type { AuthenticatedCaller } from '../../domain/tokens.js';
import { AppError, detail, UnauthenticatedError } from '../../errors.js';
import { identifyClient, requestContext } from '../context.js';

/** Scopes that open the event subscription API (DECISIONS.md: any one of them). */
export const SUBSCRIPTION_SCOPES = ['accounts', 'payments', 'fundsconfirmations'] as const;
/** Scopes that open the polling API: the above, and `eventpolling` for 3.1.2-era clients. */
export const POLLING_SCOPES = [...SUBSCRIPTION_SCOPES, 'eventpolling'] as const;

/**
 * The one seam between the API and whoever issues its access tokens: ob-events' own /token
 * (Tokens, src/domain/tokens.ts) or the bank's authorization server (BankAccessTokens,
 * src/domain/bankAccessTokens.ts, when AUTH_ISSUER_URL is set). src/main.ts picks one. Either
 * throws UnauthenticatedError (401, RFC 6750) or an AppError (403, 503) in today's shapes.
 */
export interface AccessTokenVerifier {
  authenticateAccessToken(
    token: string,
    certificate: X509Certificate | undefined,
  ): Promise<AuthenticatedCaller>;
}

/** What the guard needs; the route deps (RouteDeps) every router gets satisfy it. */
export interface AccessTokenDeps {
  services: {
    accessTokens: AccessTokenVerifier;
    rateLimits?: Pick<RateLimits, 'checkApiRequest'>;
  };
}

export function requireAccessToken(
  deps: AccessTokenDeps,
  opts: { scopes: readonly string[] },
): RequestHandler {
  const accepted = new Set(opts.scopes);
  return async (req, res, next) => {
    const ctx = requestContext(res);
    // Usually authenticateCaller has verified the token already, before anything read the
    // body; the scope is this route's own rule.
    if (ctx.clientId === undefined || ctx.scopes === undefined) await authenticate(deps, req, res);
    checkScope(ctx.scopes!, accepted);
    next();
  };
}

/**
 * Verifies the access token of every request of an OBIE API router (src/http/routes/obieApi.ts
 * mounts it first, before any route, body parser or validator): an unauthenticated caller learns
 * nothing about the API and costs us no parsing. Each route then checks its scopes
 * (requireAccessToken).
 */
export function authenticateCaller(deps: AccessTokenDeps): RequestHandler {
  return async (req, res, next) => {
    await authenticate(deps, req, res);
    next();
  };
}

async function authenticate(deps: AccessTokenDeps, req: Request, res: Response): Promise<void> {
  const ctx = requestContext(res);
  const caller = await deps.services.accessTokens.authenticateAccessToken(
    bearerToken(req),
    ctx.clientCertificate,
  );
  identifyClient(ctx, caller.clientId);
  ctx.scopes = caller.scopes;
  // Per-client budget (429 with Retry-After), counted once the caller is known.
  deps.services.rateLimits?.checkApiRequest(caller.clientId);
}

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;

/** RFC 6750 §2.1 only: a token in the query (§2.3) or a form body (§2.2) is refused. */
function bearerToken(req: Request): string {
  if (Object.hasOwn(req.query as object, 'access_token')) {
    throw new UnauthenticatedError('access token sent in the query string');
  }
  const header = req.get('authorization');
  if (header === undefined) throw new UnauthenticatedError('no Authorization header');
  const match = BEARER.exec(header);
  if (!match?.[1]) throw new UnauthenticatedError('Authorization is not a Bearer token');
  return match[1];
}

function checkScope(scopes: readonly string[], accepted: ReadonlySet<string>): void {
  if (!scopes.some((s) => accepted.has(s))) {
    const message = `the access token needs one of these scopes: ${[...accepted].join(', ')}`;
    throw new AppError(
      'forbidden',
      message,
      [detail('UK.OBIE.Header.Invalid', message, 'Authorization')],
      `token scopes "${scopes.join(' ')}"`,
    );
  }
}
