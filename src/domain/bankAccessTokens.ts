// Resource-server mode (AUTH_ISSUER_URL): access tokens issued by the bank's own authorization
// server. The second implementation of the AccessTokenVerifier seam (src/http/auth/accessToken.ts);
// the first is our own /token's (src/domain/tokens.ts). src/main.ts picks one.
//
//   JWT (RFC 9068 `at+jwt`, or the plain JWT profile): signature by a key in the AS's JWKS with a
//     pinned algorithm, iss = AUTH_ISSUER_URL, aud contains AUTH_AUDIENCE, exp/nbf with
//     CLOCK_TOLERANCE_SECONDS of skew.
//   Opaque: RFC 7662 introspection; active:false is a 401. Answers are cached until the token's
//     exp and at most AUTH_INTROSPECTION_CACHE_SECONDS, so a revocation at the bank reaches us
//     within that ceiling.
//   Then for both: the TPP is the AUTH_CLIENT_ID_CLAIM claim; the token must be bound to the
//   certificate on this connection (cnf.x5t#S256, RFC 8705) unless
//   AUTH_REQUIRE_CERTIFICATE_BINDING=false; the client must be registered and active here.
//
// A TPP the bank's AS knows but ob-events does not is refused with 403 and a message saying so,
// not provisioned from the token: ob-events cannot verify its request signatures until an
// operator adds it with its signing keys (`clients add` or the admin API), so a client made
// from the token could not subscribe anyway.
import { createHash, type X509Certificate } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { Clock } from '../clock.js';
import type { AuthServerConfig } from '../config.js';
import { certificateThumbprint } from '../crypto/certificateThumbprint.js';
import { AppError, detail, UnauthenticatedError } from '../errors.js';
import type { Logger } from '../logger.js';
import { AuthServerUnavailableError, type AuthServer } from '../net/authServer.js';
import type { Clients } from './clients.js';
import type { AuthenticatedCaller } from './tokens.js';

/** `typ` values of access tokens real servers issue (RFC 9068, and JWT or none). */
const ACCEPTED_TYPS = new Set(['at+jwt', 'application/at+jwt', 'jwt']);
const MAX_CACHED_INTROSPECTIONS = 10_000;

export interface BankAccessTokensDeps {
  authServer: AuthServer;
  clients: Pick<Clients, 'findActive' | 'statusOf'>;
  config: AuthServerConfig;
  clockToleranceSeconds: number;
  clock: Clock;
  logger: Logger;
}

/** What either kind of token says, once checked. */
interface TokenFacts {
  clientId: string;
  scopes: string[];
  thumbprint: string | undefined;
}

export class BankAccessTokens {
  private readonly introspections = new Map<string, { facts: TokenFacts | null; until: number }>();

  constructor(private readonly deps: BankAccessTokensDeps) {}

  async authenticateAccessToken(
    token: string,
    certificate: X509Certificate | undefined,
  ): Promise<AuthenticatedCaller> {
    const facts = looksLikeJwt(token) ? await this.verifyJwt(token) : await this.introspect(token);
    if (this.deps.config.requireCertificateBinding) checkBinding(facts.thumbprint, certificate);
    const client = await this.deps.clients.findActive(facts.clientId);
    if (!client) {
      const status = await this.deps.clients.statusOf(facts.clientId);
      if (status === undefined || status === 'deleted') throw unknownTpp(facts.clientId);
      throw new UnauthenticatedError(
        `access token of client "${facts.clientId}", which is ${status}`,
      );
    }
    // The bank's AS grants scopes; ob-events' registration can only narrow them.
    return {
      clientId: facts.clientId,
      scopes: facts.scopes.filter((s) => client.scopes.includes(s)),
    };
  }

