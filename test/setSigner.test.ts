// Signing SETs: compact JWS that standard jose verifies, on the main thread and in worker threads
// loaded from the TypeScript sources (through tsx) and from compiled JavaScript (as in dist/).
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  compactVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  jwtVerify,
  type JSONWebKeySet,
} from 'jose';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSetSigner, type SetSigner } from '../src/crypto/setSigner.js';

const ROOT = path.resolve(import.meta.dirname, '..');

function keyPair(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    kid,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    jwks: {
      keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'PS256', use: 'sig' }],
    } as JSONWebKeySet,
    publicKey: publicKey as KeyObject,
  };
}

const key = keyPair('kid-1');
const other = keyPair('kid-2');

function claims(i: number) {
  return JSON.stringify({
    iss: 'https://ob-events.test',
    iat: 1_700_000_000,
    jti: `jti-${i}`,
    aud: 'tpp-1',
    sub: 'https://bank.example/x',
    txn: `jti-${i}`,
    toe: 1_700_000_000,
    events: { 'urn:uk:org:openbanking:events:resource-update': {} },
  });
}

const segment = (jws: string, i: number) =>
  Buffer.from(jws.split('.')[i]!, 'base64url').toString('utf8');

async function expectVerifies(jws: string, jwks: JSONWebKeySet, payload: string, typ: string) {
  const { payload: bytes, protectedHeader } = await compactVerify(jws, createLocalJWKSet(jwks), {
    algorithms: ['PS256'],
  });
  expect(new TextDecoder().decode(bytes)).toBe(payload);
  expect(protectedHeader).toStrictEqual({ alg: 'PS256', kid: jwks.keys[0]!.kid, typ });
}

