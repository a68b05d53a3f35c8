// createTppClient: one TPP talking to ob-events. Everything goes over one mTLS connection pool
// with the TPP's transport certificate; the access token is bound to that certificate.
//
//   discovery (once) → token (cached, renewed shortly before expiry, and once on a 401)
//   → subscription calls (request bodies signed, response signatures checked)
//   → polling: `poll` (the raw RFC 8936 call) and `events` (verified SETs as an async iterator)
//   → push: `pushHandler` for the TPP's own /event-notifications endpoint
import { createPrivateKey, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JSONWebKeySet, JWK } from 'jose';
import { AccessTokenSource, type TokenAuthMethod } from './accessTokens.js';
import { discover, type Endpoints, type ServerMetadata } from './discovery.js';
import {
  eventStream,
  type EventsOptions,
  type PollRequest,
  type PollResponse,
} from './eventStream.js';
import { JwksKeys } from './jwksKeys.js';
import {
  signRequestBody,
  verifyResponseSignature,
  type RequestSigner,
} from './messageSignatures.js';
import {
  createPushHandler,
  type PushEventHandler,
  type PushHandlerOptions,
} from './pushHandler.js';
import { setVerifierWith, type SetVerifier, type VerifiedSet } from './setVerifier.js';
import {
  createAgent,
  isRecord,
  jsonBody,
  send,
  statusError,
  TppError,
  type HttpResponse,
  type PemInput,
} from './transport.js';

export interface TppClientOptions {
  /**
   * The server's issuer (its PUBLIC_URL): what discovery must say and every SET's `iss`. Also
   * where to connect when `baseUrl` is absent. Give at least one of the two.
   */
  issuerUrl?: string;
  /**
   * Where to connect (the API listener), when it differs from the issuer: a load balancer's
   * address, a test server. Without `issuerUrl`, the issuer is what discovery says.
   */
  baseUrl?: string;
  clientId: string;
  /** Transport certificate and key (PEM). */
  cert: PemInput;
  key: PemInput;
  /** CAs trusted for the server's certificate (PEM); default: Node's bundled CAs. */
  ca?: PemInput | PemInput[];
  /** TLS server name, when the certificate does not name the host of `baseUrl`. */
  servername?: string;
  /**
   * The private signing key registered in the client's JWKS (a private JWK or a KeyObject):
   * signs client assertions (RSA: PS256, P-256: ES256) and request bodies (RSA only, PS256).
   */
  signingKey?: JWK | KeyObject;
  /** Its kid; default: the JWK's `kid`. */
  kid?: string;
  /** Token endpoint authentication; default private_key_jwt. */
  authMethod?: TokenAuthMethod;
  /** Requested scope; default: every scope the client is registered for. */
  scope?: string;
  /** Renew the access token this long before it expires (at most half its life); default 30. */
  tokenRefreshMarginSeconds?: number;
  /** http://openbanking.org.uk/iss of request signatures; default: the client id. */
  signingIss?: string;
  /** http://openbanking.org.uk/tan of request signatures (and expected in responses); default openbanking.org.uk. */
  trustAnchor?: string;
  /**
   * The OBIE Read/Write API version to use: `v4.0` (default) or `v3.1`. It sets the path
   * (/open-banking/v4.0) and the default subscription Version ('4.0'); a v4.0 server answers
   * errors with U-codes (OBErrorResponse1 of 4.0), v3.1 with UK.OBIE.* codes.
   */
  apiVersion?: TppApiVersion;
  /** Path of the OBIE APIs under `baseUrl`; default /open-banking/<apiVersion>. */
  apiBasePath?: string;
  /** Check the server's x-jws-signature on subscription responses; default true. */
  verifyResponseSignatures?: boolean;
  /** Accepted SET `typ` values; default JOSE and secevent+jwt. */
  setTyps?: string[];
  /** Time source (milliseconds since the epoch), for tests; default Date.now. */
  clock?: { now(): number };
  /**
   * A server in resource-server mode (the bank's authorization server issues the tokens):
   * returns a current access token from that AS, certificate-bound to `cert` (for example with
   * openid-client). The SDK then requests no token and reads no discovery document from
   * ob-events: give `issuerUrl` (ob-events' PUBLIC_URL, the `iss` of its SETs); its JWKS is
   * `{baseUrl}/jwks`. After a 401 it is called once more.
   */
  tokenProvider?: () => Promise<string>;
}

