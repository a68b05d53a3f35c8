// Detached JWS message signatures (`x-jws-signature`), OBIE Read/Write 3.1.4+ "Message Signing":
// `base64url(header)..base64url(signature)`, the payload being the exact HTTP body bytes, no
// `b64` header (removed in 3.1.4), PS256 only, and three critical private headers:
//   http://openbanking.org.uk/iat  JSON number, seconds; in the past, and recent
//   http://openbanking.org.uk/iss  the signer: the TPP's registered signing identity
//   http://openbanking.org.uk/tan  the trust anchor (OB_TRUST_ANCHOR)
//
// Request signatures are checked in a fixed order, so that the error code says what is wrong
// first: present → shape → header JSON → claims present → claim values → key → signature.
//   missing header                                 UK.OBIE.Signature.Missing
//   not header..signature, bad base64url or JSON   UK.OBIE.Signature.Malformed
//   alg / kid / crit / an OB header absent         UK.OBIE.Signature.MissingClaim
//   wrong alg, crit, typ, cty, iat, iss or tan;
//   b64 or any other header member present         UK.OBIE.Signature.InvalidClaim
//   kid not in the client's JWKS, bad signature    UK.OBIE.Signature.Invalid
// All are 400 with Path `x-jws-signature`.
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { FlattenedSign, flattenedVerify, type JSONWebKeySet, type JWK } from 'jose';
import { invalid, type ObErrorCode } from '../errors.js';

export const JWS_SIGNATURE_HEADER = 'x-jws-signature';
export const OB_IAT = 'http://openbanking.org.uk/iat';
export const OB_ISS = 'http://openbanking.org.uk/iss';
export const OB_TAN = 'http://openbanking.org.uk/tan';
export const OB_CRIT = [OB_IAT, OB_ISS, OB_TAN] as const;
const ALG = 'PS256';
/** Header members a 3.1.4+ message signature may carry (R/W "Process for Verifying a Signature"). */
const ALLOWED_MEMBERS = new Set(['alg', 'kid', 'typ', 'cty', 'crit', ...OB_CRIT]);
const RECOGNISED_CRIT = Object.fromEntries(OB_CRIT.map((h) => [h, true]));

export interface SignatureSigner {
  /** The registered public JWK Set whose `kid`s may sign. */
  jwks: JSONWebKeySet;
  /** Expected `http://openbanking.org.uk/iss`. */
  signingIss: string;
}

export interface DetachedJwsPolicy {
  trustAnchor: string;
  clockToleranceSeconds: number;
  /** How old `http://openbanking.org.uk/iat` may be (before tolerance). */
  maxAgeSeconds: number;
}

/** Default maximum age of a request signature's iat: 10 minutes. */
export const DEFAULT_SIGNATURE_MAX_AGE_SECONDS = 600;

export class DetachedJwsVerifier {
  // Importing an RSA JWK costs more than verifying with it; clients are cached objects, so their
  // JWK objects are stable keys for as long as the client is.
  private readonly keys = new WeakMap<JWK, KeyObject | null>();

  constructor(private readonly policy: DetachedJwsPolicy) {}

  /**
   * Verifies `signature` over `body` as signed by `signer`. `nowSeconds` is the current time.
   * Throws a 400 AppError with a UK.OBIE.Signature.* code; returns the verified header.
   */
  async verify(
    signature: string,
    body: Uint8Array,
    signer: SignatureSigner,
    nowSeconds: number,
  ): Promise<Record<string, unknown>> {
    const { encodedHeader, header, encodedSignature } = parseDetached(signature);
    this.checkClaims(header, signer, nowSeconds);
    const key = this.keyFor(signer.jwks, header.kid as string);
    if (!key) throw fail('UK.OBIE.Signature.Invalid', 'the kid is not one of your registered keys');
    try {
      await flattenedVerify(
        {
          protected: encodedHeader,
          payload: Buffer.from(body).toString('base64url'),
          signature: encodedSignature,
        },
        key,
        { algorithms: [ALG], crit: RECOGNISED_CRIT },
      );
    } catch {
      throw fail(
        'UK.OBIE.Signature.Invalid',
        'the signature does not verify over the request body',
      );
    }
    return header;
  }