/** setSigner.js + setSignerWorker.js compiled side by side, as `npm run build` lays them out in dist/. */
function compileToJavaScript(): string {
  const dir = path.join(ROOT, '.tmp', `set-signer-js-${process.pid}`);
  fs.mkdirSync(path.join(dir, 'crypto'), { recursive: true });
  for (const name of ['crypto/setSigner', 'crypto/setSignerWorker', 'errors']) {
    const source = fs.readFileSync(path.join(ROOT, 'src', `${name}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: {
        module: ts.ModuleKind.ES2022,
        target: ts.ScriptTarget.ES2023,
        verbatimModuleSyntax: true,
      },
      fileName: `${name}.ts`,
    });
    fs.writeFileSync(path.join(dir, `${name}.js`), outputText);
  }
  return dir;
}

describe.each([
  { name: 'on the main thread', workers: 0, mode: 'main-thread' },
  { name: 'in worker threads run from the TypeScript sources', workers: 2, mode: 'worker-ts' },
])('SetSigner $name', ({ workers, mode }) => {
  let signer: SetSigner;
  beforeAll(() => {
    signer = createSetSigner({ workers });
  });
  afterAll(() => signer?.close());

  it('when it is created, then it says where it signs', () => {
    expect(signer.mode).toBe(mode);
    expect(signer.workers).toBe(workers);
  });

  it.each(['JOSE', 'secevent+jwt'] as const)(
    'when a SET is signed with typ %s, then jose verifies it with the public JWKS and the header is exactly alg, kid, typ',
    async (typ) => {
      const [jws] = await signer.sign([claims(1)], key, typ);
      expect(jws!.split('.')).toHaveLength(3);
      expect(segment(jws!, 0)).toBe(`{"alg":"PS256","kid":"kid-1","typ":"${typ}"}`);
      await expectVerifies(jws!, key.jwks, claims(1), typ);
      const verified = await jwtVerify(jws!, createLocalJWKSet(key.jwks), {
        algorithms: ['PS256'],
        typ,
        issuer: 'https://ob-events.test',
        audience: 'tpp-1',
        currentDate: new Date(1_700_000_000_000),
      });
      expect(verified.payload.jti).toBe('jti-1');
    },
  );

  it('when a batch is signed, then the SETs come back in the same order, payloads byte for byte', async () => {
    const payloads = Array.from({ length: 237 }, (_, i) => claims(i));
    const sets = await signer.sign(payloads, key, 'JOSE');
    expect(sets).toHaveLength(payloads.length);
    expect(sets.map((jws) => segment(jws, 1))).toEqual(payloads);
    await Promise.all(sets.map((jws, i) => expectVerifies(jws, key.jwks, payloads[i]!, 'JOSE')));
  });

  it('when batches for two keys are signed at once, then each SET carries and verifies with its own key', async () => {
    const [a, b] = await Promise.all([
      signer.sign([claims(1), claims(2)], key, 'JOSE'),
      signer.sign([claims(3), claims(4)], other, 'JOSE'),
    ]);
    for (const jws of a!) expect(decodeProtectedHeader(jws).kid).toBe('kid-1');
    for (const jws of b!) expect(decodeProtectedHeader(jws).kid).toBe('kid-2');
    await expectVerifies(a![0]!, key.jwks, claims(1), 'JOSE');
    await expectVerifies(b![1]!, other.jwks, claims(4), 'JOSE');
    await expect(
      compactVerify(
        a![0]!,
        createLocalJWKSet({ keys: [{ ...other.jwks.keys[0]!, kid: 'kid-1' }] }),
        {
          algorithms: ['PS256'],
        },
      ),
    ).rejects.toThrow();
  });

  it('when a kid is reused for a different key, then the new key signs (no stale cache)', async () => {
    const replaced = { kid: 'kid-1', privatePem: other.privatePem };
    for (let i = 0; i < 4; i++) {
      const sets = await signer.sign(
        Array.from({ length: 20 }, (_, j) => claims(j)),
        replaced,
        'JOSE',
      );
      const jwks = { keys: [{ ...other.jwks.keys[0]!, kid: 'kid-1' }] };
      await Promise.all(sets.map((jws, j) => expectVerifies(jws, jwks, claims(j), 'JOSE')));
    }
  });

  it('when the batch is empty, then nothing is signed', async () => {
    expect(await signer.sign([], key, 'JOSE')).toEqual([]);
  });

  it('when the private key is not a PEM key, then signing rejects and the signer keeps working', async () => {
    await expect(
      signer.sign([claims(1)], { kid: 'bad', privatePem: 'not a key' }, 'JOSE'),
    ).rejects.toThrow();
    const [jws] = await signer.sign([claims(1)], key, 'JOSE');
    await expectVerifies(jws!, key.jwks, claims(1), 'JOSE');
  });
});

describe('SetSigner in worker threads run from compiled JavaScript (dist/ layout)', () => {
  let signer: SetSigner;
  let dir: string;
  beforeAll(async () => {
    dir = compileToJavaScript();
    const mod = (await import(pathToFileURL(path.join(dir, 'crypto/setSigner.js')).href)) as {
      createSetSigner: typeof createSetSigner;
    };
    signer = mod.createSetSigner({ workers: 2 });
  });
  afterAll(async () => {
    await signer?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('when the worker file is JavaScript, then it is loaded without tsx and its SETs verify in order', async () => {
    expect(signer.mode).toBe('worker-js');
    const payloads = Array.from({ length: 50 }, (_, i) => claims(i));
    const sets = await signer.sign(payloads, key, 'secevent+jwt');
    expect(sets.map((jws) => segment(jws, 1))).toEqual(payloads);
    await Promise.all(
      sets.map((jws, i) => expectVerifies(jws, key.jwks, payloads[i]!, 'secevent+jwt')),
    );
  });
});

describe('SetSigner lifecycle', () => {
  it('when the signer is closed, then signing rejects and closing again is harmless', async () => {
    const signer = createSetSigner({ workers: 1 });
    await signer.sign([claims(1)], key, 'JOSE');
    await signer.close();
    await expect(signer.sign([claims(1)], key, 'JOSE')).rejects.toThrow(/closed/);
    await signer.close();
  });
});
