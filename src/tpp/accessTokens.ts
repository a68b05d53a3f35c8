// The TPP's access token: client credentials grant at the token endpoint, over the mTLS
// connection the token will be bound to (RFC 8705), authenticated by a fresh private_key_jwt
// assertion (RFC 7523) or by the certificate alone (tls_client_auth).
//
// The token is reused until shortly before it expires: `refreshMarginSeconds` before `expires_in`
// runs out (at most half its lifetime, so a short-lived token is still reused). Concurrent callers
// share one token request. A resource call answered 401 drops the token (`invalidate`) and tries
// once more with a new one.
import type { JWK } from 'jose';
import type { Agent } from 'undici';
import { CLIENT_ASSERTION_TYPE, signClientAssertion } from '../crypto/clientAssertion.js';
import type { Endpoints } from './discovery.js';
import { isRecord, jsonBody, send, TppError } from './transport.js';

export type TokenAuthMethod = 'private_key_jwt' | 'tls_client_auth';

/** Client assertions live one minute: long enough for clock skew, short enough to be useless later. */
const ASSERTION_LIFETIME_SECONDS = 60;

export interface AccessTokenSourceDeps {
  agent: Agent;
  endpoints: () => Promise<Endpoints>;
  clientId: string;
  authMethod: TokenAuthMethod;
  /** private_key_jwt: the TPP's private signing JWK and its kid. */
  signingJwk: JWK | undefined;
  kid: string | undefined;
  /** Requested scope; absent: every scope the client is registered for. */
  scope: string | undefined;
  refreshMarginSeconds: number;
  now: () => number;
}

interface CachedToken {
  token: string;
  /** Milliseconds since the epoch: renew from then on. */
  renewAt: number;
}

export class AccessTokenSource {
  private cached: CachedToken | undefined;
  private inFlight: Promise<CachedToken> | undefined;

  constructor(private readonly deps: AccessTokenSourceDeps) {}

  /** A token with time left on it: the cached one, or a new one. */
  async get(): Promise<string> {
    const cached = this.cached;
    if (cached && this.deps.now() < cached.renewAt) return cached.token;
    this.inFlight ??= this.request().finally(() => (this.inFlight = undefined));
    return (await this.inFlight).token;
  }

  /** Forgets `token` (a resource server refused it); a newer token is kept. */
  invalidate(token: string): void {
    if (this.cached?.token === token) this.cached = undefined;
  }

  private async request(): Promise<CachedToken> {
    const { deps } = this;
    const endpoints = await deps.endpoints();
    const requestedAt = deps.now();
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (deps.scope !== undefined) form.set('scope', deps.scope);
    if (deps.authMethod === 'private_key_jwt') {
      if (!deps.signingJwk || !deps.kid) {
        throw new TppError('configuration', 'private_key_jwt needs signingKey and kid');
      }
      form.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
      form.set(
        'client_assertion',
        await signClientAssertion({
          clientId: deps.clientId,
          audience: endpoints.tokenEndpoint,
          privateJwk: deps.signingJwk,
          kid: deps.kid,
          lifetimeSeconds: ASSERTION_LIFETIME_SECONDS,
          nowMs: requestedAt,
        }),
      );
    } else {
      form.set('client_id', deps.clientId);
    }
    const res = await send(deps.agent, endpoints.tokenUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: form.toString(),
    });
    if (res.status !== 200) {
      const body = res.body.toString('utf8').slice(0, 2_000);
      throw new TppError(
        'token_refused',
        `POST ${endpoints.tokenUrl}: HTTP ${res.status} ${body}`,
        res.status,
        body,
      );
    }
    const answer = jsonBody(res, `POST ${endpoints.tokenUrl}`);
    if (
      !isRecord(answer) ||
      typeof answer.access_token !== 'string' ||
      typeof answer.expires_in !== 'number' ||
      !(answer.expires_in > 0) ||
      typeof answer.token_type !== 'string' ||
      answer.token_type.toLowerCase() !== 'bearer'
    ) {
      throw new TppError(
        'invalid_response',
        `POST ${endpoints.tokenUrl}: not a Bearer token response`,
      );
    }
    // Counted from when the request was sent, so time spent on the way never overstates the life.
    const lifetimeMs = answer.expires_in * 1000;
    const marginMs = Math.min(deps.refreshMarginSeconds * 1000, lifetimeMs / 2);
    this.cached = { token: answer.access_token, renewAt: requestedAt + lifetimeMs - marginMs };
    return this.cached;
  }
}
