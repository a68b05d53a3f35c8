// The bank's authorization server, as its resource server sees it (AUTH_ISSUER_URL): its
// discovery document, its JWKS and its introspection endpoint, over HTTPS with AUTH_CA_FILE.
//
// - Discovery (OpenID Connect, else RFC 8414) is read on first need and again every hour; it
//   must name exactly the configured issuer. A failed read is not cached: the next request
//   tries again, and meanwhile the API answers 503.
// - The JWKS is jose's remote key set: cached for ten minutes, fetched again on an unknown kid
//   at most once every 30 seconds (a flood of made-up kids costs the AS nothing).
// - Introspection (RFC 7662) authenticates as the bank configured: client_secret_basic,
//   private_key_jwt, or tls_client_auth (the certificate on the connection, and the endpoint's
//   mTLS alias when the AS publishes one, RFC 8705 §5).
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { createRemoteJWKSet, customFetch, SignJWT, type JWTVerifyGetKey } from 'jose';
import type { Agent, buildConnector, fetch as undiciFetch, request } from 'undici';
import type { Clock } from '../clock.js';
import type { AuthServerConfig } from '../config.js';
import { CLIENT_ASSERTION_TYPE } from '../crypto/clientAssertion.js';

const TIMEOUT_MS = 5_000;
const METADATA_REFRESH_MS = 60 * 60_000;
const MAX_RESPONSE_BYTES = 256 * 1024;
export const AS_JWKS_COOLDOWN_MS = 30_000;
export const AS_JWKS_CACHE_MS = 10 * 60_000;

/** The authorization server could not be reached or answered nonsense: the caller gets 503. */
export class AuthServerUnavailableError extends Error {
  override name = 'AuthServerUnavailableError';
}

export interface AuthServerMetadata {
  issuer: string;
  jwks_uri: string;
  introspection_endpoint?: string;
  mtls_endpoint_aliases?: { introspection_endpoint?: string };
}

export class AuthServer {
  // The files are read at once (a wrong path fails at start); undici loads on the first request,
  // so a CLI command that builds the services without calling the AS does not compile ~1 MB of
  // HTTP client (issue 15: a command under 0.5 s).
  private readonly connect: buildConnector.BuildOptions;
  private http:
    Promise<{ agent: Agent; fetch: typeof undiciFetch; request: typeof request }> | undefined;
  private metadataCache: { value: AuthServerMetadata; until: number } | undefined;
  private metadataInFlight: Promise<AuthServerMetadata> | undefined;
  private jwks: { uri: string; get: JWTVerifyGetKey } | undefined;
  private assertionKey: { key: KeyObject; alg: 'PS256' | 'ES256' } | undefined;

  constructor(
    private readonly config: AuthServerConfig,
    private readonly clock: Clock,
  ) {
    const { caFile } = config;
    const { certFile, certKeyFile } = config.introspection;
    this.connect = {
      ...(caFile ? { ca: fs.readFileSync(caFile) } : {}),
      ...(certFile && certKeyFile
        ? { cert: fs.readFileSync(certFile), key: fs.readFileSync(certKeyFile) }
        : {}),
      minVersion: 'TLSv1.2',
      timeout: TIMEOUT_MS,
    };
  }

  private client(): Promise<{ agent: Agent; fetch: typeof undiciFetch; request: typeof request }> {
    // CommonJS: its exports are on default, bundled or not.
    return (this.http ??= import('undici').then(({ default: undici }) => ({
      agent: new undici.Agent({ connect: this.connect }),
      fetch: undici.fetch,
      request: undici.request,
    })));
  }

  get issuer(): string {
    return this.config.issuer;
  }

  async metadata(): Promise<AuthServerMetadata> {
    const cached = this.metadataCache;
    if (cached && cached.until > this.clock.now()) return cached.value;
    this.metadataInFlight ??= this.discover()
      .then((value) => {
        this.metadataCache = { value, until: this.clock.now() + METADATA_REFRESH_MS };
        return value;
      })
      .catch((err: unknown) => {
        if (cached) return cached.value; // keep serving with what we knew
        throw err;
      })
      .finally(() => (this.metadataInFlight = undefined));
    return this.metadataInFlight;
  }

