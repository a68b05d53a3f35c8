// Real-time push to a real local HTTPS receiver: the request, and what each answer leads to
// (202 delivered, 400 rejected, anything else retried with back-off until attempts run out).
// One server; every test has its own TPP and receiver, so their scripts do not interfere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { call } from './helpers/http.js';
import { attempts, delivery, deliveryWhen, publish, pushEnv, sleep } from './helpers/push.js';
import {
  NOTIFICATIONS_PATH,
  startReceiver,
  type Receiver,
  type Script,
} from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { createTestTpp } from './helpers/tpp.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('real-time push delivery', () => {
  let db: TestDatabase;
  let server: TestServer;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: pushEnv({
        PUSH_MAX_ATTEMPTS: '4',
        // One request at a time per TPP, so arrival order is send order; no breaker here.
        PUSH_PER_ORIGIN_CONCURRENCY: '1',
        PUSH_BREAKER_FAILURES: '1000',
      }),
    });
  });
  afterAll(async () => {
    await server?.stop();
    await Promise.all(receivers.map((r) => r.close()));
    await db?.drop();
  });

  /** A TPP client subscribed with a receiver as its CallbackUrl. */
  async function tppWith(script?: Script): Promise<{ clientId: string; receiver: Receiver }> {
    const receiver = await startReceiver(script);
    receivers.push(receiver);
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });
    return { clientId, receiver };
  }

  it('when a SET is published for a TPP with a CallbackUrl, then it is POSTed there with the OBIE headers and the stored bytes', async () => {
    const { clientId, receiver } = await tppWith();
    const [jti] = await publish(server, clientId);
    await receiver.waitFor((r) => r.accepted.has(jti!), 5_000, 'the push');

    const [req] = receiver.requests;
    const stored = await db.knex('events').where({ jti }).first();
    expect(req!.method).toBe('POST');
    expect(req!.path).toBe(NOTIFICATIONS_PATH);
    expect(req!.headers['content-type']).toBe('application/jwt');
    expect(req!.headers['x-fapi-financial-id']).toBe('bank-test-0001');
    expect(req!.headers['x-fapi-interaction-id']).toMatch(UUID);
    expect(req!.body).toBe(stored.set_jws);

    const row = await deliveryWhen(db.knex, jti!, (d) => d.state !== 'pending');
    expect(row).toMatchObject({
      state: 'acknowledged',
      resolution: 'push_accepted',
      push_state: 'delivered',
      push_attempts: 1,
      leased_until: null,
    });
    const tries = await attempts(db.knex, jti!);
    expect(tries).toHaveLength(1);
    expect(tries[0]).toMatchObject({
      attempt: 1,
      status_code: 202,
      outcome: 'accepted',
      error: null,
      callback_url: receiver.callbackUrl,
      interaction_id: req!.headers['x-fapi-interaction-id'],
    });
  });

  it('when the TPP answers 500 and then 202, then the SET is retried, delivered once, and both attempts are recorded', async () => {
    const { clientId, receiver } = await tppWith(({ nth }) => ({
      status: nth === 1 ? 500 : 202,
      body: nth === 1 ? 'database down' : '',
    }));
    const [jti] = await publish(server, clientId);
    await deliveryWhen(db.knex, jti!, (d) => d.state === 'acknowledged');
    await sleep(300); // time for a wrongful third send

    const sent = receiver.forJti(jti!);
    expect(sent.map((r) => r.status)).toEqual([500, 202]);
    expect(sent[1]!.body).toBe(sent[0]!.body);
    expect(sent[1]!.headers['x-fapi-interaction-id']).not.toBe(
      sent[0]!.headers['x-fapi-interaction-id'],
    );
    expect(receiver.accepted.get(jti!)).toBe(1);
    const tries = await attempts(db.knex, jti!);
    expect(tries.map((a) => [a.attempt, a.status_code, a.outcome])).toEqual([
      [1, 500, 'retry'],
      [2, 202, 'accepted'],
    ]);
    expect(tries[0]!.error).toBe('http 500: database down');
  });

  it('when the TPP answers 400 with an RFC 8935 error, then the SET is rejected with that reason and never sent again', async () => {
    const { clientId, receiver } = await tppWith(() => ({
      status: 400,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ err: 'invalid_key', description: 'kid not found in the JWKS' }),
    }));
    const [jti] = await publish(server, clientId);
    const row = await deliveryWhen(db.knex, jti!, (d) => d.state !== 'pending');
    await sleep(400);

    expect(receiver.forJti(jti!)).toHaveLength(1);
    expect(row).toMatchObject({
      state: 'errored',
      resolution: 'push_rejected',
      push_state: 'rejected',
      err: 'invalid_key',
      err_description: 'kid not found in the JWKS',
    });
    const tries = await attempts(db.knex, jti!);
    expect(tries.map((a) => a.outcome)).toEqual(['rejected']);
  });

  it('when the TPP answers 400 without a JSON body, then the SET is rejected as http_400', async () => {
    const { clientId } = await tppWith(() => ({ status: 400, body: 'bad' }));
    const [jti] = await publish(server, clientId);
    const row = await deliveryWhen(db.knex, jti!, (d) => d.state !== 'pending');
    expect(row).toMatchObject({ state: 'errored', err: 'http_400', err_description: 'bad' });
  });

  it('when the TPP answers with a redirect, then it is not followed and the SET is retried at the registered URL', async () => {
    const elsewhere = await startReceiver();
    receivers.push(elsewhere);
    const { clientId, receiver } = await tppWith(({ nth }) =>
      nth === 1 ? { status: 307, headers: { location: elsewhere.callbackUrl } } : { status: 202 },
    );
    const [jti] = await publish(server, clientId);
    await deliveryWhen(db.knex, jti!, (d) => d.state === 'acknowledged');
    expect(elsewhere.requests).toHaveLength(0);
    expect(receiver.forJti(jti!).map((r) => r.status)).toEqual([307, 202]);
    expect((await attempts(db.knex, jti!))[0]).toMatchObject({
      status_code: 307,
      outcome: 'retry',
    });
  });

  it('when the TPP answers with a huge body, then only its start is read and kept', async () => {
    const { clientId } = await tppWith(() => ({ status: 400, body: 'x'.repeat(200_000) }));
    const [jti] = await publish(server, clientId);
    const row = await deliveryWhen(db.knex, jti!, (d) => d.state !== 'pending');
    expect(row.err).toBe('http_400');
    expect(row.err_description!.length).toBeLessThanOrEqual(1001);
    expect((await attempts(db.knex, jti!))[0]!.error!.length).toBeLessThan(600);
  });

  it('when the receiver hangs, then the attempt times out and the SET is retried and delivered', async () => {
    const { clientId, receiver } = await tppWith(({ nth }) =>
      nth === 1 ? { hang: true } : { status: 202 },
    );
    const [jti] = await publish(server, clientId);
    await deliveryWhen(db.knex, jti!, (d) => d.state === 'acknowledged');

    const sent = receiver.forJti(jti!);
    expect(sent.map((r) => r.status)).toEqual([null, 202]);
    const tries = await attempts(db.knex, jti!);
    expect(tries[0]).toMatchObject({
      status_code: null,
      outcome: 'retry',
      error: 'no answer within 500 ms',
    });
    expect(tries[0]!.latency_ms).toBeGreaterThanOrEqual(490);
    expect(tries[1]).toMatchObject({ status_code: 202, outcome: 'accepted' });
  });

  it('when the TPP answers 503 with Retry-After, then the next attempt waits at least that long', async () => {
    const { clientId, receiver } = await tppWith(({ nth }) =>
      nth === 1 ? { status: 503, headers: { 'retry-after': '1' } } : { status: 202 },
    );
    const [jti] = await publish(server, clientId);
    await deliveryWhen(db.knex, jti!, (d) => d.state === 'acknowledged', 5_000);
    const [first, second] = receiver.forJti(jti!);
    // Without Retry-After the back-off (50 ms base) would retry within 50 ms.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
  });

  it('when the TPP answers 429 with Retry-After as an HTTP date, then the next attempt waits until then', async () => {
    const { clientId, receiver } = await tppWith(({ nth }) =>
      nth === 1
        ? { status: 429, headers: { 'retry-after': new Date(Date.now() + 2_000).toUTCString() } }
        : { status: 202 },
    );
    const [jti] = await publish(server, clientId);
    await deliveryWhen(db.knex, jti!, (d) => d.state === 'acknowledged', 6_000);
    const [first, second] = receiver.forJti(jti!);
    // An HTTP date has whole seconds: at least one second later.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
  });

  it('when every attempt fails, then retrying ends after PUSH_MAX_ATTEMPTS and the SET stays pending for polling', async () => {
    const receiver = await startReceiver(() => ({ status: 500 }));
    receivers.push(receiver);
    const tpp = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId, { callbackUrl: receiver.callbackUrl });
    try {
      const [jti] = await publish(server, tpp.clientId);
      const row = await deliveryWhen(db.knex, jti!, (d) => d.push_state === 'failed', 5_000);
      await sleep(300);

      expect(receiver.forJti(jti!)).toHaveLength(4);
      expect(row).toMatchObject({
        state: 'pending',
        push_attempts: 4,
        push_next_at: null,
        leased_until: null,
      });
      const tries = await attempts(db.knex, jti!);
      expect(tries.map((a) => a.outcome)).toEqual(['retry', 'retry', 'retry', 'failed']);
      expect(tries[3]!.error).toMatch(/no more attempts: 4 made/);

      // The TPP can still poll it.
      const token = await tpp.accessToken();
      const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ returnImmediately: true }),
      });
      expect(res.status, res.text).toBe(200);
      expect(Object.keys(res.json<{ sets: Record<string, string> }>().sets)).toEqual([jti]);
    } finally {
      await tpp.agent.close();
    }
  });

  it('when several SETs are published for a healthy TPP, then it receives them in creation order', async () => {
    const { clientId, receiver } = await tppWith();
    const jtis: string[] = [];
    for (let i = 0; i < 4; i++) jtis.push(...(await publish(server, clientId, 5)));
    await receiver.waitFor((r) => r.accepted.size === 20, 10_000, '20 SETs');
    expect(receiver.requests.map((r) => r.jti)).toEqual(jtis);
    expect([...jtis].sort()).toEqual(jtis); // jtis are time-ordered (UUIDv7)
  });

  it('when a poller acknowledged a SET while its push was failing, then the push outcome does not bring it back', async () => {
    const { clientId, receiver } = await tppWith(() => ({ status: 500, delayMs: 300 }));
    const [jti] = await publish(server, clientId);
    await receiver.waitFor((r) => r.forJti(jti!).length === 1, 5_000, 'the first attempt');
    // The TPP acknowledges it through polling while the push attempt is still in flight.
    await db.knex('event_deliveries').where({ jti }).update({
      state: 'acknowledged',
      resolution: 'ack',
      resolved_at: db.knex.fn.now(),
    });
    await sleep(700);
    const row = await delivery(db.knex, jti!);
    expect(row).toMatchObject({ state: 'acknowledged', resolution: 'ack' });
    expect(receiver.forJti(jti!)).toHaveLength(1);
  });
});