/** An event subscription as the SDK shows it (OBIE OBEventSubscriptionResponse1 Data). */
export interface Subscription {
  id: string;
  callbackUrl?: string;
  version: string;
  eventTypes?: string[];
}

export interface SubscribeInput {
  /** https://…/<version>/event-notifications for push; absent: polling only. */
  callbackUrl?: string;
  /** UK.OBIE.* codes; absent: every type. */
  eventTypes?: string[];
  /** Default: the client's API version without the v ('4.0' or '3.1'). */
  version?: string;
}

/** Changes to the current subscription; `null` removes a member (callbackUrl: null = polling only). */
export interface SubscriptionChanges {
  callbackUrl?: string | null;
  eventTypes?: string[] | null;
  version?: string;
}

export interface TppClient {
  readonly clientId: string;
  /** The server's metadata (discovery runs once, on first need). */
  discover(): Promise<ServerMetadata>;
  /** A current access token (cached until shortly before expiry). */
  accessToken(): Promise<string>;
  /** POST /event-subscriptions (signed); 409 when the client already has one. */
  subscribe(input?: SubscribeInput): Promise<Subscription>;
  /** GET /event-subscriptions: the client's subscription, or undefined. */
  getSubscription(): Promise<Subscription | undefined>;
  /** PUT /event-subscriptions/{id} (signed): the current subscription with `changes` applied. */
  updateSubscription(changes: SubscriptionChanges): Promise<Subscription>;
  /** DELETE /event-subscriptions/{id}; false when there was none. */
  unsubscribe(): Promise<boolean>;
  /** POST /events: the raw RFC 8936 call, SETs unverified. */
  poll(request?: PollRequest, opts?: { signal?: AbortSignal }): Promise<PollResponse>;
  /** Verified SETs as they arrive (see eventStream.ts for acknowledgement rules). */
  events(opts?: EventsOptions): AsyncGenerator<VerifiedSet, void, undefined>;
  /** Verifies a SET addressed to this client (iss = the issuer, aud = the client id). */
  verifySet(jws: string): Promise<VerifiedSet>;
  /** A node (req, res) handler for this client's /event-notifications endpoint. */
  pushHandler(
    onEvent: PushEventHandler,
    opts?: PushHandlerOptions,
  ): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** Closes the connection pool. */
  close(): Promise<void>;
}

export function createTppClient(opts: TppClientOptions): TppClient {
  return new Client(opts);
}

/** The OBIE API versions the SDK speaks. */
export const TPP_API_VERSIONS = ['v4.0', 'v3.1'] as const;
export type TppApiVersion = (typeof TPP_API_VERSIONS)[number];
const DEFAULT_API_VERSION: TppApiVersion = 'v4.0';
const DEFAULT_TRUST_ANCHOR = 'openbanking.org.uk';
const SUBSCRIPTIONS = '/event-subscriptions';

class Client implements TppClient {
  readonly clientId: string;
  private readonly agent;
  private readonly baseUrl: string;
  private readonly expectedIssuer: string | undefined;
  private readonly apiBase: string;
  /** The default subscription Version: '4.0' or '3.1'. */
  private readonly defaultVersion: string;
  private readonly now: () => number;
  private readonly signing: { jwk: JWK; keyObject: KeyObject; kid: string } | undefined;
  private readonly tokens: Pick<AccessTokenSource, 'get' | 'invalidate'>;
  private readonly keys: JwksKeys;
  private discovered: Promise<{ metadata: ServerMetadata; endpoints: Endpoints }> | undefined;
  private verifier: Promise<SetVerifier> | undefined;

