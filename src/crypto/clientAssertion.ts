// private_key_jwt client assertions (RFC 7523 §3, OIDC Core §9, FAPI 1 Advanced §5.2.2), checked
// in a fixed order: decode; alg in the asymmetric allow-list; required claims present; iss = sub
// = a registered, active client; aud accepted; signature against that client's JWKS; exp, nbf
// and iat with a clock tolerance and a maximum lifetime. The replay check (jti) and the client's
// registered auth method come after, in the domain (src/domain/tokens.ts): a jti is only
// remembered once everything else about the assertion is known to be good.
//
// Pure apart from `findClient`, the one lookup it needs. Every failure is a ClientAssertionError
// with a stable `failure` code for logs and tests; callers show clients none of it.
import {
  constants,
  createPublicKey,
  randomUUID,
  verify,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { importJWK, SignJWT, type JSONWebKeySet, type JWK } from 'jose';

import { isStorableText } from '../storableText.js';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** FAPI §8.6: PS256 or ES256; never `none`, never a MAC (HS*), not RS256. */
export const CLIENT_ASSERTION_ALGS = ['PS256', 'ES256'] as const;
export type ClientAssertionAlg = (typeof CLIENT_ASSERTION_ALGS)[number];

// assertion_jtis.jti is at most 256 characters (CHECK constraint).
const MAX_JTI_LENGTH = 256;

export type AssertionFailure =
  | 'malformed'
  | 'alg_not_allowed'
  | 'missing_claim'
  | 'iss_not_sub'
  | 'unknown_client'
  | 'wrong_audience'
  | 'no_matching_key'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'issued_in_future'
  | 'lifetime_too_long';

export class ClientAssertionError extends Error {
  override name = 'ClientAssertionError';
  constructor(
    readonly failure: AssertionFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface AssertionPolicy {
  /** Accepted `aud` values: the token endpoint URL and the issuer. */
  audiences: readonly string[];
  /** How far in the future `exp` may be. */
  maxLifetimeSeconds: number;
  clockToleranceSeconds: number;
}

/** What the check needs of a client: its registered public JWK Set. */
export interface AssertionClient {
  jwks: JSONWebKeySet;
}

export interface VerifiedAssertion<C> {
  clientId: string;
  client: C;
  jti: string;
  /** Until when the jti must be remembered: the latest moment the assertion is still accepted. */
  rememberUntil: Date;
}

export async function verifyClientAssertion<C extends AssertionClient>(
  assertion: string,
  policy: AssertionPolicy,
  nowMs: number,
  findClient: (clientId: string, kid: string | undefined) => Promise<C | undefined>,
): Promise<VerifiedAssertion<C>> {
  const { header, claims, signingInput, signature } = decode(assertion);
  const alg = allowedAlgorithm(header);
  const kid = keyId(header);
  const required = requiredClaims(claims);
  const clientId = issuerIsSubject(required);
  const client = await findClient(clientId, kid);
  if (!client) throw fail('unknown_client', `no active client "${clientId}"`);
  audienceAccepted(required.aud, policy.audiences);
  signatureVerified(signingInput, signature, alg, kid, client.jwks);
  timesAcceptable(required.exp, claims, policy, nowMs);
  return {
    clientId,
    client,
    jti: required.jti,
    rememberUntil: new Date((required.exp + policy.clockToleranceSeconds) * 1000),
  };
}

function fail(failure: AssertionFailure, message: string): ClientAssertionError {
  return new ClientAssertionError(failure, message);
}

type JsonObject = Record<string, unknown>;

interface DecodedAssertion {
  header: JsonObject;
  claims: JsonObject;
  /** The ASCII bytes the signature covers: base64url(header).base64url(claims). */
  signingInput: Buffer;
  signature: Buffer;
}

// Each part of a compact JWS is base64url without padding: anything else is refused before it
// is decoded (Buffer's decoder would skip stray characters).
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The three parts, decoded once: JSON objects for header and claims (RFC 7515 §7.1). */
function decode(assertion: string): DecodedAssertion {
  const first = assertion.indexOf('.');
  const second = first < 0 ? -1 : assertion.indexOf('.', first + 1);
  if (second < 0 || assertion.indexOf('.', second + 1) >= 0) {
    throw fail('malformed', 'not a compact JWS JWT (three dot-separated parts)');
  }
  const encodedHeader = assertion.slice(0, first);
  const encodedClaims = assertion.slice(first + 1, second);
  const encodedSignature = assertion.slice(second + 1);
  if (
    !BASE64URL.test(encodedHeader) ||
    !BASE64URL.test(encodedClaims) ||
    !BASE64URL.test(encodedSignature)
  ) {
    throw fail('malformed', 'not a compact JWS JWT (a part is not base64url)');
  }
  return {
    header: jsonObject(encodedHeader, 'header'),
    claims: jsonObject(encodedClaims, 'claims'),
    signingInput: Buffer.from(assertion.slice(0, second), 'ascii'),
    signature: Buffer.from(encodedSignature, 'base64url'),
  };
}

function jsonObject(encoded: string, part: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(Buffer.from(encoded, 'base64url')));
  } catch (err) {
    throw fail(
      'malformed',
      `not a compact JWS JWT: the ${part} is not JSON (${(err as Error).message})`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail('malformed', `not a compact JWS JWT: the ${part} is not a JSON object`);
  }
  return value as JsonObject;
}

function allowedAlgorithm(header: JsonObject): ClientAssertionAlg {
  const alg = header.alg;
  if (!(CLIENT_ASSERTION_ALGS as readonly unknown[]).includes(alg)) {
    throw fail('alg_not_allowed', `alg ${JSON.stringify(alg)} is not one of PS256, ES256`);
  }
  // No extension is understood (RFC 7515 §4.1.11), so none may be critical; nor b64=false
  // (RFC 7797), which only exists as a critical extension.
  if (header.crit !== undefined)
    throw fail('malformed', 'crit header parameters are not supported');
  return alg as ClientAssertionAlg;
}

function keyId(header: JsonObject): string | undefined {
  const kid = header.kid;
  if (kid === undefined) return undefined;
  if (typeof kid !== 'string') throw fail('malformed', 'kid must be a string');
  return kid;
}

interface RequiredClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  jti: string;
}

function requiredClaims(c: JsonObject): RequiredClaims {
  for (const name of ['iss', 'sub', 'aud', 'exp', 'jti'] as const) {
    if (c[name] === undefined) throw fail('missing_claim', `the "${name}" claim is missing`);
  }
  const { iss, sub, aud, exp, jti } = c;
  if (typeof iss !== 'string' || typeof sub !== 'string')
    throw fail('malformed', 'iss and sub must be strings');
  if (typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string')))
    throw fail('malformed', 'aud must be a string or an array of strings');
  if (typeof exp !== 'number' || !Number.isFinite(exp))
    throw fail('malformed', 'exp must be a number');
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH)
    throw fail('malformed', `jti must be a string of 1-${MAX_JTI_LENGTH} characters`);
  // The jti is written to Postgres (replay guard): refuse what text cannot hold, here, before
  // it can fail a batched insert shared with other clients' requests.
  if (!isStorableText(jti) || !isStorableText(iss) || !isStorableText(sub))
    throw fail('malformed', 'iss, sub and jti must not hold U+0000 or lone surrogates');
  return { iss, sub, aud: aud as string | string[], exp, jti };
}

function issuerIsSubject(c: RequiredClaims): string {
  if (c.iss !== c.sub) throw fail('iss_not_sub', `iss "${c.iss}" differs from sub "${c.sub}"`);
  return c.iss;
}

function audienceAccepted(aud: string | string[], accepted: readonly string[]): void {
  const given = typeof aud === 'string' ? [aud] : aud;
  if (!given.some((a) => accepted.includes(a))) {
    throw fail(
      'wrong_audience',
      `aud ${JSON.stringify(aud)} names neither ${accepted.join(' nor ')}`,
    );
  }
}

/**
 * node:crypto's one-shot verify, on this thread: an RSA public-key operation costs tens of
 * microseconds, less than handing it to another thread (WebCrypto's job queue) would.
 */
function signatureVerified(
  signingInput: Buffer,
  signature: Buffer,
  alg: ClientAssertionAlg,
  kid: string | undefined,
  jwks: JSONWebKeySet,
): void {
  // Without a kid every key would be tried: refused unless the JWKS holds a single key.
  if (kid === undefined && jwks.keys.length > 1) {
    throw fail('no_matching_key', 'the client has several keys: the assertion must name its kid');
  }
  const candidates = keysFor(jwks, alg).filter((k) => kid === undefined || k.kid === kid);
  if (candidates.length === 0) {
    throw fail(
      'no_matching_key',
      `no ${alg} key${kid === undefined ? '' : ` with kid "${kid}"`} in the client's JWKS`,
    );
  }
  // A key without a kid, or several with the same alg and no kid: one of them must verify it.
  for (const candidate of candidates) {
    if (verifies(signingInput, signature, alg, candidate.key)) return;
  }
  throw fail('bad_signature', 'the signature does not verify with the registered key');
}

function verifies(
  data: Buffer,
  signature: Buffer,
  alg: ClientAssertionAlg,
  key: KeyObject,
): boolean {
  try {
    return alg === 'PS256'
      ? verify(
          'sha256',
          data,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
          signature,
        )
      : // JWS carries ECDSA signatures as r || s (RFC 7518 §3.4), not DER.
        signature.length === 64 &&
          verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false; // a signature OpenSSL cannot even parse does not verify
  }
}

/** exp, nbf and iat against the clock, with the tolerance, and the assertion's lifetime. */
function timesAcceptable(
  exp: number,
  claims: JsonObject,
  policy: AssertionPolicy,
  nowMs: number,
): void {
  const now = Math.floor(nowMs / 1000);
  const tolerance = policy.clockToleranceSeconds;
  const { iat, nbf } = claims;
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat)))
    throw fail('malformed', 'iat must be a number');
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf)))
    throw fail('malformed', 'nbf must be a number');
  if (nbf !== undefined && nbf > now + tolerance)
    throw fail('not_yet_valid', 'nbf is in the future');
  if (exp <= now - tolerance) throw fail('expired', 'the assertion has expired');
  // A far-off exp would make the assertion a long-lived credential and the replay record
  // long-lived too.
  if (exp > now + policy.maxLifetimeSeconds + tolerance) {
    throw fail(
      'lifetime_too_long',
      `exp is ${exp - now} s ahead, more than the ${policy.maxLifetimeSeconds} s allowed`,
    );
  }
  if (iat !== undefined && iat > now + tolerance)
    throw fail('issued_in_future', 'iat is in the future');
}

