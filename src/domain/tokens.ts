// The token endpoint (client credentials, RFC 6749 §4.4) and the resource server's access token
// check, as small named steps:
//
//   POST /token: parseGrant → rate limit → authenticateClient (private_key_jwt | tls_client_auth)
//                → checkTransportIdentity → checkReplay → checkAuthMethod → grantScopes
//                → issueToken
//   protected routes: verifyToken → checkCertificateBinding → checkClientActive
//
// Every authentication failure answers `invalid_client` (401) with the same description; the
// precise reason goes to the log only (OAuthError.internalReason), so a caller cannot probe which
// check failed. Tokens are bound to the certificate they were requested over (RFC 8705).
import { randomUUID, type KeyObject, type X509Certificate } from 'node:crypto';
import { epochSeconds, type Clock } from '../clock.js';
import type { Config } from '../config.js';
import {
  AccessTokenError,
  signAccessToken,
  verifyAccessToken,
  type AccessTokenPolicy,
  type VerifiedAccessToken,
} from '../crypto/accessTokens.js';
import { certificateThumbprint } from '../crypto/certificateThumbprint.js';
import {
  CLIENT_ASSERTION_TYPE,
  ClientAssertionError,
  verifyClientAssertion,
  type AssertionPolicy,
} from '../crypto/clientAssertion.js';
import {
  certificateSubject,
  DnSyntaxError,
  matchesRegisteredDn,
  parseDn,
  type Dn,
} from '../crypto/distinguishedName.js';
import { memoised } from '../memo.js';
import type { AssertionJtisStore } from '../db/stores/assertionJtisStore.js';
import type { AuthMethod, Client } from '../db/stores/clientsStore.js';
import { OAuthError, UnauthenticatedError } from '../errors.js';
import { isStorableText } from '../storableText.js';
import type { Logger } from '../logger.js';
import type { Clients } from './clients.js';
import type { RateLimits } from './rateLimits.js';
import { ReplayGuard } from './replayGuard.js';
import type { KeyRing } from './signingKeys.js';

export const CLIENT_CREDENTIALS = 'client_credentials';

/** The one description every invalid_client carries (RFC 6749 §5.2; details are only logged). */
export const CLIENT_AUTHENTICATION_FAILED = 'client authentication failed';

const PURGE_BATCH = 1_000;
const PURGE_MAX_BATCHES = 50;
const VERIFICATION_KEY_CACHE_MS = 1_000;
/**
 * How long a verified access token (the exact string) is remembered, at most; never past its exp.
 * Its signature and claims are then not checked again on each request: what can change (the
 * client's status, the certificate it comes over, the key still being published) is.
 */
export const VERIFIED_TOKEN_CACHE_MS = 60_000;
const VERIFIED_TOKEN_CACHE_MAX = 10_000;

export interface TokenRequest {
  /** The parsed form body (`express.urlencoded`), or undefined when there was none. */
  form: unknown;
  /** The TPP's transport certificate: the token is bound to it. */
  certificate: X509Certificate | undefined;
  /** An Authorization header came with the request (client_secret_basic is not supported). */
  hasAuthorizationHeader: boolean;
}

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

export interface IssuedToken {
  clientId: string;
  authMethod: AuthMethod;
  response: TokenResponse;
}

export interface AuthenticatedCaller {
  clientId: string;
  scopes: string[];
}

export interface TokensDeps {
  clients: Clients;
  keys: KeyRing;
  jtis: AssertionJtisStore;
  /** Per-certificate budget at /token (none: unlimited). */
  rateLimits?: Pick<RateLimits, 'checkTokenRequest'>;
  config: Pick<Config, 'http' | 'auth' | 'mode'>;
  clock: Clock;
  logger: Logger;
}

interface Grant {
  scope: string | undefined;
  clientAuth:
    | { method: 'private_key_jwt'; assertion: string; clientId: string | undefined }
    | { method: 'tls_client_auth'; clientId: string };
}