  constructor(private readonly opts: TppClientOptions) {
    const base = opts.baseUrl ?? opts.issuerUrl;
    if (!base) throw new TppError('configuration', 'give issuerUrl, baseUrl or both');
    this.clientId = opts.clientId;
    this.baseUrl = base.replace(/\/+$/, '');
    this.expectedIssuer = opts.issuerUrl;
    const apiVersion = opts.apiVersion ?? DEFAULT_API_VERSION;
    if (!TPP_API_VERSIONS.includes(apiVersion)) {
      throw new TppError(
        'configuration',
        `apiVersion must be one of ${TPP_API_VERSIONS.join(', ')}`,
      );
    }
    this.apiBase = `${this.baseUrl}${opts.apiBasePath ?? `/open-banking/${apiVersion}`}`;
    this.defaultVersion = apiVersion.slice(1);
    const clock = opts.clock;
    this.now = clock ? () => clock.now() : Date.now;
    this.signing = opts.signingKey ? signingMaterial(opts.signingKey, opts.kid) : undefined;
    this.agent = createAgent({
      cert: opts.cert,
      key: opts.key,
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
    });
    const provider = opts.tokenProvider;
    this.tokens = provider
      ? { get: provider, invalidate: () => {} }
      : new AccessTokenSource({
          agent: this.agent,
          endpoints: async () => (await this.discovery()).endpoints,
          clientId: opts.clientId,
          authMethod: opts.authMethod ?? 'private_key_jwt',
          signingJwk: this.signing?.jwk,
          kid: this.signing?.kid,
          scope: opts.scope,
          refreshMarginSeconds: opts.tokenRefreshMarginSeconds ?? 30,
          now: this.now,
        });
    this.keys = new JwksKeys(() => this.fetchJwks(), this.now);
  }

  async discover(): Promise<ServerMetadata> {
    return (await this.discovery()).metadata;
  }

  accessToken(): Promise<string> {
    return this.tokens.get();
  }

  async subscribe(input: SubscribeInput = {}): Promise<Subscription> {
    const body = {
      Data: {
        ...(input.callbackUrl !== undefined ? { CallbackUrl: input.callbackUrl } : {}),
        Version: input.version ?? this.defaultVersion,
        ...(input.eventTypes !== undefined ? { EventTypes: input.eventTypes } : {}),
      },
    };
    const what = `POST ${SUBSCRIPTIONS}`;
    const res = await this.call('POST', SUBSCRIPTIONS, {
      body: JSON.stringify(body),
      signed: true,
    });
    if (res.status !== 201) throw statusError(res, what);
    await this.checkResponseSignature(res, what);
    return toSubscription(dataOf(jsonBody(res, what)), what);
  }

  async getSubscription(): Promise<Subscription | undefined> {
    const what = `GET ${SUBSCRIPTIONS}`;
    const res = await this.call('GET', SUBSCRIPTIONS, {});
    if (res.status !== 200) throw statusError(res, what);
    await this.checkResponseSignature(res, what);
    const list = dataOf(jsonBody(res, what)).EventSubscription;
    if (!Array.isArray(list))
      throw new TppError('invalid_response', `${what}: no EventSubscription list`);
    return list.length === 0 ? undefined : toSubscription(list[0], what);
  }

  async updateSubscription(changes: SubscriptionChanges): Promise<Subscription> {
    const current = await this.getSubscription();
    if (!current)
      throw new TppError('configuration', 'there is no subscription to update: subscribe first');
    // undefined: keep the current value; null: remove it.
    const callbackUrl =
      changes.callbackUrl === undefined ? current.callbackUrl : (changes.callbackUrl ?? undefined);
    const eventTypes =
      changes.eventTypes === undefined ? current.eventTypes : (changes.eventTypes ?? undefined);
    const body = {
      Data: {
        EventSubscriptionId: current.id,
        ...(callbackUrl !== undefined ? { CallbackUrl: callbackUrl } : {}),
        Version: changes.version ?? current.version,
        ...(eventTypes !== undefined ? { EventTypes: eventTypes } : {}),
      },
    };
    const path = `${SUBSCRIPTIONS}/${encodeURIComponent(current.id)}`;
    const what = `PUT ${path}`;
    const res = await this.call('PUT', path, { body: JSON.stringify(body), signed: true });
    if (res.status !== 200) throw statusError(res, what);
    await this.checkResponseSignature(res, what);
    return toSubscription(dataOf(jsonBody(res, what)), what);
  }