// Public keys per registered JWK Set object, built once. Clients.findActive hands out the same
// object while its cache entry lives (about a second), so this saves re-importing on every
// request without holding on to keys of clients that changed: entries go when the JWKS object
// is collected.
const imported = new WeakMap<JSONWebKeySet, Map<ClientAssertionAlg, ImportedKey[]>>();

interface ImportedKey {
  kid: string | undefined;
  key: KeyObject;
}

function keysFor(jwks: JSONWebKeySet, alg: ClientAssertionAlg): ImportedKey[] {
  let byAlg = imported.get(jwks);
  if (!byAlg) imported.set(jwks, (byAlg = new Map()));
  let keys = byAlg.get(alg);
  if (!keys) byAlg.set(alg, (keys = importUsable(jwks, alg)));
  return keys;
}

// RFC 7518 §3.5 (and jose): a PS256 key must be at least 2048 bits.
const MIN_RSA_BITS = 2048;

function importUsable(jwks: JSONWebKeySet, alg: ClientAssertionAlg): ImportedKey[] {
  const out: ImportedKey[] = [];
  for (const jwk of jwks.keys as JWK[]) {
    if (!usableFor(jwk, alg)) continue;
    try {
      const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
      const details = key.asymmetricKeyDetails;
      if (alg === 'PS256' && (details?.modulusLength ?? 0) < MIN_RSA_BITS) continue;
      if (alg === 'ES256' && details?.namedCurve !== 'prime256v1') continue;
      out.push({ kid: jwk.kid, key });
    } catch {
      // A key that cannot be imported for this alg cannot verify anything: skip it.
    }
  }
  return out;
}

