// Our access tokens: JWTs in the RFC 9068 profile (`typ: at+jwt`), signed PS256 with the active
// signing key, bound to the TPP's transport certificate (RFC 8705 §3.1 `cnf.x5t#S256`).
//
// Claims: iss (PUBLIC_URL), aud (PUBLIC_URL: this deployment is both the authorisation server and
// the resource server), sub = client_id, client_id, scope, iat, exp, jti, cnf. Verification pins
// the algorithm, typ, issuer and audience, so none of our other signed objects (SETs: typ JOSE,
// aud = a client id; response signatures) and nothing a TPP signs can pass for an access token.
import { constants, sign, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';

export const ACCESS_TOKEN_TYP = 'at+jwt';
export const ACCESS_TOKEN_ALG = 'PS256';

export interface AccessTokenInput {
  signingKey: { kid: string; privateKey: KeyObject };
  issuer: string;
  audience: string;
  clientId: string;
  scopes: readonly string[];
  /** base64url SHA-256 of the DER client certificate the token was requested over. */
  certificateThumbprint: string;
  /** Seconds since the epoch. */
  issuedAt: number;
  ttlSeconds: number;
  jti: string;
}

/**
 * Signs with node:crypto's asynchronous sign, which runs on libuv's thread pool: RSA signing is
 * the most expensive step of a token request, and this keeps it off the event loop and spreads
 * it over every core.
 */
export async function signAccessToken(input: AccessTokenInput): Promise<string> {
  const claims = {
    iss: input.issuer,
    aud: input.audience,
    sub: input.clientId,
    client_id: input.clientId,
    scope: input.scopes.join(' '),
    iat: input.issuedAt,
    exp: input.issuedAt + input.ttlSeconds,
    jti: input.jti,
    cnf: { 'x5t#S256': input.certificateThumbprint },
  };
  const signingInput = `${encodedHeader(input.signingKey.kid)}.${b64(claims)}`;
  const signature = await new Promise<Buffer>((resolve, reject) =>
    sign(
      'sha256',
      Buffer.from(signingInput),
      {
        key: input.signingKey.privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        // RFC 7518 §3.5: the salt is as long as the hash.
        saltLength: 32,
      },
      (err, sig) => (err ? reject(err) : resolve(sig)),
    ),
  );
  return `${signingInput}.${signature.toString('base64url')}`;
}

// The protected header depends on the kid alone: encoded once per key, not per token.
const encodedHeaders = new Map<string, string>();

function encodedHeader(kid: string): string {
  let encoded = encodedHeaders.get(kid);
  if (encoded === undefined) {
    encoded = b64({ alg: ACCESS_TOKEN_ALG, kid, typ: ACCESS_TOKEN_TYP });
    if (encodedHeaders.size >= 16) encodedHeaders.clear(); // keys rotate rarely
    encodedHeaders.set(kid, encoded);
  }
  return encoded;
}

function b64(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export type AccessTokenFailure =
  | 'malformed'
  | 'alg_not_allowed'
  | 'unknown_key'
  | 'bad_signature'
  | 'wrong_type'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'expired'
  | 'too_long_lived'
  | 'invalid_claims';

export class AccessTokenError extends Error {
  override name = 'AccessTokenError';
  constructor(
    readonly failure: AccessTokenFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface AccessTokenPolicy {
  issuer: string;
  audience: string;
  clockToleranceSeconds: number;
  /**
   * ACCESS_TOKEN_TTL_SECONDS: a token whose `exp - iat` is longer (beyond the clock tolerance), or
   * whose `iat` lies in the future, was not issued by this deployment as configured (forged with
   * a leaked key, or mis-issued) and is refused.
   */
  maxLifetimeSeconds: number;
}

export interface VerifiedAccessToken {
  clientId: string;
  scopes: string[];
  certificateThumbprint: string;
  jti: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export async function verifyAccessToken(
  token: string,
  policy: AccessTokenPolicy,
  nowMs: number,
  keyFor: (kid: string) => Promise<KeyObject | undefined>,
): Promise<VerifiedAccessToken> {
  const kid = headerKid(token);
  const key = await keyFor(kid);
  if (!key) throw new AccessTokenError('unknown_key', `kid "${kid}" is not one of our keys`);
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(token, key, {
      algorithms: [ACCESS_TOKEN_ALG],
      typ: ACCESS_TOKEN_TYP,
      issuer: policy.issuer,
      audience: policy.audience,
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id', 'scope', 'cnf'],
      currentDate: new Date(nowMs),
      clockTolerance: policy.clockToleranceSeconds,
    }));
  } catch (err) {
    throw fromJose(err);
  }
  checkLifetime(claims, policy, nowMs);
  return boundClaims(claims);
}

function checkLifetime(c: JWTPayload, policy: AccessTokenPolicy, nowMs: number): void {
  const { iat, exp } = c;
  if (typeof iat !== 'number' || typeof exp !== 'number') {
    throw new AccessTokenError('invalid_claims', 'iat and exp must be numbers');
  }
  const tolerance = policy.clockToleranceSeconds;
  if (exp - iat > policy.maxLifetimeSeconds + tolerance) {
    throw new AccessTokenError(
      'too_long_lived',
      `exp - iat is ${exp - iat} s, more than the configured ${policy.maxLifetimeSeconds} s`,
    );
  }
  if (iat > nowMs / 1000 + tolerance) {
    throw new AccessTokenError('invalid_claims', 'iat is in the future');
  }
}

function headerKid(token: string): string {
  let kid: unknown;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch (err) {
    throw new AccessTokenError('malformed', `not a JWS (${(err as Error).message})`);
  }
  if (typeof kid !== 'string' || kid === '') throw new AccessTokenError('malformed', 'no kid');
  return kid;
}

function fromJose(err: unknown): AccessTokenError {
  const { code, claim, message } = err as { code?: string; claim?: string; message?: string };
  switch (code) {
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new AccessTokenError('alg_not_allowed', message ?? 'alg not allowed');
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new AccessTokenError('bad_signature', 'signature does not verify');
    case 'ERR_JWT_EXPIRED':
      return new AccessTokenError('expired', 'token expired');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claim === 'typ') return new AccessTokenError('wrong_type', 'typ is not at+jwt');
      if (claim === 'iss') return new AccessTokenError('wrong_issuer', 'issuer is not us');
      if (claim === 'aud') return new AccessTokenError('wrong_audience', 'audience is not us');
      return new AccessTokenError('invalid_claims', message ?? 'claim check failed');
    default:
      return new AccessTokenError('malformed', `${code ?? 'error'}: ${message ?? ''}`);
  }
}

function boundClaims(c: JWTPayload): VerifiedAccessToken {
  const cnf = c.cnf as Record<string, unknown> | undefined;
  const thumbprint = typeof cnf === 'object' && cnf !== null ? cnf['x5t#S256'] : undefined;
  if (
    typeof c.sub !== 'string' ||
    c.client_id !== c.sub ||
    typeof c.scope !== 'string' ||
    typeof c.jti !== 'string' ||
    typeof c.exp !== 'number' ||
    typeof thumbprint !== 'string'
  ) {
    throw new AccessTokenError('invalid_claims', 'sub, client_id, scope, jti or cnf malformed');
  }
  return {
    clientId: c.sub,
    scopes: c.scope.split(' ').filter((s) => s !== ''),
    certificateThumbprint: thumbprint,
    jti: c.jti,
    expiresAt: c.exp,
  };
}