  async unsubscribe(): Promise<boolean> {
    const current = await this.getSubscription();
    if (!current) return false;
    const path = `${SUBSCRIPTIONS}/${encodeURIComponent(current.id)}`;
    const res = await this.call('DELETE', path, {});
    if (res.status !== 204) throw statusError(res, `DELETE ${path}`);
    return true;
  }

  async poll(
    request: PollRequest = {},
    opts: { signal?: AbortSignal } = {},
  ): Promise<PollResponse> {
    const what = 'POST /events';
    const res = await this.call('POST', '/events', {
      body: JSON.stringify(request),
      signal: opts.signal,
    });
    if (res.status !== 200) throw statusError(res, what);
    const answer = jsonBody(res, what);
    if (
      !isRecord(answer) ||
      !isRecord(answer.sets) ||
      !Object.values(answer.sets).every((s) => typeof s === 'string') ||
      typeof answer.moreAvailable !== 'boolean'
    ) {
      throw new TppError('invalid_response', `${what}: not an OBEventPollingResponse1`);
    }
    return { sets: answer.sets as Record<string, string>, moreAvailable: answer.moreAvailable };
  }

  events(opts: EventsOptions = {}): AsyncGenerator<VerifiedSet, void, undefined> {
    return eventStream(
      {
        poll: (request, signal) => this.poll(request, { signal }),
        verify: (jws) => this.verifySet(jws),
      },
      opts,
    );
  }

  async verifySet(jws: string): Promise<VerifiedSet> {
    return (await this.setVerifier()).verify(jws);
  }