function usableFor(jwk: JWK, alg: ClientAssertionAlg): boolean {
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.key_ops !== undefined && !jwk.key_ops.includes('verify')) return false;
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  return alg === 'PS256' ? jwk.kty === 'RSA' : jwk.kty === 'EC' && jwk.crv === 'P-256';
}

/**
 * The TPP side (the `tpp assertion` command, benchmarks): a fresh assertion signed with a private
 * JWK, PS256 for RSA keys and ES256 for P-256 keys, with a random jti.
 */
export async function signClientAssertion(input: {
  clientId: string;
  audience: string;
  privateJwk: JWK;
  kid: string;
  lifetimeSeconds: number;
  nowMs: number;
}): Promise<string> {
  const { privateJwk } = input;
  const alg: ClientAssertionAlg =
    privateJwk.kty === 'RSA' ? 'PS256' : privateJwk.kty === 'EC' ? 'ES256' : failKey();
  if (privateJwk.alg !== undefined && privateJwk.alg !== alg) failKey();
  if (privateJwk.d === undefined) throw new Error('the key is not a private JWK (no "d")');
  const now = Math.floor(input.nowMs / 1000);
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg, kid: input.kid })
    .setIssuer(input.clientId)
    .setSubject(input.clientId)
    .setAudience(input.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + input.lifetimeSeconds)
    .sign(await importJWK(privateJwk, alg));
}

function failKey(): never {
  throw new Error('the key must be an RSA (PS256) or P-256 EC (ES256) private JWK');
}