interface AuthenticatedClient {
  client: Client;
  method: AuthMethod;
  /** private_key_jwt only: the assertion's jti and how long to remember it. */
  replay?: { jti: string; rememberUntil: Date };
}

export class Tokens {
  private readonly verificationKeys = new Map<string, { key: KeyObject; until: number }>();
  private readonly verifiedTokens = new Map<
    string,
    { verified: VerifiedAccessToken; kid: string; until: number }
  >();
  private readonly replayGuard: ReplayGuard;

  constructor(private readonly deps: TokensDeps) {
    this.replayGuard = new ReplayGuard(deps.jtis);
  }

  /** The `iss` of our tokens and metadata: exactly PUBLIC_URL. */
  get issuer(): string {
    return this.deps.config.http.publicUrl;
  }

  get tokenEndpoint(): string {
    return `${this.issuer}/token`;
  }

  /**
   * The `aud` of our access tokens. The issuer URL: this deployment is both the authorisation
   * server and the only resource server that accepts its tokens.
   */
  get audience(): string {
    return this.issuer;
  }

  async issue(request: TokenRequest): Promise<IssuedToken> {
    const grant = parseGrant(request);
    const certificate = certificateOf(request);
    // Before any signature is checked or row written: the budget protects that work.
    this.deps.rateLimits?.checkTokenRequest(certificate);
    const authenticated = await this.authenticateClient(grant);
    this.checkTransportIdentity(authenticated.client, certificate);
    await this.checkReplay(authenticated);
    checkAuthMethod(authenticated);
    const scopes = grantScopes(grant.scope, authenticated.client);
    return this.issueToken(authenticated.client, authenticated.method, scopes, certificate);
  }

  /** The resource server's check of a bearer token presented over `certificate`. */
  async authenticateAccessToken(
    token: string,
    certificate: X509Certificate | undefined,
  ): Promise<AuthenticatedCaller> {
    const verified = await this.verifyToken(token);
    checkCertificateBinding(verified.certificateThumbprint, certificate);
    await this.checkClientActive(verified.clientId);
    return { clientId: verified.clientId, scopes: verified.scopes };
  }

  /** Removes replay records whose assertions can no longer be accepted, in bounded batches. */
  async purgeExpiredAssertionJtis(): Promise<number> {
    const now = new Date(this.deps.clock.now());
    let total = 0;
    for (let i = 0; i < PURGE_MAX_BATCHES; i++) {
      const deleted = await this.deps.jtis.purgeExpired(now, PURGE_BATCH);
      total += deleted;
      if (deleted < PURGE_BATCH) break;
    }
    if (total > 0) this.deps.logger.debug({ deleted: total }, 'expired assertion jtis purged');
    return total;
  }

  private async authenticateClient(grant: Grant): Promise<AuthenticatedClient> {
    const auth = grant.clientAuth;
    return auth.method === 'private_key_jwt'
      ? this.authenticateWithAssertion(auth.assertion, auth.clientId)
      : this.authenticateWithCertificate(auth.clientId);
  }

  private async authenticateWithAssertion(
    assertion: string,
    clientIdParam: string | undefined,
  ): Promise<AuthenticatedClient> {
    const { auth } = this.deps.config;
    const policy: AssertionPolicy = {
      audiences: [this.tokenEndpoint, this.issuer],
      maxLifetimeSeconds: auth.clientAssertionMaxLifetimeSeconds,
      clockToleranceSeconds: auth.clockToleranceSeconds,
    };
    try {
      // The kid lets a client with a jwks_uri refetch its set when it names a new key.
      const verified = await verifyClientAssertion(
        assertion,
        policy,
        this.deps.clock.now(),
        (id, kid) => this.deps.clients.findActive(id, kid),
      );
      // RFC 7521 §4.2: a client_id sent alongside must name the same client.
      if (clientIdParam !== undefined && clientIdParam !== verified.clientId) {
        throw invalidClient(
          `client_id "${clientIdParam}" differs from the assertion's "${verified.clientId}"`,
        );
      }
      return {
        client: verified.client,
        method: 'private_key_jwt',
        replay: { jti: verified.jti, rememberUntil: verified.rememberUntil },
      };
    } catch (err) {
      if (err instanceof ClientAssertionError) {
        throw invalidClient(`client assertion ${err.failure}: ${err.message}`);
      }
      throw err;
    }
  }

