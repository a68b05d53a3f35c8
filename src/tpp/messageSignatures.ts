// OBIE message signing for the subscription calls (`x-jws-signature`, R/W 3.1.4+): the TPP signs
// the exact request body bytes (a detached PS256 JWS with the three critical
// http://openbanking.org.uk/ headers, no b64), and checks the server's signature over the exact
// response bytes with the issuer's JWKS.
import type { KeyObject } from 'node:crypto';
import { flattenedVerify } from 'jose';
import { OB_CRIT, OB_TAN, signDetached } from '../crypto/detachedJws.js';
import type { JwksKeys } from './jwksKeys.js';
import { isRecord, TppError } from './transport.js';

const ALG = 'PS256';
const RECOGNISED_CRIT = Object.fromEntries(OB_CRIT.map((h) => [h, true]));

export interface RequestSigner {
  kid: string;
  privateKey: KeyObject;
  /** http://openbanking.org.uk/iss: the client's registered signing identity. */
  iss: string;
  /** http://openbanking.org.uk/tan. */
  tan: string;
}

/** The `x-jws-signature` value for `body`. */
export function signRequestBody(
  body: string,
  signer: RequestSigner,
  nowMs: number,
): Promise<string> {
  if (signer.privateKey.asymmetricKeyType !== 'rsa') {
    throw new TppError(
      'configuration',
      'request signatures are PS256: the signing key must be an RSA key',
    );
  }
  return signDetached(Buffer.from(body, 'utf8'), signer, {
    iss: signer.iss,
    tan: signer.tan,
    iat: Math.floor(nowMs / 1000),
  });
}

/** Throws a `response_signature` TppError unless `signature` is the server's over `body`. */
export async function verifyResponseSignature(
  signature: string | string[] | undefined,
  body: Buffer,
  keys: JwksKeys,
  trustAnchor: string,
  what: string,
): Promise<void> {
  const fail = (reason: string) => new TppError('response_signature', `${what}: ${reason}`);
  if (typeof signature !== 'string') throw fail('no x-jws-signature on the response');
  const [encodedHeader, payload, encodedSignature, ...rest] = signature.split('.');
  if (!encodedHeader || payload !== '' || !encodedSignature || rest.length > 0) {
    throw fail('x-jws-signature is not a detached JWS');
  }
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8'));
  } catch {
    throw fail('the x-jws-signature header is not JSON');
  }
  if (!isRecord(header) || header.alg !== ALG || typeof header.kid !== 'string') {
    throw fail(`the x-jws-signature header must name alg ${ALG} and a kid`);
  }
  const crit = header.crit;
  if (
    !Array.isArray(crit) ||
    crit.length !== OB_CRIT.length ||
    !OB_CRIT.every((h) => crit.includes(h))
  ) {
    throw fail(`crit must be ${OB_CRIT.join(', ')}`);
  }
  if (header[OB_TAN] !== trustAnchor) throw fail(`${OB_TAN} is not ${trustAnchor}`);
  const key = await keys.key(header.kid, ALG);
  if (!key) throw fail(`kid ${header.kid} is not in the issuer's JWKS`);
  try {
    await flattenedVerify(
      {
        protected: encodedHeader,
        payload: body.toString('base64url'),
        signature: encodedSignature,
      },
      key,
      { algorithms: [ALG], crit: RECOGNISED_CRIT },
    );
  } catch {
    throw fail('x-jws-signature does not verify over the response body');
  }
}
