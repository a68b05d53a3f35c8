// The server's signing keys: encryption at rest, a bank's own key from a PEM file, and retirement
// only once no pending SET needs the old key.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet } from 'jose';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { loadConfig } from '../src/config.js';
import { SigningKeysStore } from '../src/db/stores/signingKeysStore.js';
import { parseEventInput } from '../src/domain/eventInput.js';
import { KeyRing } from '../src/domain/signingKeys.js';
import { silentLogger } from '../src/logger.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { eventFor, registerClient, subscribe } from './helpers/fixtures.js';
import { call, mtlsAgent } from './helpers/http.js';
import { readPki, startTestServer, testEnv } from './helpers/server.js';

describe('signing keys', () => {
  let db: TestDatabase;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-keys-'));

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  function keyRing(env: Record<string, string>, clock = new ManualClock()) {
    const config = loadConfig(testEnv(db, env));
    return new KeyRing({
      store: SigningKeysStore.create(db.knex),
      knex: db.knex,
      config: config.keys,
      clock,
      logger: silentLogger(),
    });
  }

  it('when KEY_ENCRYPTION_KEY is set, then a new private key is stored sealed and only that key opens it', async () => {
    const secret = randomBytes(32).toString('base64');
    const ring = keyRing({ KEY_ENCRYPTION_KEY: secret });
    const info = await ring.rotate();
    expect(info.encrypted).toBe(true);
    const row = await db.knex('signing_keys').where({ kid: info.kid }).first();
    expect(row.private_key).toMatch(/^sealed\.v1\./);
    expect(row.private_key).not.toContain('"d"');
    expect((await ring.activeKey()).kid).toBe(info.kid);

    await expect(keyRing({}).activeKey()).rejects.toThrow(
      /encrypted at rest; set KEY_ENCRYPTION_KEY/,
    );
    const wrong = keyRing({ KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') });
    await expect(wrong.activeKey()).rejects.toThrow(/does not open it/);
  });

  it('when SIGNING_KEY_FILE is set, then that key signs under SIGNING_KEY_KID, is in /jwks, and rotate refuses', async () => {
    const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    const file = path.join(tmp, 'bank-signing.pem');
    fs.writeFileSync(file, pem);
    const env = { SIGNING_KEY_FILE: file, SIGNING_KEY_KID: 'bank-hsm-2026' };
    const server = await startTestServer(db, { env });
    const pki = readPki();
    const agent = mtlsAgent({ ca: pki.ca, cert: pki.tppCert, key: pki.tppKey });
    try {
      const keys = (await call(agent, `${server.url}/jwks`)).json<JSONWebKeySet>();
      expect(keys.keys.map((k) => k.kid)).toContain('bank-hsm-2026');
      const client = await registerClient(server);
      await subscribe(db.knex, client);
      const parsed = parseEventInput(eventFor(client));
      if (!parsed.ok) throw new Error('fixture');
      const [outcome] = await server.server.services.publisher.publish([parsed.event]);
      const { set_jws: jws } = await db
        .knex('events')
        .where({ jti: outcome!.jti })
        .first('set_jws');
      expect(decodeProtectedHeader(jws as string).kid).toBe('bank-hsm-2026');
      await compactVerify(jws as string, createLocalJWKSet(keys), { algorithms: ['PS256'] });
      await expect(server.server.services.keys.rotate()).rejects.toThrow(/SIGNING_KEY_FILE/);
      // A replica started without the file cannot sign with it, and says why.
      await expect(keyRing({}).activeKey()).rejects.toThrow(
        /SIGNING_KEY_FILE and SIGNING_KEY_KID=bank-hsm-2026/,
      );
    } finally {
      await agent.close();
      await server.stop();
    }
  });

  it('when a retiring key is past its overlap, then it leaves /jwks only once no pending SET was signed with it', async () => {
    const clock = new ManualClock();
    const ring = keyRing({ SIGNING_KEY_OVERLAP_DAYS: '1' }, clock);
    const old = await ring.rotate();
    const client = `keys-${randomBytes(3).toString('hex')}`;
    await db.knex('clients').insert({
      client_id: client,
      name: client,
      auth_method: 'private_key_jwt',
      jwks: '{"keys":[]}',
      scopes: '{accounts}',
      signing_iss: client,
    });
    const jti = '01900000-0000-7000-8000-0000000000aa';
    await db.knex('events').insert({
      jti,
      client_id: client,
      event_types: '{UK.OBIE.Resource-Update}',
      subject_id: 'r',
      subject_type: 't',
      txn: 't',
      kid: old.kid,
      set_jws: 'x',
    });
    await db.knex('event_deliveries').insert({ jti, client_id: client });
    await ring.rotate(); // the old key is retiring now, until one day from the clock's time

    clock.advance(2 * 86_400_000);
    expect(await ring.retireExpired()).not.toContain(old.kid); // a pending SET still needs it
    ring.invalidate();
    expect((await ring.publicJwks()).keys.map((k) => k.kid)).toContain(old.kid);

    await db
      .knex('event_deliveries')
      .where({ jti })
      .update({ state: 'acknowledged', resolution: 'ack', resolved_at: db.knex.fn.now() });
    expect(await ring.retireExpired()).toContain(old.kid);
    expect((await ring.publicJwks()).keys.map((k) => k.kid)).not.toContain(old.kid);
  });

  it('when a key starts retiring, then its private half is erased and it still verifies', async () => {
    const ring = keyRing({});
    const old = await ring.rotate();
    expect((await db.knex('signing_keys').where({ kid: old.kid }).first()).private_key).not.toBe(
      null,
    );
    await ring.rotate();
    const row = await db.knex('signing_keys').where({ kid: old.kid }).first();
    expect(row.status).toBe('retiring');
    expect(row.private_key).toBeNull();
    ring.invalidate();
    expect(await ring.verificationKey(old.kid)).toBeDefined();
  });

  it('when a KEK is configured and the database holds a plaintext key, then start-up seals it and says so', async () => {
    const plain = await keyRing({}).rotate(); // written before the KEK was configured
    const before = await db.knex('signing_keys').where({ kid: plain.kid }).first();
    expect(before.private_key).toContain('"d"');

    const kek = randomBytes(32).toString('base64');
    const server = await startTestServer(db, { env: { KEY_ENCRYPTION_KEY: kek } });
    try {
      const after = await db.knex('signing_keys').where({ kid: plain.kid }).first();
      expect(after.private_key).toMatch(/^sealed\.v1\./);
      expect(after.private_key).not.toContain('"d"');
      // The sealed key still signs, with the KEK.
      expect((await server.server.services.keys.activeKey()).kid).toBe(plain.kid);
    } finally {
      await server.stop();
    }
  });

  it('when plaintext keys are sealed, then the log says which', async () => {
    const plain = await keyRing({}).rotate();
    const lines: string[] = [];
    const ring = new KeyRing({
      store: SigningKeysStore.create(db.knex),
      knex: db.knex,
      config: loadConfig(testEnv(db, { KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }))
        .keys,
      clock: new ManualClock(),
      logger: pino({ level: 'info' }, { write: (l: string) => lines.push(l) }),
    });
    expect(await ring.sealPlaintextKeys()).toEqual([plain.kid]);
    expect(lines.join('')).toMatch(/sealed 1 plaintext signing key\(s\) with KEY_ENCRYPTION_KEY/);
    expect(lines.join('')).toContain(plain.kid);
    expect(await ring.sealPlaintextKeys()).toEqual([]);
  });
});