  private async authenticateWithCertificate(clientId: string): Promise<AuthenticatedClient> {
    const client = await this.deps.clients.findActive(clientId);
    if (!client) throw invalidClient(`tls_client_auth: no active client "${clientId}"`);
    // RFC 8705 §2.1.2: the registered subject DN is what authenticates the client; it is
    // compared with the certificate in checkTransportIdentity, as for every client.
    if (client.tlsSubjectDn === null) {
      throw invalidClient(
        `tls_client_auth: client "${clientId}" has no registered subject DN (registered for ${client.authMethod})`,
      );
    }
    return { client, method: 'tls_client_auth' };
  }

  /**
   * Tokens only for the client's own certificate, whatever the auth method: the certificate's
   * subject must be the registered DN (when one is registered) and, when thumbprints are
   * pinned, the certificate must be one of them. A client with neither is served only in
   * development mode (existing private_key_jwt rows, quick starts).
   */
  private checkTransportIdentity(client: Client, certificate: X509Certificate): void {
    const pins = client.tlsCertThumbprints;
    if (client.tlsSubjectDn === null && pins.length === 0) {
      if (this.deps.config.mode === 'production') {
        throw invalidClient(`client "${client.clientId}" has no registered transport identity`);
      }
      return;
    }
    if (client.tlsSubjectDn !== null) {
      let subject;
      try {
        subject = subjectOf(certificate);
      } catch (err) {
        if (err instanceof DnSyntaxError)
          throw invalidClient(`certificate subject unreadable: ${err.message}`);
        throw err;
      }
      if (!matchesRegisteredDn(subject, registeredDn(client.tlsSubjectDn))) {
        throw invalidClient(
          `certificate subject "${certificate.subject.replace(/\n/g, ',')}" is not the registered "${client.tlsSubjectDn}" of client "${client.clientId}"`,
        );
      }
    }
    if (pins.length > 0) {
      const thumbprint = certificateThumbprint(certificate);
      if (!pins.includes(thumbprint)) {
        throw invalidClient(
          `certificate ${thumbprint} is not one pinned for client "${client.clientId}"`,
        );
      }
    }
  }

  /** First use of a (client, jti) wins, atomically, on every replica sharing the database. */
  private async checkReplay(authenticated: AuthenticatedClient): Promise<void> {
    const { replay, client } = authenticated;
    if (!replay) return;
    const first = await this.replayGuard.firstUse(
      client.clientId,
      replay.jti,
      replay.rememberUntil,
    );
    if (!first) throw invalidClient(`client assertion replayed (jti "${replay.jti}")`);
  }

  private async issueToken(
    client: Client,
    authMethod: AuthMethod,
    scopes: string[],
    certificate: X509Certificate,
  ): Promise<IssuedToken> {
    const ttl = this.deps.config.auth.accessTokenTtlSeconds;
    const key = await this.deps.keys.activeKey();
    const accessToken = await signAccessToken({
      signingKey: key,
      issuer: this.issuer,
      audience: this.audience,
      clientId: client.clientId,
      scopes,
      certificateThumbprint: certificateThumbprint(certificate),
      issuedAt: epochSeconds(this.deps.clock),
      ttlSeconds: ttl,
      jti: randomUUID(),
    });
    return {
      clientId: client.clientId,
      authMethod,
      response: {
        access_token: accessToken,
        token_type: 'Bearer',
        expires_in: ttl,
        scope: scopes.join(' '),
      },
    };
  }