  pushHandler(onEvent: PushEventHandler, opts?: PushHandlerOptions) {
    return createPushHandler(() => this.setVerifier(), onEvent, opts);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  // Discovery is retried on the next call when it failed.
  private discovery() {
    if (this.opts.tokenProvider) return (this.discovered ??= this.resourceServerOnly());
    this.discovered ??= discover(this.agent, this.baseUrl, this.expectedIssuer).catch(
      (err: unknown) => {
        this.discovered = undefined;
        throw err;
      },
    );
    return this.discovered;
  }

  /** Resource-server mode: ob-events publishes no metadata; its JWKS is at {baseUrl}/jwks. */
  private resourceServerOnly(): Promise<{ metadata: ServerMetadata; endpoints: Endpoints }> {
    const issuer = this.expectedIssuer;
    if (!issuer) {
      return Promise.reject(new TppError('configuration', 'tokenProvider needs issuerUrl'));
    }
    const jwksUrl = `${this.baseUrl}/jwks`;
    return Promise.resolve({
      metadata: { issuer, token_endpoint: '', jwks_uri: `${issuer}/jwks` },
      endpoints: { issuer, tokenEndpoint: '', tokenUrl: '', jwksUrl },
    });
  }

  private setVerifier(): Promise<SetVerifier> {
    this.verifier ??= this.discovery().then(({ endpoints }) =>
      setVerifierWith(this.keys, {
        issuer: endpoints.issuer,
        audience: this.clientId,
        ...(this.opts.setTyps ? { typs: this.opts.setTyps } : {}),
      }),
    );
    this.verifier.catch(() => (this.verifier = undefined));
    return this.verifier;
  }

  private async fetchJwks(): Promise<JSONWebKeySet> {
    const { jwksUrl } = (await this.discovery()).endpoints;
    const res = await send(this.agent, jwksUrl, {
      method: 'GET',
      headers: { accept: 'application/json' },
    });
    if (res.status !== 200) throw statusError(res, `GET ${jwksUrl}`);
    return jsonBody(res, `GET ${jwksUrl}`) as JSONWebKeySet;
  }

  /** A call to the OBIE APIs with the access token; a 401 renews the token and tries once more. */
  private async call(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    init: { body?: string; signed?: boolean; signal?: AbortSignal | undefined },
  ): Promise<HttpResponse> {
    for (let attempt = 1; ; attempt++) {
      const token = await this.tokens.get();
      const headers: Record<string, string> = {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        'x-fapi-interaction-id': randomUUID(),
      };
      if (init.body !== undefined) headers['content-type'] = 'application/json';
      if (init.signed && init.body !== undefined) {
        headers['x-jws-signature'] = await signRequestBody(
          init.body,
          this.requestSigner(),
          this.now(),
        );
      }
      const res = await send(this.agent, `${this.apiBase}${path}`, {
        method,
        headers,
        ...(init.body !== undefined ? { body: init.body } : {}),
        ...(init.signal ? { signal: init.signal } : {}),
      });
      if (res.status !== 401 || attempt > 1) return res;
      this.tokens.invalidate(token);
    }
  }

  private requestSigner(): RequestSigner {
    if (!this.signing)
      throw new TppError('configuration', 'signing request bodies needs signingKey');
    return {
      kid: this.signing.kid,
      privateKey: this.signing.keyObject,
      iss: this.opts.signingIss ?? this.clientId,
      tan: this.trustAnchor,
    };
  }

  private get trustAnchor(): string {
    return this.opts.trustAnchor ?? DEFAULT_TRUST_ANCHOR;
  }

  private async checkResponseSignature(res: HttpResponse, what: string): Promise<void> {
    if (this.opts.verifyResponseSignatures === false) return;
    await verifyResponseSignature(
      res.headers['x-jws-signature'],
      res.body,
      this.keys,
      this.trustAnchor,
      what,
    );
  }
}

function signingMaterial(key: JWK | KeyObject, kid: string | undefined) {
  if (isKeyObject(key)) {
    if (key.type !== 'private')
      throw new TppError('configuration', 'signingKey must be a private key');
    if (!kid) throw new TppError('configuration', 'a KeyObject signingKey needs kid');
    return { jwk: { ...(key.export({ format: 'jwk' }) as JWK), kid }, keyObject: key, kid };
  }
  if (key.d === undefined)
    throw new TppError('configuration', 'signingKey must be a private JWK (it has no "d")');
  const keyId = kid ?? key.kid;
  if (!keyId) throw new TppError('configuration', 'signingKey has no kid: pass kid');
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: key as JsonWebKey, format: 'jwk' });
  } catch (err) {
    throw new TppError('configuration', `signingKey: ${(err as Error).message}`);
  }
  return { jwk: key, keyObject, kid: keyId };
}

function isKeyObject(key: JWK | KeyObject): key is KeyObject {
  return typeof (key as KeyObject).export === 'function' && 'asymmetricKeyType' in key;
}

function dataOf(body: unknown): Record<string, unknown> {
  if (!isRecord(body) || !isRecord(body.Data))
    throw new TppError('invalid_response', 'no Data object');
  return body.Data;
}

function toSubscription(data: unknown, what: string): Subscription {
  if (
    !isRecord(data) ||
    typeof data.EventSubscriptionId !== 'string' ||
    typeof data.Version !== 'string'
  ) {
    throw new TppError('invalid_response', `${what}: not an event subscription`);
  }
  return {
    id: data.EventSubscriptionId,
    ...(typeof data.CallbackUrl === 'string' ? { callbackUrl: data.CallbackUrl } : {}),
    version: data.Version,
    ...(Array.isArray(data.EventTypes) ? { eventTypes: data.EventTypes.map(String) } : {}),
  };
}
