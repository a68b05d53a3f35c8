// Detached JWS (x-jws-signature), OBIE 3.1.4+ rules: src/crypto/detachedJws.ts. The clock is
// fixed; every rule has its own failing case, asserted on the UK.OBIE.Signature.* code.
import { createPrivateKey, type JsonWebKey } from 'node:crypto';
import { flattenedVerify, importJWK, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import {
  DetachedJwsVerifier,
  OB_CRIT,
  signDetached,
  type SignatureSigner,
} from '../src/crypto/detachedJws.js';
import { AppError } from '../src/errors.js';
import { detachedJws, OB_IAT, OB_ISS, OB_TAN } from './helpers/jws.js';

const NOW = 1_900_000_000;
const BODY = Buffer.from('{"Data":{"Version":"3.1"}}');
const verifier = new DetachedJwsVerifier({
  trustAnchor: 'openbanking.org.uk',
  clockToleranceSeconds: 10,
  maxAgeSeconds: 600,
});

let key: { privateJwk: JWK; publicJwk: JWK; kid: string };
let other: { privateJwk: JWK; publicJwk: JWK; kid: string };
let signer: SignatureSigner;

beforeAll(async () => {
  key = await createSigningKeyPair();
  other = await createSigningKeyPair();
  signer = { jwks: { keys: [key.publicJwk] }, signingIss: 'org-1/ssa-1' };
});

const sign = (opts: Partial<Parameters<typeof detachedJws>[1]> = {}, body: Buffer = BODY) =>
  detachedJws(body, {
    key: key.privateJwk,
    kid: key.kid,
    iss: 'org-1/ssa-1',
    iat: NOW - 5,
    ...opts,
  });

async function codeOf(signature: string, body: Buffer = BODY): Promise<string> {
  try {
    await verifier.verify(signature, body, signer, NOW);
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    expect(err.details[0]?.path).toBe('x-jws-signature');
    return err.details[0]!.errorCode;
  }
  return 'accepted';
}

describe('detached JWS verification', () => {
  it('when the signature is made as OBIE says, then it verifies', async () => {
    expect(await codeOf(sign())).toBe('accepted');
  });

  it('when the header has no typ, then it still verifies (typ is optional)', async () => {
    expect(await codeOf(sign({ header: { typ: undefined } }))).toBe('accepted');
  });

  it.each([
    ['not three parts', 'abc'],
    ['a payload in the middle', 'eyJhbGciOiJQUzI1NiJ9.eyJ4IjoxfQ.c2ln'],
    ['a part that is not base64url', 'eyJh+GciOi..c2ln'],
    ['a header that is not JSON', `${Buffer.from('not json').toString('base64url')}..c2ln`],
    ['a header that is a JSON array', `${Buffer.from('[1]').toString('base64url')}..c2ln`],
  ])('when the value has %s, then UK.OBIE.Signature.Malformed', async (_, value) => {
    expect(await codeOf(value)).toBe('UK.OBIE.Signature.Malformed');
  });

  it.each([
    ['iat', { [OB_IAT]: undefined }],
    ['iss', { [OB_ISS]: undefined }],
    ['tan', { [OB_TAN]: undefined }],
    ['crit', { crit: undefined }],
    ['kid', { kid: undefined }],
  ])('when the header has no %s, then UK.OBIE.Signature.MissingClaim', async (_, header) => {
    expect(await codeOf(sign({ header }))).toBe('UK.OBIE.Signature.MissingClaim');
  });

  it.each([
    ['alg RS256', { header: { alg: 'RS256' }, padding: 'pkcs1' as const }],
    ['alg none', { header: { alg: 'none' } }],
    ['b64 false (the 3.1.2/3.1.3 form)', { header: { b64: false, crit: [...OB_CRIT, 'b64'] } }],
    ['crit missing one OB header', { header: { crit: OB_CRIT.slice(0, 2) } }],
    ['crit with an extra entry', { header: { crit: [...OB_CRIT, 'exp'], exp: 1 } }],
    ['an unexpected header member', { header: { x5u: 'https://x.example/jwks' } }],
    ['typ JWT', { header: { typ: 'JWT' } }],
    ['cty text/plain', { header: { cty: 'text/plain' } }],
    ['iat as a string', { header: { [OB_IAT]: String(NOW) } }],
    ['iat in the future', { iat: NOW + 60 }],
    ['iat more than ten minutes old', { iat: NOW - 611 }],
    ['another iss', { iss: 'org-2/ssa-9' }],
    ['another trust anchor', { tan: 'evil.example' }],
  ])('when the header has %s, then UK.OBIE.Signature.InvalidClaim', async (_, opts) => {
    expect(await codeOf(sign(opts))).toBe('UK.OBIE.Signature.InvalidClaim');
  });

  it('when iat is within the clock tolerance of now, then it is accepted', async () => {
    expect(await codeOf(sign({ iat: NOW + 10 }))).toBe('accepted');
    expect(await codeOf(sign({ iat: NOW - 610 }))).toBe('accepted');
  });

  it('when the kid is not one of the client keys, then UK.OBIE.Signature.Invalid', async () => {
    expect(await codeOf(sign({ kid: 'unknown-kid' }))).toBe('UK.OBIE.Signature.Invalid');
  });

  it('when another key signs under the registered kid, then UK.OBIE.Signature.Invalid', async () => {
    expect(await codeOf(sign({ key: other.privateJwk }))).toBe('UK.OBIE.Signature.Invalid');
  });

  it('when one byte of the body changes, then UK.OBIE.Signature.Invalid', async () => {
    const signature = sign();
    const tampered = Buffer.from(BODY.toString().replace('3.1', '3.2'));
    expect(await codeOf(signature, tampered)).toBe('UK.OBIE.Signature.Invalid');
  });

  it('when the body is re-serialised with other whitespace, then it no longer verifies', async () => {
    const signature = sign();
    const spaced = Buffer.from(JSON.stringify(JSON.parse(BODY.toString()), null, 1));
    expect(await codeOf(signature, spaced)).toBe('UK.OBIE.Signature.Invalid');
  });

  it('when the kid names an EC key of the client, then UK.OBIE.Signature.Invalid', async () => {
    const ec = { kty: 'EC', crv: 'P-256', kid: 'ec-1', x: 'x', y: 'y' } as JWK;
    const withEc = { ...signer, jwks: { keys: [ec, key.publicJwk] } };
    await expect(verifier.verify(sign({ kid: 'ec-1' }), BODY, withEc, NOW)).rejects.toMatchObject({
      details: [{ errorCode: 'UK.OBIE.Signature.Invalid' }],
    });
  });
});

describe('detached JWS signing', () => {
  it('when we sign bytes, then the value is header..signature and jose verifies it with the OB crit headers', async () => {
    const privateKey = createPrivateKey({ key: key.privateJwk as JsonWebKey, format: 'jwk' });
    const value = await signDetached(
      BODY,
      { kid: key.kid, privateKey },
      {
        iss: 'ob-events-dev',
        tan: 'openbanking.org.uk',
        iat: NOW,
      },
    );
    const [h, empty, s] = value.split('.');
    expect(empty).toBe('');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
    expect(header).toEqual({
      alg: 'PS256',
      kid: key.kid,
      typ: 'JOSE',
      [OB_IAT]: NOW,
      [OB_ISS]: 'ob-events-dev',
      [OB_TAN]: 'openbanking.org.uk',
      crit: OB_CRIT,
    });
    await flattenedVerify(
      { protected: h!, payload: BODY.toString('base64url'), signature: s! },
      await importJWK(key.publicJwk, 'PS256'),
      { algorithms: ['PS256'], crit: Object.fromEntries(OB_CRIT.map((c) => [c, true])) },
    );
    // and our own verifier accepts it as a request signature of that issuer
    const ours = { jwks: { keys: [key.publicJwk] }, signingIss: 'ob-events-dev' };
    await expect(verifier.verify(value, BODY, ours, NOW + 1)).resolves.toBeDefined();
  });
});
