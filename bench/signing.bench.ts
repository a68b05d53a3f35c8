// PS256 signing: the cost that bounds publishing. Measures the raw single-core rate
// (node:crypto on one thread) and what the SetSigner pool gives on batches of 100, so the publish
// benchmarks can print their rate beside the raw one measured in the same run
// (`measureRawSigningRate`).
import {
  constants,
  createPrivateKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import os from 'node:os';
import { buildSetClaims } from '../src/crypto/setClaims.js';
import { createSetSigner } from '../src/crypto/setSigner.js';
import type { Bench, BenchRow } from './lib/report.js';

const BATCH = 100;

function benchKey(): { kid: string; privatePem: string; privateKey: KeyObject } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  return { kid: 'bench-key', privatePem, privateKey: createPrivateKey(privatePem) };
}

/** A realistic SET payload (resource-update, one link). */
export function sampleClaims(i: number): string {
  const link = `https://bank.example/open-banking/v3.1/aisp/account-access-consents/aac-${i}`;
  return JSON.stringify(
    buildSetClaims({
      iss: 'https://ob-events.example',
      aud: 'tpp-bench',
      jti: `0190f5c2-7a1b-7c3d-8e4f-${String(i).padStart(12, '0')}`,
      iat: 1_700_000_000,
      toe: 1_700_000_000,
      sub: link,
      txn: `txn-${i}`,
      eventType: 'UK.OBIE.Resource-Update',
      subject: {
        id: `aac-${i}`,
        type: 'account-access-consent',
        links: [{ version: 'v3.1', link }],
      },
    }),
  );
}

/**
 * PS256 signatures per second on the calling thread with node:crypto, signing compact-JWS
 * signing inputs of a realistic SET for about `ms` milliseconds (the event loop is blocked).
 */
export function measureRawSigningRate(ms = 2_000): number {
  const { privateKey } = benchKey();
  const header = Buffer.from('{"alg":"PS256","kid":"bench-key","typ":"JOSE"}').toString(
    'base64url',
  );
  const input = Buffer.from(`${header}.${Buffer.from(sampleClaims(1)).toString('base64url')}`);
  const options = { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
  for (let i = 0; i < 20; i++) sign('sha256', input, options); // warm-up
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let i = 0; i < 50; i++) sign('sha256', input, options);
    count += 50;
    elapsed = performance.now() - start;
  }
  return count / (elapsed / 1_000);
}

/**
 * Reference only: node:crypto's callback `sign`, which runs on libuv's threadpool (what jose's
 * WebCrypto path uses), with `inFlight` signatures outstanding.
 */
async function measureThreadpoolRate(ms: number, inFlight = 64): Promise<number> {
  const { privateKey } = benchKey();
  const input = Buffer.from(sampleClaims(1));
  const options = { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
  const signOnce = () =>
    new Promise<void>((resolve, reject) =>
      sign('sha256', input, options, (err) => (err ? reject(err) : resolve())),
    );
  let count = 0;
  const start = performance.now();
  const deadline = start + ms;
  const lane = async () => {
    while (performance.now() < deadline) {
      await signOnce();
      count++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return count / ((performance.now() - start) / 1_000);
}

/** SETs per second through a SetSigner, batches of `BATCH`, `inFlight` batches at a time. */
async function measurePool(workers: number, inFlight: number, ms: number): Promise<number> {
  const signer = createSetSigner({ workers });
  const key = benchKey();
  const payloads = Array.from({ length: BATCH }, (_, i) => sampleClaims(i));
  try {
    await signer.sign(payloads, key, 'JOSE'); // start-up and key import
    let count = 0;
    const start = performance.now();
    const deadline = start + ms;
    const lane = async () => {
      while (performance.now() < deadline) {
        await signer.sign(payloads, key, 'JOSE');
        count += BATCH;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    return count / ((performance.now() - start) / 1_000);
  } finally {
    await signer.close();
  }
}

export const run: Bench = async (ctx) => {
  const ms = ctx.quick ? 700 : 2_000;
  // The default of SIGNING_WORKERS (src/config.ts).
  const workers = Math.max(1, os.availableParallelism());
  ctx.log(`raw PS256 on one thread for ${ms} ms`);
  const raw = measureRawSigningRate(ms);
  ctx.log(`SetSigner with ${workers} workers, batches of ${BATCH}`);
  const sequential = await measurePool(workers, 1, ms);
  const concurrent = await measurePool(workers, 2 * workers, ms);
  ctx.log('SetSigner on the main thread (SIGNING_WORKERS=0)');
  const mainThread = await measurePool(0, 1, ms);
  ctx.log(`reference: node:crypto callback sign on libuv's threadpool`);
  const threadpool = await measureThreadpoolRate(ms);
  const rows: BenchRow[] = [
    { bench: 'signing', metric: 'raw PS256, one thread (node:crypto)', value: raw, unit: 'sig/s' },
    {
      bench: 'signing',
      metric: `SetSigner, ${workers} workers, 1 batch of ${BATCH} at a time`,
      value: sequential,
      unit: 'SET/s',
      note: `${(sequential / raw).toFixed(2)}× raw`,
    },
    {
      bench: 'signing',
      metric: `SetSigner, ${workers} workers, ${2 * workers} batches of ${BATCH} in flight`,
      value: concurrent,
      unit: 'SET/s',
      note: `${(concurrent / raw).toFixed(2)}× raw`,
    },
    {
      bench: 'signing',
      metric: 'SetSigner, main thread (workers 0)',
      value: mainThread,
      unit: 'SET/s',
      note: `${(mainThread / raw).toFixed(2)}× raw`,
    },
    {
      bench: 'signing',
      metric: 'reference: node:crypto async sign (libuv threadpool), 64 in flight',
      value: threadpool,
      unit: 'sig/s',
      note: `${(threadpool / raw).toFixed(2)}× raw`,
    },
  ];
  return rows;
};
