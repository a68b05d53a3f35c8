// The access token's protected header is encoded once per kid: a token must still name, and be
// signed by, the key it was signed with when the key changes.
import { constants, generateKeyPairSync, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signAccessToken } from '../src/crypto/accessTokens.js';

function signedBy(kid: string, privateKey: ReturnType<typeof generateKeyPairSync>['privateKey']) {
  return signAccessToken({
    signingKey: { kid, privateKey },
    issuer: 'https://bank.example',
    audience: 'https://bank.example',
    clientId: 'tpp-1',
    scopes: ['accounts'],
    certificateThumbprint: 'x5t',
    issuedAt: 1_800_000_000,
    ttlSeconds: 300,
    jti: 'j',
  });
}

function parts(token: string) {
  const [h, p, s] = token.split('.') as [string, string, string];
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>,
    input: Buffer.from(`${h}.${p}`),
    signature: Buffer.from(s, 'base64url'),
  };
}

describe('signAccessToken', () => {
  it('when the signing key changes, then each token names and is signed by its own key', async () => {
    const one = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const two = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const first = parts(await signedBy('k1', one.privateKey));
    const second = parts(await signedBy('k2', two.privateKey));
    const again = parts(await signedBy('k1', one.privateKey));
    const pss = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
    expect(first.header).toEqual({ alg: 'PS256', kid: 'k1', typ: 'at+jwt' });
    expect(second.header).toEqual({ alg: 'PS256', kid: 'k2', typ: 'at+jwt' });
    expect(again.header).toEqual(first.header);
    expect(verify('sha256', first.input, { key: one.publicKey, ...pss }, first.signature)).toBe(
      true,
    );
    expect(verify('sha256', second.input, { key: two.publicKey, ...pss }, second.signature)).toBe(
      true,
    );
  });
});
