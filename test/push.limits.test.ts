// Where push stops or holds back: the maximum age, the circuit breaker of a failing endpoint
// (while other TPPs keep receiving), and callback addresses refused at connect time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { attempts, deliveryWhen, eventually, publish, pushEnv, sleep } from './helpers/push.js';
import {
  NOTIFICATIONS_PATH,
  startReceiver,
  type Receiver,
  type Script,
} from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

function suite(env: Record<string, string>) {
  const ctx = {} as { db: TestDatabase; server: TestServer; receivers: Receiver[] };
  beforeAll(async () => {
    ctx.receivers = [];
    ctx.db = await createTestDatabase();
    ctx.server = await startTestServer(ctx.db, { env: pushEnv(env) });
  });
  afterAll(async () => {
    await ctx.server?.stop();
    await Promise.all(ctx.receivers.map((r) => r.close()));
    await ctx.db?.drop();
  });
  const tppWith = async (script?: Script, callbackUrl?: (r: Receiver) => string) => {
    const receiver = await startReceiver(script);
    ctx.receivers.push(receiver);
    const clientId = await registerClient(ctx.server);
    await subscribe(ctx.db.knex, clientId, {
      callbackUrl: callbackUrl?.(receiver) ?? receiver.callbackUrl,
    });
    return { clientId, receiver };
  };
  return { ctx, tppWith };
}

describe('push maximum age', () => {
  const { ctx, tppWith } = suite({
    // Two seconds: the first attempt can come a second late on a busy machine.
    PUSH_MAX_AGE_SECONDS: '2',
    PUSH_MAX_ATTEMPTS: '1000',
    PUSH_BREAKER_FAILURES: '1000',
  });

  it('when a TPP keeps failing, then retrying ends once the SET is PUSH_MAX_AGE_SECONDS old and it stays pollable', async () => {
    const { clientId, receiver } = await tppWith(() => ({ status: 502 }));
    const [jti] = await publish(ctx.server, clientId);
    const row = await deliveryWhen(ctx.db.knex, jti!, (d) => d.push_state === 'failed', 5_000);
    const sent = receiver.forJti(jti!).length;
    await sleep(300);

    expect(row).toMatchObject({ state: 'pending', push_next_at: null });
    expect(receiver.forJti(jti!)).toHaveLength(sent); // nothing after giving up
    expect(sent).toBeGreaterThan(2);
    expect(sent).toBeLessThan(1000);
    const tries = await attempts(ctx.db.knex, jti!);
    const created = (await ctx.db.knex('events').where({ jti }).first()).created_at as Date;
    expect(tries.at(-1)!.outcome).toBe('failed');
    expect(tries.at(-1)!.error).toMatch(/maximum age reached/);
    // No attempt was started after the SET turned two seconds old.
    for (const t of tries) expect(t.attempted_at.getTime() - created.getTime()).toBeLessThan(2_100);
  });
});