  /**
   * A token verified less than VERIFIED_TOKEN_CACHE_MS ago (and not expired since) is taken from
   * the cache: a PS256 verification is most of a GET's CPU otherwise. Its key must still be
   * published (KeyRing, cached 1 s as before), so a withdrawn key stops its tokens as quickly.
   */
  private async verifyToken(token: string): Promise<VerifiedAccessToken> {
    const now = this.deps.clock.now();
    const hit = this.verifiedTokens.get(token);
    if (hit) {
      if (hit.until > now && (await this.verificationKey(hit.kid))) return hit.verified;
      this.verifiedTokens.delete(token);
    }
    let kid = '';
    const verified = await this.verifyTokenSignature(token, (k) => {
      kid = k;
      return this.verificationKey(k);
    });
    const until = Math.min(verified.expiresAt * 1000, now + VERIFIED_TOKEN_CACHE_MS);
    if (until > now) {
      if (this.verifiedTokens.size >= VERIFIED_TOKEN_CACHE_MAX) this.evictVerified(now);
      this.verifiedTokens.set(token, { verified, kid, until });
    }
    return verified;
  }

  private evictVerified(now: number): void {
    for (const [k, v] of this.verifiedTokens) if (v.until <= now) this.verifiedTokens.delete(k);
    if (this.verifiedTokens.size >= VERIFIED_TOKEN_CACHE_MAX) this.verifiedTokens.clear();
  }

  private async verifyTokenSignature(
    token: string,
    keyFor: (kid: string) => Promise<KeyObject | undefined>,
  ): Promise<VerifiedAccessToken> {
    const policy: AccessTokenPolicy = {
      issuer: this.issuer,
      audience: this.audience,
      clockToleranceSeconds: this.deps.config.auth.clockToleranceSeconds,
      maxLifetimeSeconds: this.deps.config.auth.accessTokenTtlSeconds,
    };
    try {
      return await verifyAccessToken(token, policy, this.deps.clock.now(), keyFor);
    } catch (err) {
      if (err instanceof AccessTokenError) {
        throw new UnauthenticatedError(
          `access token ${err.failure}: ${err.message}`,
          'invalid_token',
          err.failure === 'expired',
        );
      }
      throw err;
    }
  }

  /** Revocation reaches every replica within 2 s: findActive caches for 1 s and NOTIFY clears it. */
  private async checkClientActive(clientId: string): Promise<void> {
    if (!(await this.deps.clients.findActive(clientId))) {
      throw new UnauthenticatedError(`access token of client "${clientId}", which is not active`);
    }
  }

  // Holding the KeyObject for a second lets jose reuse the key it imported from it; KeyRing
  // builds a new KeyObject on every call.
  private async verificationKey(kid: string): Promise<KeyObject | undefined> {
    const now = this.deps.clock.now();
    const hit = this.verificationKeys.get(kid);
    if (hit && hit.until > now) return hit.key;
    const key = await this.deps.keys.verificationKey(kid);
    if (!key) return undefined;
    if (this.verificationKeys.size > 100) this.verificationKeys.clear();
    this.verificationKeys.set(kid, { key, until: now + VERIFICATION_KEY_CACHE_MS });
    return key;
  }
}

function invalidClient(internalReason: string): OAuthError {
  return new OAuthError('invalid_client', CLIENT_AUTHENTICATION_FAILED, internalReason);
}

/** RFC 6749 §4.4.2 request parameters, and which client authentication the request uses. */
export function parseGrant(request: TokenRequest): Grant {
  const form = formParameters(request.form);
  const grantType = form.get('grant_type');
  if (grantType === undefined) throw new OAuthError('invalid_request', 'grant_type is required');
  if (grantType !== CLIENT_CREDENTIALS) {
    throw new OAuthError(
      'unsupported_grant_type',
      'only the client_credentials grant is supported',
      `grant_type "${grantType}"`,
    );
  }
  if (request.hasAuthorizationHeader || form.has('client_secret')) {
    throw invalidClient('client_secret_basic / client_secret_post attempted');
  }
  const scope = form.get('scope');
  const clientId = form.get('client_id');
  const assertionType = form.get('client_assertion_type');
  const assertion = form.get('client_assertion');
  if (assertionType !== undefined || assertion !== undefined) {
    if (assertionType === undefined || assertion === undefined) {
      throw new OAuthError(
        'invalid_request',
        'client_assertion and client_assertion_type must be sent together',
      );
    }
    if (assertionType !== CLIENT_ASSERTION_TYPE) {
      throw invalidClient(`client_assertion_type "${assertionType}"`);
    }
    return { scope, clientAuth: { method: 'private_key_jwt', assertion, clientId } };
  }
  if (clientId !== undefined) {
    return { scope, clientAuth: { method: 'tls_client_auth', clientId } };
  }
  throw invalidClient('no client authentication in the request');
}