  private async verifyJwt(token: string): Promise<TokenFacts> {
    const { config } = this.deps;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.deps.authServer.keys(), {
        algorithms: config.algorithms,
        issuer: config.issuer,
        audience: config.audience,
        requiredClaims: ['exp'],
        currentDate: new Date(this.deps.clock.now()),
        clockTolerance: this.deps.clockToleranceSeconds,
      }));
    } catch (err) {
      if (err instanceof AuthServerUnavailableError) throw unavailable(err);
      throw new UnauthenticatedError(`bank access token refused: ${joseReason(err)}`);
    }
    const typ = decodeProtectedHeader(token).typ;
    if (typ !== undefined && !ACCEPTED_TYPS.has(typ.toLowerCase())) {
      throw new UnauthenticatedError(`bank access token refused: typ "${typ}"`);
    }
    return this.facts(payload, 'JWT access token');
  }

  private async introspect(token: string): Promise<TokenFacts> {
    const key = createHash('sha256').update(token).digest('base64url');
    const now = this.deps.clock.now();
    const hit = this.introspections.get(key);
    let facts: TokenFacts | null;
    if (hit && hit.until > now) {
      facts = hit.facts;
    } else {
      let answer: Record<string, unknown>;
      try {
        answer = await this.deps.authServer.introspect(token);
      } catch (err) {
        if (err instanceof AuthServerUnavailableError) throw unavailable(err);
        throw err;
      }
      facts = answer.active === true ? this.introspected(answer) : null;
      const ceiling = now + this.deps.config.introspection.cacheSeconds * 1000;
      const exp = typeof answer.exp === 'number' ? answer.exp * 1000 : ceiling;
      if (this.introspections.size >= MAX_CACHED_INTROSPECTIONS) this.introspections.clear();
      this.introspections.set(key, { facts, until: Math.min(ceiling, exp) });
    }
    if (!facts) throw new UnauthenticatedError('introspection: the token is not active');
    return facts;
  }

  /** An active introspection answer: same rules as a JWT, for the members it has. */
  private introspected(answer: Record<string, unknown>): TokenFacts {
    const { config } = this.deps;
    const nowSeconds = this.deps.clock.now() / 1000;
    const skew = this.deps.clockToleranceSeconds;
    if (answer.iss !== undefined && answer.iss !== config.issuer) {
      throw new UnauthenticatedError(`introspection: iss "${String(answer.iss)}"`);
    }
    const aud = answer.aud;
    if (aud !== undefined) {
      const auds = Array.isArray(aud) ? aud : [aud];
      if (!auds.includes(config.audience)) {
        throw new UnauthenticatedError(`introspection: aud ${JSON.stringify(aud)}`);
      }
    }
    if (typeof answer.exp === 'number' && answer.exp + skew < nowSeconds) {
      throw new UnauthenticatedError('introspection: expired');
    }
    if (typeof answer.nbf === 'number' && answer.nbf - skew > nowSeconds) {
      throw new UnauthenticatedError('introspection: not yet valid');
    }
    return this.facts(answer, 'introspection');
  }

  private facts(claims: Record<string, unknown>, what: string): TokenFacts {
    const claim = this.deps.config.clientIdClaim;
    const clientId = claims[claim] ?? (claim === 'client_id' ? undefined : claims.client_id);
    if (typeof clientId !== 'string' || clientId === '') {
      throw new UnauthenticatedError(`${what}: no "${claim}" claim naming the TPP`);
    }
    const cnf = claims.cnf as Record<string, unknown> | undefined;
    const thumbprint =
      typeof cnf === 'object' && cnf !== null && typeof cnf['x5t#S256'] === 'string'
        ? cnf['x5t#S256']
        : undefined;
    return { clientId, scopes: scopesOf(claims), thumbprint };
  }
}

/** `scope` as RFC 9068/7662 say (space-separated), or the array some servers send. */
function scopesOf(claims: Record<string, unknown>): string[] {
  const scope = claims.scope ?? claims.scp;
  if (typeof scope === 'string') return scope.split(' ').filter((s) => s !== '');
  if (Array.isArray(scope)) return scope.filter((s): s is string => typeof s === 'string');
  return [];
}

function looksLikeJwt(token: string): boolean {
  if (token.split('.').length !== 3) return false;
  try {
    return typeof decodeProtectedHeader(token).alg === 'string';
  } catch {
    return false;
  }
}

function checkBinding(bound: string | undefined, certificate: X509Certificate | undefined): void {
  if (bound === undefined) {
    throw new UnauthenticatedError('bank access token is not certificate-bound (no cnf.x5t#S256)');
  }
  if (!certificate) throw new UnauthenticatedError('no client certificate to check the binding');
  const presented = certificateThumbprint(certificate);
  if (presented !== bound) {
    throw new UnauthenticatedError(`token bound to certificate ${bound}, presented ${presented}`);
  }
}

function unknownTpp(clientId: string): AppError {
  const message =
    `client ${clientId} holds a valid token from the bank's authorization server but is not ` +
    'registered with ob-events: the bank adds it with its signing keys (ob-events clients add, ' +
    'or POST /admin/v1/clients)';
  return new AppError(
    'forbidden',
    message,
    [detail('UK.OBIE.Header.Invalid', message, 'Authorization')],
    `unknown TPP ${clientId}`,
  );
}

function unavailable(err: Error): AppError {
  return new AppError(
    'unavailable',
    "the bank's authorization server cannot be reached to check the access token; try again shortly",
    [],
    err.message,
  );
}

function joseReason(err: unknown): string {
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'unknown_key: no key in the AS JWKS';
  const { code, claim, message } = err as { code?: string; claim?: string; message?: string };
  return `${code ?? 'error'}${claim ? ` (${claim})` : ''}: ${message ?? ''}`;
}