  private checkClaims(h: Record<string, unknown>, signer: SignatureSigner, now: number): void {
    for (const name of ['alg', 'kid', 'crit', ...OB_CRIT]) {
      if (h[name] === undefined) {
        throw fail('UK.OBIE.Signature.MissingClaim', `the JOSE header has no ${name}`);
      }
    }
    const bad = (message: string) => fail('UK.OBIE.Signature.InvalidClaim', message);
    if (h.alg !== ALG) throw bad(`alg must be ${ALG}`);
    if (typeof h.kid !== 'string' || h.kid === '') throw bad('kid must be a non-empty string');
    if ('b64' in h) throw bad('b64 must not be used (OBIE 3.1.4 and later)');
    const unexpected = Object.keys(h).filter((k) => !ALLOWED_MEMBERS.has(k));
    if (unexpected.length > 0) throw bad(`unexpected JOSE header member ${unexpected[0]}`);
    if (!sameMembers(h.crit, OB_CRIT)) throw bad(`crit must be exactly ${OB_CRIT.join(', ')}`);
    if (h.typ !== undefined && h.typ !== 'JOSE') throw bad('typ must be JOSE when present');
    if (h.cty !== undefined && h.cty !== 'json' && h.cty !== 'application/json') {
      throw bad('cty must be json or application/json when present');
    }
    const iat = h[OB_IAT];
    const { clockToleranceSeconds: tolerance, maxAgeSeconds } = this.policy;
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw bad(`${OB_IAT} must be a number`);
    if (iat > now + tolerance) throw bad(`${OB_IAT} is in the future`);
    if (iat < now - maxAgeSeconds - tolerance) {
      throw bad(`${OB_IAT} is more than ${maxAgeSeconds} seconds old`);
    }
    if (h[OB_ISS] !== signer.signingIss) throw bad(`${OB_ISS} is not your registered signing iss`);
    if (h[OB_TAN] !== this.policy.trustAnchor) {
      throw bad(`${OB_TAN} must be ${this.policy.trustAnchor}`);
    }
  }

  private keyFor(jwks: JSONWebKeySet, kid: string): KeyObject | undefined {
    const jwk = jwks.keys.find((k) => k.kid === kid);
    if (!jwk || jwk.kty !== 'RSA' || (jwk.use !== undefined && jwk.use !== 'sig')) return undefined;
    if (jwk.alg !== undefined && jwk.alg !== ALG) return undefined;
    let key = this.keys.get(jwk);
    if (key === undefined) {
      try {
        key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
      } catch {
        key = null;
      }
      this.keys.set(jwk, key);
    }
    return key ?? undefined;
  }
}

function parseDetached(signature: string): {
  encodedHeader: string;
  header: Record<string, unknown>;
  encodedSignature: string;
} {
  const malformed = (message: string) => fail('UK.OBIE.Signature.Malformed', message);
  const parts = signature.split('.');
  if (parts.length !== 3 || parts[1] !== '') {
    throw malformed('x-jws-signature must be a detached JWS: header..signature');
  }
  const [encodedHeader, , encodedSignature] = parts as [string, string, string];
  const b64url = /^[A-Za-z0-9_-]+$/;
  if (!b64url.test(encodedHeader) || !b64url.test(encodedSignature)) {
    throw malformed('x-jws-signature parts must be base64url');
  }
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8'));
  } catch {
    throw malformed('the JOSE header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw malformed('the JOSE header is not a JSON object');
  }
  return { encodedHeader, header: header as Record<string, unknown>, encodedSignature };
}

function sameMembers(value: unknown, expected: readonly string[]): boolean {
  return (
    Array.isArray(value) &&
    value.length === expected.length &&
    expected.every((e) => value.includes(e))
  );
}

function fail(code: ObErrorCode, message: string) {
  return invalid(code, message, JWS_SIGNATURE_HEADER);
}

export interface DetachedSigningKey {
  kid: string;
  privateKey: KeyObject;
}

export interface DetachedSignatureClaims {
  /** http://openbanking.org.uk/iss: the signer's organisation id. */
  iss: string;
  /** http://openbanking.org.uk/tan. */
  tan: string;
  /** http://openbanking.org.uk/iat, seconds. */
  iat: number;
}

/** A detached PS256 JWS over `bytes`: `header..signature`, the header as OBIE 3.1.4+ specifies. */
export async function signDetached(
  bytes: Uint8Array,
  key: DetachedSigningKey,
  claims: DetachedSignatureClaims,
): Promise<string> {
  const jws = await new FlattenedSign(bytes)
    .setProtectedHeader({
      alg: ALG,
      kid: key.kid,
      typ: 'JOSE',
      [OB_IAT]: claims.iat,
      [OB_ISS]: claims.iss,
      [OB_TAN]: claims.tan,
      crit: [...OB_CRIT],
    })
    .sign(key.privateKey, { crit: RECOGNISED_CRIT });
  return `${jws.protected}..${jws.signature}`;
}
