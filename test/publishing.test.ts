// Publishing through the admin API: signed SETs that verify with /jwks, filtering by
// subscription, idempotency, the HMAC authentication, key rotation and retention.
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import {
  compactVerify,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JSONWebKeySet,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { runRetention } from '../src/workers/retention.js';
import { AdminRequestMacsStore } from '../src/db/stores/adminRequestMacsStore.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { eventFor, registerClient, subscribe } from './helpers/fixtures.js';
import { call, mtlsAgent } from './helpers/http.js';
import { readPki, startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { silentLogger } from '../src/logger.js';
import { systemClock } from '../src/clock.js';

const SECRET = 'test-admin-secret-0123456789';

function sign(
  secret: string,
  body: string,
  timestamp: number,
  path = '/admin/v1/events',
  method = 'POST',
) {
  return signAdminRequest({ secret, method, path, body, timestamp });
}

describe('publishing events', () => {
  let db: TestDatabase;
  let server: TestServer;
  const pki = readPki();
  const tls = mtlsAgent({ ca: pki.ca, cert: pki.tppCert, key: pki.tppKey });

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: { ADMIN_API_SECRET: SECRET } });
  });
  afterAll(async () => {
    await tls.close();
    await server?.stop();
    await db?.drop();
  });

  async function adminPost(body: string, header?: string, path = '/admin/v1/events') {
    const res = await fetch(`${server.adminUrl}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-ob-events-signature': header ?? sign(SECRET, body, Math.floor(Date.now() / 1000), path),
      },
      body,
    });
    return {
      status: res.status,
      body: (await res.json().catch(() => null)) as Record<string, unknown> | null,
    };
  }

  /** Declares `declared` bytes, sends only 1 KB, and resolves with the answer. */
  function partialPost(
    signature: string | undefined,
    declared: number,
  ): Promise<{ status: number; connection: string | undefined }> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${server.adminUrl}/admin/v1/events`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': String(declared),
          ...(signature === undefined ? {} : { 'x-ob-events-signature': signature }),
        },
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, connection: res.headers.connection });
        req.destroy();
      });
      req.on('error', reject);
      req.write(Buffer.alloc(1024, 0x20));
    });
  }

  async function publish(events: unknown[]) {
    const res = await adminPost(JSON.stringify({ events }));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return (res.body as { results: { status: string; jti: string | null; reason?: string }[] })
      .results;
  }

  async function storedSet(jti: string): Promise<string> {
    const row = await db.knex('events').where({ jti }).first('set_jws');
    return row.set_jws as string;
  }

  async function jwks(): Promise<JSONWebKeySet> {
    const res = await call(tls, `${server.url}/jwks`);
    return res.json<JSONWebKeySet>();
  }

  it('when an event is published for a subscribed client, then one SET is stored that verifies with /jwks', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client);
    const [result] = await publish([eventFor(client, { txn: 'txn-1', toe: 1_700_000_000 })]);
    expect(result).toMatchObject({ status: 'created' });
    const jws = await storedSet(result!.jti!);
    const { payload, protectedHeader } = await compactVerify(jws, createLocalJWKSet(await jwks()), {
      algorithms: ['PS256'],
    });
    expect(protectedHeader).toMatchObject({ alg: 'PS256', typ: 'JOSE' });
    expect(protectedHeader.kid).toBeTruthy();
    const claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    expect(claims).toMatchObject({
      iss: TEST_PUBLIC_URL,
      aud: client,
      jti: result!.jti,
      txn: 'txn-1',
      toe: 1_700_000_000,
    });
    expect(Number.isInteger(claims.iat)).toBe(true);
    const delivery = await db.knex('event_deliveries').where({ jti: result!.jti }).first();
    expect(delivery).toMatchObject({ state: 'pending', client_id: client, push_state: null });
  });

  it('when the subscription has a CallbackUrl, then the SET is also due for push', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client, {
      callbackUrl: 'https://tpp.example/open-banking/v3.1/event-notifications',
    });
    const [result] = await publish([eventFor(client)]);
    const delivery = await db.knex('event_deliveries').where({ jti: result!.jti }).first();
    expect(delivery.push_state).toBe('due');
  });

  it('when the client has no subscription, is unknown, or is revoked, then the event is skipped with a reason', async () => {
    const unsubscribed = await registerClient(server);
    const revoked = await registerClient(server);
    await subscribe(db.knex, revoked);
    await server.server.services.clients.revoke(revoked);
    const results = await publish([
      eventFor(unsubscribed),
      eventFor('nobody-here'),
      eventFor(revoked),
    ]);
    expect(results.map((r) => r.status)).toEqual(['skipped', 'skipped', 'skipped']);
    expect(results.map((r) => r.jti)).toEqual([null, null, null]);
    expect(results[0]!.reason).toMatch(/no event subscription/);
    expect(results[1]!.reason).toMatch(/no such client/);
    expect(results[2]!.reason).toMatch(/revoked/);
  });

  it('when the subscription lists EventTypes, then other types are skipped and listed ones created', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client, { eventTypes: ['UK.OBIE.Consent-Authorization-Revoked'] });
    const results = await publish([
      eventFor(client),
      eventFor(client, { type: 'urn:uk:org:openbanking:events:consent-authorization-revoked' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['skipped', 'created']);
  });

  it('when the subscription Version is below 3.1.2, then only resource-update events are recorded', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client, { version: '3.1.1' });
    const results = await publish([
      eventFor(client),
      eventFor(client, { type: 'UK.OBIE.Account-Access-Consent-Linked-Account-Update' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['created', 'skipped']);
    expect(results[1]!.reason).toMatch(/version 3\.1\.1/);
  });

  it('when the same idempotency key is published again, then the first jti comes back and nothing is created', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client);
    const event = eventFor(client, { idempotencyKey: 'payment-42-settled' });
    const [first] = await publish([event]);
    const [again, inBatch1, inBatch2] = await publish([
      event,
      eventFor(client, { idempotencyKey: 'k2' }),
      eventFor(client, { idempotencyKey: 'k2' }),
    ]);
    expect(first!.status).toBe('created');
    expect(again).toEqual({ status: 'duplicate', jti: first!.jti });
    expect(inBatch1!.status).toBe('created');
    expect(inBatch2).toEqual({ status: 'duplicate', jti: inBatch1!.jti });
    const count = await db
      .knex('events')
      .where({ client_id: client })
      .count<{ count: number }[]>('* as count');
    expect(Number(count[0]!.count)).toBe(2);
  });

  it('when one event of a batch is invalid, then the batch is refused with its path and nothing is published', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client);
    const res = await adminPost(
      JSON.stringify({
        events: [eventFor(client), eventFor(client, { type: 'UK.OBIE.Nonsense' })],
      }),
    );
    expect(res.status).toBe(400);
    const errors = (res.body as { Errors: { Path: string }[] }).Errors;
    expect(errors[0]!.Path).toBe('events[1].type');
    const count = await db
      .knex('events')
      .where({ client_id: client })
      .count<{ count: number }[]>('* as count');
    expect(Number(count[0]!.count)).toBe(0);
  });

  it('when the body is not JSON or not a batch, then it is a 400 in OBErrorResponse1 form', async () => {
    expect((await adminPost('{not json')).status).toBe(400);
    expect((await adminPost(JSON.stringify({ events: [] }))).status).toBe(400);
    expect((await adminPost(JSON.stringify({ events: new Array(1001).fill({}) }))).status).toBe(
      400,
    );
    expect((await adminPost(JSON.stringify({ events: [{}], extra: 1 }))).status).toBe(400);
  });

  describe('admin API authentication', () => {
    const body = JSON.stringify({ events: [eventFor('x')] });
    const now = () => Math.floor(Date.now() / 1000);

    it('when the signature is correct, then the request is accepted', async () => {
      expect((await adminPost(body, sign(SECRET, body, now()))).status).toBe(200);
    });
    it('when the timestamp is more than five minutes old, then 401', async () => {
      expect((await adminPost(body, sign(SECRET, body, now() - 301))).status).toBe(401);
    });
    it('when the signature was made with another secret, then 401', async () => {
      expect((await adminPost(body, sign('another-secret-0123456789', body, now()))).status).toBe(
        401,
      );
    });
    it('when the body changed after signing, then 401', async () => {
      const header = sign(SECRET, body, now());
      expect((await adminPost(body.replace('"x"', '"y"'), header)).status).toBe(401);
    });
    it('when the signature was made for another path or method, then 401', async () => {
      expect(
        (await adminPost(body, sign(SECRET, body, now(), '/admin/v1/deliveries/retry'))).status,
      ).toBe(401);
      expect(
        (await adminPost(body, sign(SECRET, body, now(), '/admin/v1/events', 'GET'))).status,
      ).toBe(401);
    });
    it('when the header is missing or malformed, then 401 in OBErrorResponse1 form', async () => {
      const res = await fetch(`${server.adminUrl}/admin/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { Errors: unknown[] }).Errors.length).toBe(1);
      expect((await adminPost(body, 't=abc,v1=zz')).status).toBe(401);
    });
    it('when a captured admin request is replayed, then 401 and no second SET is made', async () => {
      const client = await registerClient(server);
      await subscribe(db.knex, client);
      const captured = JSON.stringify({ events: [eventFor(client)] });
      const header = sign(SECRET, captured, now());
      expect((await adminPost(captured, header)).status).toBe(200);
      expect((await adminPost(captured, header)).status).toBe(401);
      const count = await db
        .knex('events')
        .where({ client_id: client })
        .count<{ count: number }[]>('* as count');
      expect(Number(count[0]!.count)).toBe(1);
    });
    it('when a captured request is replayed to another replica, then 401 there too', async () => {
      const replica = await startTestServer(db, { env: { ADMIN_API_SECRET: SECRET } });
      try {
        const captured = JSON.stringify({ events: [eventFor('x')] });
        const header = sign(SECRET, captured, now());
        expect((await adminPost(captured, header)).status).toBe(200);
        const res = await fetch(`${replica.adminUrl}/admin/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-ob-events-signature': header },
          body: captured,
        });
        expect(res.status).toBe(401);
      } finally {
        await replica.stop();
      }
    });
    it('when accepted MACs are past their window, then the purge removes them and keeps the others', async () => {
      const store = AdminRequestMacsStore.create(db.knex);
      const old = randomBytes(32);
      const fresh = randomBytes(32);
      expect(await store.remember(old, new Date(Date.now() - 1_000))).toBe(true);
      expect(await store.remember(fresh, new Date(Date.now() + 300_000))).toBe(true);
      expect(await store.remember(fresh, new Date(Date.now() + 300_000))).toBe(false);
      expect(await store.purgeExpired(new Date())).toBeGreaterThanOrEqual(1);
      const left = await db.knex('admin_request_macs').whereIn('mac', [old, fresh]).pluck('mac');
      expect(left.map((b: Buffer) => b.toString('hex'))).toEqual([fresh.toString('hex')]);
    });
    it('when a header without a nonce is replayed, then 401 too', async () => {
      const header = signAdminRequest({
        secret: SECRET,
        method: 'POST',
        path: '/admin/v1/events',
        body,
        nonce: null,
      });
      expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect((await adminPost(body, header)).status).toBe(200);
      expect((await adminPost(body, header)).status).toBe(401);
    });
    it('when t is 290 s in the future, then 401 (29 s ahead is accepted)', async () => {
      expect((await adminPost(body, sign(SECRET, body, now() + 290))).status).toBe(401);
      expect((await adminPost(body, sign(SECRET, body, now() + 29))).status).toBe(200);
    });
    it('when t is not a canonical decimal (0x..., +..., leading zeros, exponent), then 401', async () => {
      const t = now();
      const body = JSON.stringify({ events: [eventFor('y')] });
      const mac = (first: string) =>
        createHmac('sha256', SECRET)
          .update(`${first}\nPOST\n/admin/v1/events\n${body}`)
          .digest('hex');
      for (const spelling of [`0x${t.toString(16)}`, `+${t}`, `0${t}`, `${t}.0`, `${t / 10}e1`]) {
        // Signed over the very spelling sent, so only the parsing rule can refuse it.
        const res = await adminPost(body, `t=${spelling},v1=${mac(spelling)}`);
        expect(res.status, spelling).toBe(401);
      }
      expect((await adminPost(body, `t=${t},v1=${mac(String(t))}`)).status).toBe(200);
    });
    it('when the header repeats a field or adds an unknown one, then 401', async () => {
      const good = sign(SECRET, body, now());
      expect((await adminPost(body, `${good},t=${now()}`)).status).toBe(401);
      expect((await adminPost(body, `${good},v2=abc`)).status).toBe(401);
    });
    it('when the body is larger than 3 MB without a valid signature header, then 401 before the body is read', async () => {
      // 1 KB of a declared 3 MB body is sent and the rest never is: an answer can only come
      // from a server that did not wait for the body.
      for (const header of [undefined, 't=1,v1=' + '0'.repeat(64)]) {
        const res = await partialPost(header, 3 * 1024 * 1024);
        expect(res.status).toBe(401);
        expect(res.connection).toBe('close');
      }
    });
    it('when Content-Length exceeds the 4 MB limit under a well-formed header, then 413 before the body is read', async () => {
      const res = await partialPost(sign(SECRET, '', now()), 5 * 1024 * 1024);
      expect(res.status).toBe(413);
    });
    it('when no ADMIN_API_SECRET is configured, then the endpoint answers 503', async () => {
      const other = await startTestServer(db);
      try {
        const res = await fetch(`${other.adminUrl}/admin/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        expect(res.status).toBe(503);
      } finally {
        await other.stop();
      }
    });
  });

  it('when the signing key is rotated, then new SETs use the new kid and old SETs still verify with /jwks', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client);
    const [before] = await publish([eventFor(client)]);
    const oldKid = decodeProtectedHeader(await storedSet(before!.jti!)).kid;
    const rotated = await server.server.services.keys.rotate();
    expect(rotated.kid).not.toBe(oldKid);
    const [after] = await publish([eventFor(client)]);
    const newJws = await storedSet(after!.jti!);
    expect(decodeProtectedHeader(newJws).kid).toBe(rotated.kid);
    const keySet = createLocalJWKSet(await jwks());
    await compactVerify(await storedSet(before!.jti!), keySet, { algorithms: ['PS256'] });
    await compactVerify(newJws, keySet, { algorithms: ['PS256'] });
    expect(decodeJwt(newJws).aud).toBe(client);
  });

  it('when resolved SETs are older than the retention, then retention deletes them and keeps pending ones', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client);
    const [old, pending] = await publish([eventFor(client), eventFor(client)]);
    await db
      .knex('event_deliveries')
      .where({ jti: old!.jti })
      .update({
        state: 'acknowledged',
        resolution: 'ack',
        resolved_at: db.knex.raw("now() - interval '8 days'"),
      });
    const result = await runRetention({
      knex: db.knex,
      keys: server.server.services.keys,
      clock: systemClock,
      logger: silentLogger(),
      retentionDays: 7,
    });
    expect(result.events).toBeGreaterThanOrEqual(1);
    expect(await db.knex('events').where({ jti: old!.jti }).first()).toBeUndefined();
    expect(await db.knex('event_deliveries').where({ jti: old!.jti }).first()).toBeUndefined();
    expect(await db.knex('events').where({ jti: pending!.jti }).first()).toBeDefined();
  });
});
