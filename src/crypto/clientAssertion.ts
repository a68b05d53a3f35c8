// private_key_jwt client assertions (RFC 7523 §3, OIDC Core §9, FAPI 1 Advanced §5.2.2), checked
// in a fixed order: decode; alg in the asymmetric allow-list; required claims present; iss = sub
// = a registered, active client; aud accepted; signature against that client's JWKS; exp, nbf
// and iat with a clock tolerance and a maximum lifetime. The replay check (jti) and the client's
// registered auth method come after, in the domain (src/domain/tokens.ts): a jti is only
// remembered once everything else about the assertion is known to be good.
//
// Pure apart from `findClient`, the one lookup it needs. Every failure is a ClientAssertionError
// with a stable `failure` code for logs and tests; callers show clients none of it.
import { randomUUID } from 'node:crypto';
import {
  decodeJwt,
  decodeProtectedHeader,
  importJWK,
  jwtVerify,
  SignJWT,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from 'jose';

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
  findClient: (clientId: string) => Promise<C | undefined>,
): Promise<VerifiedAssertion<C>> {
  const { header, claims } = decode(assertion);
  const alg = allowedAlgorithm(header);
  const required = requiredClaims(claims);
  const clientId = issuerIsSubject(required);
  const client = await findClient(clientId);
  if (!client) throw fail('unknown_client', `no active client "${clientId}"`);
  audienceAccepted(required.aud, policy.audiences);
  await signatureVerified(assertion, alg, header.kid, client.jwks, clientId, policy, nowMs);
  lifetimeAcceptable(required.exp, claims, policy, nowMs);
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

function decode(assertion: string): { header: ProtectedHeaderParameters; claims: JWTPayload } {
  try {
    return { header: decodeProtectedHeader(assertion), claims: decodeJwt(assertion) };
  } catch (err) {
    throw fail('malformed', `not a compact JWS JWT (${(err as Error).message})`);
  }
}

function allowedAlgorithm(header: ProtectedHeaderParameters): ClientAssertionAlg {
  const alg = header.alg;
  if (!(CLIENT_ASSERTION_ALGS as readonly unknown[]).includes(alg)) {
    throw fail('alg_not_allowed', `alg ${JSON.stringify(alg)} is not one of PS256, ES256`);
  }
  if (header.crit !== undefined)
    throw fail('malformed', 'crit header parameters are not supported');
  return alg as ClientAssertionAlg;
}

interface RequiredClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  jti: string;
}

function requiredClaims(c: JWTPayload): RequiredClaims {
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
  return { iss, sub, aud, exp, jti };
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

async function signatureVerified(
  assertion: string,
  alg: ClientAssertionAlg,
  kid: string | undefined,
  jwks: JSONWebKeySet,
  clientId: string,
  policy: AssertionPolicy,
  nowMs: number,
): Promise<void> {
  // Without a kid every key would be tried: refused unless the JWKS holds a single key.
  if (kid === undefined && jwks.keys.length > 1) {
    throw fail('no_matching_key', 'the client has several keys: the assertion must name its kid');
  }
  const candidates = await keysFor(jwks, alg, kid);
  if (candidates.length === 0) {
    throw fail(
      'no_matching_key',
      `no ${alg} key${kid === undefined ? '' : ` with kid "${kid}"`} in the client's JWKS`,
    );
  }
  // A key without a kid, or several with the same alg and no kid: one of them must verify it.
  for (const [i, candidate] of candidates.entries()) {
    try {
      await jwtVerify(assertion, candidate.key, {
        algorithms: [...CLIENT_ASSERTION_ALGS],
        issuer: clientId,
        subject: clientId,
        audience: [...policy.audiences],
        requiredClaims: ['exp', 'jti'],
        currentDate: new Date(nowMs),
        clockTolerance: policy.clockToleranceSeconds,
      });
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      const claim = (err as { claim?: string }).claim;
      if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') {
        if (i < candidates.length - 1) continue;
        throw fail('bad_signature', 'the signature does not verify with the registered key');
      }
      if (code === 'ERR_JWT_EXPIRED') throw fail('expired', 'the assertion has expired');
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'nbf')
        throw fail('not_yet_valid', 'nbf is in the future');
      throw fail('malformed', `${code ?? 'error'}: ${(err as Error).message}`);
    }
  }
}

function lifetimeAcceptable(
  exp: number,
  claims: JWTPayload,
  policy: AssertionPolicy,
  nowMs: number,
): void {
  const now = Math.floor(nowMs / 1000);
  const tolerance = policy.clockToleranceSeconds;
  // jwtVerify has already refused an exp in the past; a far-off exp would make the assertion a
  // long-lived credential and the replay record long-lived too.
  if (exp > now + policy.maxLifetimeSeconds + tolerance) {
    throw fail(
      'lifetime_too_long',
      `exp is ${exp - now} s ahead, more than the ${policy.maxLifetimeSeconds} s allowed`,
    );
  }
  if (claims.iat !== undefined) {
    if (typeof claims.iat !== 'number' || !Number.isFinite(claims.iat))
      throw fail('malformed', 'iat must be a number');
    if (claims.iat > now + tolerance) throw fail('issued_in_future', 'iat is in the future');
  }
}

// Imported keys per registered JWK Set object. Clients.findActive hands out the same object while
// its cache entry lives (about a second), so this saves re-importing on every request without
// holding on to keys of clients that changed: entries go when the JWKS object is collected.
const imported = new WeakMap<JSONWebKeySet, Map<string, Promise<ImportedKey[]>>>();

interface ImportedKey {
  kid: string | undefined;
  key: CryptoKey | Uint8Array;
}

function keysFor(
  jwks: JSONWebKeySet,
  alg: ClientAssertionAlg,
  kid: string | undefined,
): Promise<ImportedKey[]> {
  let byAlg = imported.get(jwks);
  if (!byAlg) imported.set(jwks, (byAlg = new Map()));
  let keys = byAlg.get(alg);
  if (!keys) byAlg.set(alg, (keys = importUsable(jwks, alg)));
  return keys.then((all) => all.filter((k) => kid === undefined || k.kid === kid));
}

async function importUsable(jwks: JSONWebKeySet, alg: ClientAssertionAlg): Promise<ImportedKey[]> {
  const out: ImportedKey[] = [];
  for (const jwk of jwks.keys as JWK[]) {
    if (!usableFor(jwk, alg)) continue;
    try {
      out.push({ kid: jwk.kid, key: await importJWK(jwk, alg) });
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