  /** jose's key resolver for the AS's JWKS (the jwks_uri from discovery). */
  async keys(): Promise<JWTVerifyGetKey> {
    const { jwks_uri: uri } = await this.metadata();
    if (this.jwks?.uri !== uri) {
      const get = createRemoteJWKSet(new URL(uri), {
        cooldownDuration: AS_JWKS_COOLDOWN_MS,
        cacheMaxAge: AS_JWKS_CACHE_MS,
        timeoutDuration: TIMEOUT_MS,
        [customFetch]: async (url, options) => {
          const { agent, fetch } = await this.client();
          return fetch(url, {
            ...(options as object),
            dispatcher: agent,
          } as unknown as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>;
        },
      });
      this.jwks = { uri, get };
    }
    return this.jwks.get;
  }

  /** RFC 7662: the AS's answer for `token` (throws AuthServerUnavailableError on failure). */
  async introspect(token: string): Promise<Record<string, unknown>> {
    const metadata = await this.metadata();
    const { introspection } = this.config;
    const endpoint =
      (introspection.certFile
        ? metadata.mtls_endpoint_aliases?.introspection_endpoint
        : undefined) ?? metadata.introspection_endpoint;
    if (!endpoint) {
      throw new AuthServerUnavailableError(
        'the authorization server publishes no introspection_endpoint',
      );
    }
    const form = new URLSearchParams({ token, token_type_hint: 'access_token' });
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    const clientId = introspection.clientId ?? '';
    switch (introspection.method) {
      case 'client_secret_basic': {
        // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
        const user = encodeURIComponent(clientId);
        const pass = encodeURIComponent(introspection.clientSecret ?? '');
        headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
        break;
      }
      case 'private_key_jwt':
        form.set('client_id', clientId);
        form.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
        form.set('client_assertion', await this.clientAssertion(clientId));
        break;
      case 'tls_client_auth':
        form.set('client_id', clientId);
        break;
      case 'none':
        throw new AuthServerUnavailableError('no introspection credentials are configured');
    }
    const body = await this.send('POST', endpoint, headers, form.toString());
    if (body.status !== 200) {
      throw new AuthServerUnavailableError(`introspection answered ${body.status}`);
    }
    const answer = parseJson(body.text, 'introspection');
    if (typeof answer.active !== 'boolean') {
      throw new AuthServerUnavailableError('introspection answer has no boolean "active"');
    }
    return answer;
  }

  async close(): Promise<void> {
    if (this.http) await (await this.http).agent.close();
  }

  private async discover(): Promise<AuthServerMetadata> {
    const issuer = this.config.issuer;
    const base = issuer.replace(/\/+$/, '');
    const url = new URL(issuer);
    const candidates = [
      `${base}/.well-known/openid-configuration`,
      `${url.origin}/.well-known/oauth-authorization-server${url.pathname.replace(/\/+$/, '')}`,
    ];
    let last = 'no answer';
    for (const candidate of candidates) {
      const res = await this.send('GET', candidate, { accept: 'application/json' });
      if (res.status !== 200) {
        last = `GET ${candidate} answered ${res.status}`;
        continue;
      }
      const m = parseJson(res.text, 'discovery');
      if (m.issuer !== issuer) {
        throw new AuthServerUnavailableError(
          `discovery at ${candidate} names issuer ${String(m.issuer)}, not AUTH_ISSUER_URL ${issuer}`,
        );
      }
      if (typeof m.jwks_uri !== 'string' || !m.jwks_uri.startsWith('https://')) {
        throw new AuthServerUnavailableError(`discovery at ${candidate} has no https jwks_uri`);
      }
      return m as unknown as AuthServerMetadata;
    }
    throw new AuthServerUnavailableError(`discovery failed: ${last}`);
  }

  private async clientAssertion(clientId: string): Promise<string> {
    if (!this.assertionKey) {
      const key = createPrivateKey(fs.readFileSync(this.config.introspection.keyFile!));
      this.assertionKey = { key, alg: key.asymmetricKeyType === 'ec' ? 'ES256' : 'PS256' };
    }
    const { key, alg } = this.assertionKey;
    const now = Math.floor(this.clock.now() / 1000);
    const kid = this.config.introspection.keyKid;
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(this.config.issuer)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(key);
  }

  private async send(
    method: 'GET' | 'POST',
    url: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<{ status: number; text: string }> {
    try {
      const { agent, request } = await this.client();
      const res = await request(url, {
        dispatcher: agent,
        method,
        headers,
        body: body ?? null,
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: TIMEOUT_MS,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) {
          res.body.destroy();
          throw new AuthServerUnavailableError(`${method} ${url}: answer too large`);
        }
        chunks.push(chunk);
      }
      return { status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') };
    } catch (err) {
      if (err instanceof AuthServerUnavailableError) throw err;
      throw new AuthServerUnavailableError(`${method} ${url}: ${(err as Error).message}`);
    }
  }
}

function parseJson(text: string, what: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      return value as Record<string, unknown>;
    }
  } catch {
    // below
  }
  throw new AuthServerUnavailableError(`${what}: the answer is not a JSON object`);
}
