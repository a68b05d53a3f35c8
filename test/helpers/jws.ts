// Detached JWS (x-jws-signature) made by hand for tests, so a test can build any header (missing
// claims, a wrong alg, b64) that a library would refuse to produce.
import { constants, createPrivateKey, sign, type JsonWebKey } from 'node:crypto';
import type { JWK } from 'jose';

export const OB_IAT = 'http://openbanking.org.uk/iat';
export const OB_ISS = 'http://openbanking.org.uk/iss';
export const OB_TAN = 'http://openbanking.org.uk/tan';
export const OB_CRIT = [OB_IAT, OB_ISS, OB_TAN];

export interface DetachedOptions {
  /** Private JWK (RSA) that signs. */
  key: JWK;
  kid: string;
  iss: string;
  tan?: string;
  /** Seconds; default now. */
  iat?: number;
  /** Merged into the header; a value of `undefined` removes the member. */
  header?: Record<string, unknown>;
  /** RS256 signs with PKCS#1 v1.5 instead of PSS (whatever `alg` says). */
  padding?: 'pss' | 'pkcs1';
}

/** `base64url(header)..base64url(signature)` over `body` (its exact bytes). */
export function detachedJws(body: string | Buffer, opts: DetachedOptions): string {
  const header: Record<string, unknown> = {
    alg: 'PS256',
    kid: opts.kid,
    typ: 'JOSE',
    [OB_IAT]: opts.iat ?? Math.floor(Date.now() / 1000),
    [OB_ISS]: opts.iss,
    [OB_TAN]: opts.tan ?? 'openbanking.org.uk',
    crit: OB_CRIT,
    ...opts.header,
  };
  for (const [k, v] of Object.entries(header)) if (v === undefined) delete header[k];
  const encodedHeader = Buffer.from(JSON.stringify(header)).toString('base64url');
  const payload = Buffer.from(body).toString('base64url');
  const key = createPrivateKey({ key: opts.key as JsonWebKey, format: 'jwk' });
  const signature = sign('sha256', Buffer.from(`${encodedHeader}.${payload}`), {
    key,
    ...(opts.padding === 'pkcs1'
      ? { padding: constants.RSA_PKCS1_PADDING }
      : { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
  });
  return `${encodedHeader}..${signature.toString('base64url')}`;
}
