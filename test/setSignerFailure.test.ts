// Signing workers that cannot start (open files exhausted, a broken install) must not crash the
// process: the signature fails with a 503 (Retry-After), readiness fails, and a later pool is
// tried again. Here the worker module throws while loading, as a failed worker start does.
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createSetSigner, SIGNER_RETRY_AFTER_SECONDS } from '../src/crypto/setSigner.js';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { ServiceUnavailableError } from '../src/errors.js';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { silentLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/main.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { eventFor, subscribe } from './helpers/fixtures.js';
import { testEnv } from './helpers/server.js';

const SECRET = 'test-admin-secret-0123456789';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-worker-'));
const failingWorker = path.join(dir, 'failingWorker.mjs');
fs.writeFileSync(
  failingWorker,
  "throw Object.assign(new Error('EMFILE: too many open files'), { code: 'ERR_WORKER_INIT_FAILED' });\n",
);
const failingWorkerUrl = pathToFileURL(failingWorker).href;

function keyMaterial() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid: 'k1', privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

describe('SET signing workers that fail to start', () => {
  it('when the workers fail at start, then sign() rejects with a 503 error, the failure is reported once, and check() fails', async () => {
    const errors: Error[] = [];
    const signer = createSetSigner({
      workers: 2,
      workerUrl: failingWorkerUrl,
      onWorkerError: (err) => errors.push(err),
    });
    const key = keyMaterial();
    const err = await signer.sign(['{"a":1}', '{"a":2}'], key, 'JOSE').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as ServiceUnavailableError).retryAfterSeconds).toBe(SIGNER_RETRY_AFTER_SECONDS);
    // During the cool-down further signatures fail at once, without starting workers.
    await expect(signer.sign(['{"a":3}'], key, 'JOSE')).rejects.toBeInstanceOf(
      ServiceUnavailableError,
    );
    expect(errors).toHaveLength(1);
    expect(await signer.check()).toMatchObject({ ok: false });
    await signer.close();
  });

  describe('in a running server', () => {
    let db: TestDatabase;
    let server: RunningServer;
    beforeAll(async () => {
      db = await createTestDatabase();
      server = await startServer({
        config: loadConfig(testEnv(db, { ADMIN_API_SECRET: SECRET })),
        logger: silentLogger(),
        signingWorkerUrl: failingWorkerUrl,
      });
    });
    afterAll(async () => {
      await server?.stop();
      await db?.drop();
    });

    it('when the signing workers cannot start, then publishing answers 503 with Retry-After, readiness fails, and the process lives on', async () => {
      const admin = `http://127.0.0.1:${server.adminPort}`;
      expect((await fetch(`${admin}/health/ready`)).status).toBe(200); // workers not started yet
      const clientId = 'tpp-signer-failure';
      const pair = await createSigningKeyPair();
      await server.services.clients.register({ clientId, jwks: { keys: [pair.publicJwk] } });
      await subscribe(db.knex, clientId);

      const body = JSON.stringify({ events: [eventFor(clientId)] });
      const res = await fetch(`${admin}/admin/v1/events`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-ob-events-signature': signAdminRequest({
            secret: SECRET,
            method: 'POST',
            path: '/admin/v1/events',
            body,
          }),
        },
        body,
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe(String(SIGNER_RETRY_AFTER_SECONDS));
      expect(await res.json()).toMatchObject({
        Errors: [{ ErrorCode: 'UK.OBIE.UnexpectedError' }],
      });
      expect(await db.knex('events').where({ client_id: clientId }).count({ n: '*' })).toEqual([
        { n: 0 },
      ]);

      const ready = await fetch(`${admin}/health/ready`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ checks: { signing: { ok: false } } });
      expect((await fetch(`${admin}/health/live`)).status).toBe(200);
    });
  });
});
