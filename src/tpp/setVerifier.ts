// Verifying a Security Event Token from ob-events (OBIE OBEventNotification2 as a compact JWS),
// in a fixed order so the RFC 8935 error code names the first thing wrong:
//
//   compact JWS, header JSON, no `crit`               else invalid_request
//   alg in the allow-list (PS256), a kid              else invalid_key
//   typ JOSE or secevent+jwt (configurable)           else invalid_request
//   kid in the issuer's JWKS (refetched once), signature verifies   else invalid_key
//   payload a JSON object                              else invalid_request
//   iss = the issuer                                   else invalid_issuer
//   aud = this TPP's client id                         else invalid_audience
//   jti, iat, toe, sub, txn, events as OBEventNotification2 requires   else invalid_request
//
// These codes are what a poller sends back in `setErrs` and a push receiver in its 400 body.
// SETs have no `exp`: a valid SET stays valid; deduplicate on `jti` (redeliveries share it).
import { compactVerify, decodeProtectedHeader, type JSONWebKeySet } from 'jose';
import { EVENT_TYPES, eventUrn } from '../domain/eventTypes.js';
import { JwksKeys } from './jwksKeys.js';
import {
  createAgent,
  isRecord,
  jsonBody,
  send,
  statusError,
  type TlsIdentity,
} from './transport.js';

/** The RFC 8935 §2.4 error codes a SET recipient uses here. */
export type SetErrorCode =
  'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience';

export class SetVerificationError extends Error {
  override name = 'SetVerificationError';
  constructor(
    /** The RFC 8935 code (`err`). */
    readonly err: SetErrorCode,
    /** A short human-readable reason (`description`, at most 256 characters). */
    readonly description: string,
  ) {
    super(`${err}: ${description}`);
  }
}

/** OBEventSubject1. */
export interface SetSubject {
  subject_type: string;
  'http://openbanking.org.uk/rid': string;
  'http://openbanking.org.uk/rty': string;
  'http://openbanking.org.uk/rlk': { version: string; link: string }[];
}

export interface SetEvent {
  subject?: SetSubject;
  reason?: string;
  [member: string]: unknown;
}

/** OBEventNotification2. */
export interface SetClaims {
  iss: string;
  iat: number;
  jti: string;
  aud: string | string[];
  sub: string;
  txn: string;
  toe: number;
  /** Event type URN → event payload. */
  events: Record<string, SetEvent>;
  [claim: string]: unknown;
}

export interface VerifiedSet {
  jti: string;
  /** The `UK.OBIE.*` codes of the events in the SET (the URN itself for a type OBIE does not define). */
  eventTypes: string[];
  claims: SetClaims;
  header: { alg: string; kid: string; typ?: string };
  /** The compact JWS exactly as received. */
  jws: string;
}

export interface SetVerifierOptions {
  /** Expected `iss`: the server's issuer (PUBLIC_URL). */
  issuer: string;
  /** Expected `aud`: your client id. */
  audience: string;
  /** The issuer's public keys: a JWK Set, a URL of one, or a function returning one. */
  jwks: JSONWebKeySet | string | (() => Promise<JSONWebKeySet>);
  /** For a `jwks` URL: the TLS identity to fetch it with (ob-events serves its JWKS over mTLS). */
  tls?: TlsIdentity;
  /** Accepted `alg` values. Default: PS256. */
  algorithms?: string[];
  /** Accepted `typ` values (an `application/` prefix is ignored). Default: JOSE and secevent+jwt. */
  typs?: string[];
  /** Milliseconds since the epoch; for tests. */
  now?: () => number;
}

export interface SetVerifier {
  /** The verified SET; throws SetVerificationError (with its RFC 8935 code) when it is not. */
  verify(jws: string): Promise<VerifiedSet>;
}

const DEFAULT_ALGORITHMS = ['PS256'];
const DEFAULT_TYPS = ['JOSE', 'secevent+jwt'];
const MAX_DESCRIPTION = 256;
const URN_TO_CODE = new Map<string, string>(EVENT_TYPES.map((c) => [eventUrn(c), c]));

export function createSetVerifier(opts: SetVerifierOptions): SetVerifier {
  return setVerifierWith(new JwksKeys(jwksSource(opts), opts.now ?? Date.now), opts);
}