describe('push circuit breaker', () => {
  const { ctx, tppWith } = suite({
    PUSH_BREAKER_FAILURES: '3',
    PUSH_BREAKER_OPEN_SECONDS: '1',
    PUSH_PER_ORIGIN_CONCURRENCY: '1',
    PUSH_MAX_ATTEMPTS: '1000',
  });

  it('when an endpoint hangs repeatedly, then its breaker opens and half-opens later while another TPP keeps receiving', async () => {
    const failing = await tppWith(() => ({ hang: true }));
    const healthy = await tppWith();
    const aJtis = await publish(ctx.server, failing.clientId, 5);
    const bJtis = await publish(ctx.server, healthy.clientId, 20);

    // The healthy TPP gets everything while the other one's requests hang for 500 ms each.
    await healthy.receiver.waitFor(
      (r) => bJtis.every((j) => r.accepted.has(j)),
      5_000,
      'all SETs of the healthy TPP',
    );

    // Three time-outs in a row open the breaker, for every replica (push_breakers).
    const breaker = await eventually(
      async () => {
        const b = await ctx.db.knex('push_breakers').where({ client_id: failing.clientId }).first();
        return b?.open_until ? b : undefined;
      },
      5_000,
      'the breaker to open',
    );
    // (A fourth may have been claimed while the third failure was being recorded.)
    const beforeOpen = failing.receiver.requests.length;
    expect(beforeOpen).toBeGreaterThanOrEqual(3);
    expect(beforeOpen).toBeLessThanOrEqual(4);
    expect(breaker).toMatchObject({ callback_url: failing.receiver.callbackUrl, trips: 1 });
    expect(breaker.last_error).toBe('no answer within 500 ms');

    // Open: nothing until open_until; then one probe at a time (half-open), each hanging too,
    // each failure backing off longer (PUSH_RETRY_BASE_MS doubling, at most 1 s).
    await eventually(
      async () => {
        const b = await ctx.db.knex('push_breakers').where({ client_id: failing.clientId }).first();
        return b?.trips >= 3 ? b : undefined;
      },
      6_000,
      'two failed probes',
    );
    const probes = failing.receiver.requests.slice(beforeOpen);
    expect(probes.length).toBeGreaterThanOrEqual(2);
    // One at a time: each probe came after the previous one had timed out.
    for (let i = 1; i < probes.length; i++)
      expect(probes[i]!.at - probes[i - 1]!.at).toBeGreaterThanOrEqual(490);

    // The endpoint recovers: the next probe succeeds, the breaker closes, everything arrives.
    failing.receiver.setScript(() => ({ status: 202 }));
    await failing.receiver.waitFor(
      (r) => aJtis.every((j) => r.accepted.has(j)),
      5_000,
      'the backlog',
    );
    expect(
      await ctx.db.knex('push_breakers').where({ client_id: failing.clientId }).first(),
    ).toMatchObject({ open_until: null, trips: 0, failing_since: null });
    for (const jti of aJtis) expect(failing.receiver.accepted.get(jti)).toBe(1);
  });
});

describe('push to private addresses (CALLBACK_ALLOW_PRIVATE_NETWORKS=false)', () => {
  const { ctx, tppWith } = suite({
    CALLBACK_ALLOW_PRIVATE_NETWORKS: 'false',
    PUSH_MAX_ATTEMPTS: '2',
  });

  it('when a callback host resolves to a loopback address at connect time, then nothing is sent and the attempt is recorded as refused', async () => {
    // Stored directly: as if the name had resolved to a public address when it was registered.
    const { clientId, receiver } = await tppWith();
    const [jti] = await publish(ctx.server, clientId);
    const row = await deliveryWhen(ctx.db.knex, jti!, (d) => d.push_state === 'failed', 5_000);

    expect(receiver.requests).toHaveLength(0);
    expect(row.state).toBe('pending');
    const tries = await attempts(ctx.db.knex, jti!);
    expect(tries.map((t) => t.outcome)).toEqual(['retry', 'failed']);
    expect(tries[0]!.status_code).toBeNull();
    expect(tries[0]!.error).toMatch(
      /^address refused: localhost resolves to (127\.0\.0\.1|::1), a loopback address/,
    );
    const live = await fetch(`${ctx.server.adminUrl}/health/live`);
    expect(live.status).toBe(200);
  });

  it('when a callback URL names a loopback IP literal, then it is refused before dialling', async () => {
    const { clientId, receiver } = await tppWith(
      undefined,
      (r) => `https://127.0.0.1:${r.port}${NOTIFICATIONS_PATH}`,
    );
    const [jti] = await publish(ctx.server, clientId);
    await deliveryWhen(ctx.db.knex, jti!, (d) => d.push_state === 'failed', 5_000);
    expect(receiver.requests).toHaveLength(0);
    const tries = await attempts(ctx.db.knex, jti!);
    expect(tries[0]!.error).toBe('address refused: 127.0.0.1 is a loopback address');
  });
});