/** Form parameters as single strings; RFC 6749 §3.2: none may be repeated. */
function formParameters(form: unknown): Map<string, string> {
  if (typeof form !== 'object' || form === null) {
    throw new OAuthError(
      'invalid_request',
      'the request body must be application/x-www-form-urlencoded',
    );
  }
  const params = new Map<string, string>();
  for (const [name, value] of Object.entries(form as Record<string, unknown>)) {
    if (typeof value !== 'string') {
      throw new OAuthError('invalid_request', `parameter ${name} must be sent once`);
    }
    // U+0000 or a lone surrogate (client_id=%00) would reach Postgres and fail there.
    if (!isStorableText(name) || !isStorableText(value)) {
      throw new OAuthError('invalid_request', 'a parameter holds characters that are not allowed');
    }
    params.set(name, value);
  }
  return params;
}

function certificateOf(request: TokenRequest): X509Certificate {
  // The app refuses requests without a verified certificate before they get here; this is the
  // token endpoint's own guard, since an unbound token must never be issued.
  if (!request.certificate) throw invalidClient('no client certificate on the request');
  return request.certificate;
}

// Parsed once each: a registered DN (a pure function of its text; bounded like the clients'
// cache) and the subject of a certificate object (asked again on the same request's object).
const registeredDns = new Map<string, Dn>();
const certificateSubjects = new WeakMap<X509Certificate, Dn>();

function subjectOf(certificate: X509Certificate): Dn {
  return memoised(certificateSubjects, certificate, () => certificateSubject(certificate));
}

function registeredDn(dn: string): Dn {
  const known = registeredDns.get(dn);
  if (known !== undefined) return known;
  try {
    const parsed = parseDn(dn);
    if (registeredDns.size >= 10_000) registeredDns.clear();
    registeredDns.set(dn, parsed);
    return parsed;
  } catch (err) {
    if (err instanceof DnSyntaxError)
      throw invalidClient(`registered subject DN unreadable: ${dn}`);
    throw err;
  }
}

/** The method the client authenticated with must be the one it registered. */
export function checkAuthMethod(authenticated: { client: Client; method: AuthMethod }): void {
  if (authenticated.client.authMethod !== authenticated.method) {
    throw invalidClient(
      `client "${authenticated.client.clientId}" is registered for ${authenticated.client.authMethod}, used ${authenticated.method}`,
    );
  }
}

/** Requested scopes must be a subset of the registered ones; none requested: all registered. */
export function grantScopes(requested: string | undefined, client: Client): string[] {
  if (requested === undefined) return [...client.scopes];
  const scopes = [...new Set(requested.split(' ').filter((s) => s !== ''))];
  const refused = scopes.filter((s) => !client.scopes.includes(s));
  if (scopes.length === 0 || refused.length > 0) {
    throw new OAuthError(
      'invalid_scope',
      'the requested scope is empty or not allowed for this client',
      `requested "${requested}", registered "${client.scopes.join(' ')}"`,
    );
  }
  return scopes;
}

function checkCertificateBinding(
  boundThumbprint: string,
  certificate: X509Certificate | undefined,
): void {
  if (!certificate) throw new UnauthenticatedError('no client certificate to check the binding');
  const presented = certificateThumbprint(certificate);
  if (presented !== boundThumbprint) {
    throw new UnauthenticatedError(
      `token bound to certificate ${boundThumbprint}, presented ${presented}`,
    );
  }
}