/** A verifier on keys the caller holds (the client shares them with response signatures). */
export function setVerifierWith(
  keys: JwksKeys,
  opts: Pick<SetVerifierOptions, 'issuer' | 'audience' | 'algorithms' | 'typs'>,
): SetVerifier {
  const algorithms = opts.algorithms ?? DEFAULT_ALGORITHMS;
  const typs = new Set((opts.typs ?? DEFAULT_TYPS).map(normaliseTyp));
  return {
    async verify(jws) {
      const header = readHeader(jws, algorithms, typs);
      const key = await keys.key(header.kid, header.alg);
      if (!key) {
        throw fail(
          'invalid_key',
          `no usable ${header.alg} key with kid ${header.kid} in the issuer's JWKS`,
        );
      }
      let payload: Uint8Array;
      try {
        ({ payload } = await compactVerify(jws, key, { algorithms: [header.alg] }));
      } catch {
        throw fail('invalid_key', 'the signature does not verify with the issuer key');
      }
      const claims = readClaims(payload, opts.issuer, opts.audience);
      return { jti: claims.jti, eventTypes: eventTypesOf(claims), claims, header, jws };
    },
  };
}

/** Verifies one SET (standalone use: builds a verifier each time; keep a SetVerifier for many). */
export function verifySet(jws: string, opts: SetVerifierOptions): Promise<VerifiedSet> {
  return createSetVerifier(opts).verify(jws);
}

function jwksSource(opts: SetVerifierOptions): JSONWebKeySet | (() => Promise<JSONWebKeySet>) {
  const { jwks } = opts;
  if (typeof jwks !== 'string') return jwks;
  const agent = opts.tls ? createAgent(opts.tls) : undefined;
  return async () => {
    const res = agent
      ? await send(agent, jwks, { method: 'GET', headers: { accept: 'application/json' } })
      : await fetchPlain(jwks);
    if (res.status !== 200) throw statusError(res, `GET ${jwks}`);
    return jsonBody(res, `GET ${jwks}`) as JSONWebKeySet;
  };
}

async function fetchPlain(url: string) {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  return { status: res.status, headers: {}, body: Buffer.from(await res.arrayBuffer()) };
}

function readHeader(
  jws: string,
  algorithms: string[],
  typs: ReadonlySet<string>,
): VerifiedSet['header'] {
  if (typeof jws !== 'string' || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jws)) {
    throw fail('invalid_request', 'not a compact JWS');
  }
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(jws) as Record<string, unknown>;
  } catch {
    throw fail('invalid_request', 'the JOSE header is not a JSON object');
  }
  if (header.crit !== undefined)
    throw fail('invalid_request', 'crit header parameters are not understood');
  const { alg, kid, typ } = header;
  if (typeof alg !== 'string' || !algorithms.includes(alg)) {
    throw fail(
      'invalid_key',
      `alg ${JSON.stringify(alg)} is not accepted (${algorithms.join(', ')})`,
    );
  }
  if (typeof kid !== 'string' || kid === '')
    throw fail('invalid_key', 'the JOSE header has no kid');
  if (typeof typ !== 'string' || !typs.has(normaliseTyp(typ))) {
    throw fail(
      'invalid_request',
      `typ ${JSON.stringify(typ)} is not a SET type (${[...typs].join(', ')})`,
    );
  }
  return { alg, kid, typ };
}

function readClaims(payload: Uint8Array, issuer: string, audience: string): SetClaims {
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    throw fail('invalid_request', 'the payload is not JSON');
  }
  if (!isRecord(claims)) throw fail('invalid_request', 'the payload is not a JSON object');
  if (claims.iss !== issuer)
    throw fail('invalid_issuer', `iss ${JSON.stringify(claims.iss)} is not ${issuer}`);
  const aud = claims.aud;
  if (!(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) {
    throw fail('invalid_audience', `aud ${JSON.stringify(aud)} is not ${audience}`);
  }
  const missing: string[] = ['jti', 'sub', 'txn'].filter((c) => !nonEmptyString(claims[c]));
  missing.push(...['iat', 'toe'].filter((c) => !Number.isInteger(claims[c])));
  if (missing.length > 0)
    throw fail('invalid_request', `claim ${missing.join(', ')} missing or of the wrong type`);
  const events = claims.events;
  if (
    !isRecord(events) ||
    Object.keys(events).length === 0 ||
    !Object.values(events).every(isRecord)
  ) {
    throw fail('invalid_request', 'events must be an object of one or more event objects');
  }
  return claims as SetClaims;
}

function eventTypesOf(claims: SetClaims): string[] {
  return Object.keys(claims.events).map((urn) => URN_TO_CODE.get(urn) ?? urn);
}

function normaliseTyp(typ: string): string {
  return typ.toLowerCase().replace(/^application\//, '');
}

function nonEmptyString(value: unknown): boolean {
  return typeof value === 'string' && value.length > 0;
}

function fail(err: SetErrorCode, description: string): SetVerificationError {
  return new SetVerificationError(err, description.slice(0, MAX_DESCRIPTION));
}
