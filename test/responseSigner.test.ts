// Signature reuse (src/domain/responseSigner.ts): identical bytes, the same key, within the window.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { ResponseSigner, SIGNATURE_REUSE_MS } from '../src/domain/responseSigner.js';
import type { ActiveKey } from '../src/domain/signingKeys.js';

function newKey(kid: string): ActiveKey {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { kid, alg: 'PS256', privateKey, privatePem };
}

function kidOf(signature: string): string {
  const header = signature.split('.')[0]!;
  return (JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string }).kid;
}

describe('response signature reuse', () => {
  const keys = { a: newKey('key-a'), b: newKey('key-b') };

  function signer() {
    const clock = new ManualClock(1_700_000_000_000);
    const holder = { key: keys.a };
    const s = new ResponseSigner({
      keys: { activeKey: async () => holder.key },
      iss: 'ob-org',
      tan: 'openbanking.org.uk',
      clock,
    });
    return { s, clock, holder };
  }

  it('when the same bytes are signed again within the window, then the signature is reused', async () => {
    const { s, clock } = signer();
    const first = await s.sign('{"a":1}');
    clock.advance(SIGNATURE_REUSE_MS - 1);
    expect(await s.sign('{"a":1}')).toBe(first);
    expect(await s.sign('{"a":2}')).not.toBe(first);
  });

  it('when the window has passed, then the bytes are signed afresh', async () => {
    const { s, clock } = signer();
    const first = await s.sign('{"a":1}');
    clock.advance(SIGNATURE_REUSE_MS);
    expect(await s.sign('{"a":1}')).not.toBe(first);
  });

  it('when the active key changes, then identical bytes are signed afresh with the new kid', async () => {
    const { s, holder } = signer();
    expect(kidOf(await s.sign('{"a":1}'))).toBe('key-a');
    holder.key = keys.b;
    expect(kidOf(await s.sign('{"a":1}'))).toBe('key-b');
  });

  it('when a text is over 4 KiB, then it is reused by its digest, and a one-character change signs afresh', async () => {
    const { s } = signer();
    const long = JSON.stringify({ a: 'x'.repeat(5_000) });
    const first = await s.sign(long);
    expect(await s.sign(`${long.slice(0, -2)}"}`)).toBe(first);
    expect(await s.sign(long.replace('xx', 'xy'))).not.toBe(first);
  });
});
