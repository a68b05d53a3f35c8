// The circuit breaker of a TPP endpoint (issue 11): per-message failures are left to each SET's
// own back-off, while an endpoint that is down, overloaded or failing at a high rate is backed
// off with a cool-down that starts near the retry schedule and grows; any success closes it.
// The figures of the issue, with a shortened schedule.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { eventually, publish, pushEnv, sleep } from './helpers/push.js';
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
  const tppWith = async (script?: Script) => {
    const receiver = await startReceiver(script);
    ctx.receivers.push(receiver);
    const clientId = await registerClient(ctx.server);
    await subscribe(ctx.db.knex, clientId, { callbackUrl: receiver.callbackUrl });
    return { clientId, receiver };
  };
  const breaker = (clientId: string) =>
    ctx.db.knex('push_breakers').where({ client_id: clientId }).first() as Promise<
      Record<string, unknown> | undefined
    >;
  return { ctx, tppWith, breaker };
}

/** A port nothing listens on: connections are refused. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('push breaker: a flaky endpoint', () => {
  const BASE_MS = 300;
  const { ctx, tppWith, breaker } = suite({
    PUSH_RETRY_BASE_MS: String(BASE_MS),
    PUSH_MAX_ATTEMPTS: '10',
  });

  it('when an endpoint answers 500 twice per SET and then 202, then all 20 SETs arrive within 3x the sum of their back-off delays and the breaker never opens', async () => {
    const { clientId, receiver } = await tppWith(({ nth }) => ({ status: nth <= 2 ? 500 : 202 }));
    const jtis = await publish(ctx.server, clientId, 20);
    await receiver.waitFor(
      (r) => jtis.every((j) => r.accepted.has(j)),
      15_000,
      'all 20 SETs accepted',
    );
    for (const jti of jtis)
      expect(receiver.forJti(jti).map((r) => r.status)).toEqual([500, 500, 202]);
    // Each SET waits at most BASE + 2·BASE before its second and third attempts.
    const sumOfDelays = BASE_MS + 2 * BASE_MS;
    const first = receiver.requests[0]!.at;
    const last = Math.max(...receiver.requests.map((r) => r.at));
    expect(last - first).toBeLessThan(3 * sumOfDelays);
    const row = await breaker(clientId);
    expect(row?.trips ?? 0).toBe(0);
    expect(row?.open_until ?? null).toBeNull();
  });
});

describe('push breaker: an overloaded endpoint (503 with Retry-After)', () => {
  const { ctx, tppWith, breaker } = suite({
    PUSH_RETRY_BASE_MS: '100',
    PUSH_MAX_ATTEMPTS: '100',
  });

  it('when an endpoint answers 503 with Retry-After: 2 for a while, then it is left alone that long each time and gets everything within about 2 s of recovering', async () => {
    let overloaded = true;
    const { clientId, receiver } = await tppWith(() =>
      overloaded ? { status: 503, headers: { 'retry-after': '2' } } : { status: 202 },
    );
    const jtis = await publish(ctx.server, clientId, 10);
    await eventually(
      async () => ((await breaker(clientId))?.open_until ? true : undefined),
      5_000,
      'the breaker to open',
    );
    await sleep(3_000);
    const duringOutage = receiver.requests.length;
    overloaded = false;
    const recovered = performance.now();
    await receiver.waitFor(
      (r) => jtis.every((j) => r.accepted.has(j)),
      10_000,
      'every SET after recovery',
    );
    const lastAccepted = Math.max(
      ...receiver.requests.filter((r) => r.status === 202).map((r) => r.at),
    );
    expect(lastAccepted - recovered).toBeLessThan(3_000);
    // The first burst (PUSH_PER_ORIGIN_CONCURRENCY in flight at most), then one probe per 2 s.
    expect(duringOutage).toBeLessThanOrEqual(8 + 3);
    const row = await breaker(clientId);
    expect(row).toMatchObject({ open_until: null, trips: 0, failing_since: null });
  });
});

describe('push breaker: a dead endpoint', () => {
  const { ctx, tppWith, breaker } = suite({
    PUSH_RETRY_BASE_MS: '100',
    PUSH_BREAKER_FAILURES: '3',
    PUSH_BREAKER_OPEN_SECONDS: '1',
    PUSH_PER_ORIGIN_CONCURRENCY: '2',
    PUSH_MAX_ATTEMPTS: '1000',
  });

  it('when an endpoint refuses connections, then it costs a few requests while its cool-down grows, and another TPP receives everything meanwhile', async () => {
    const port = await closedPort();
    const dead = await registerClient(ctx.server);
    await subscribe(ctx.db.knex, dead, {
      callbackUrl: `https://localhost:${port}${NOTIFICATIONS_PATH}`,
    });
    const healthy = await tppWith();
    const deadJtis = await publish(ctx.server, dead, 30);
    const okJtis = await publish(ctx.server, healthy.clientId, 30);

    await healthy.receiver.waitFor(
      (r) => okJtis.every((j) => r.accepted.has(j)),
      5_000,
      'the healthy TPP',
    );
    await sleep(4_000);
    const attempts = await ctx.db
      .knex('push_attempts')
      .whereIn('jti', deadJtis)
      .orderBy('id')
      .select('attempted_at', 'error');
    // Without the breaker each of the 30 SETs would be retried every few hundred ms. With it: 3
    // refusals open it, the requests in flight end, then one probe per cool-down: 0.1, 0.2,
    // 0.4, 0.8 s, then 1 s (PUSH_BREAKER_OPEN_SECONDS).
    expect(attempts.length).toBeGreaterThanOrEqual(4);
    expect(attempts.length).toBeLessThanOrEqual(3 + 2 + 9);
    expect(attempts[0]!.error).toMatch(/ECONNREFUSED/);
    const row = await breaker(dead);
    expect(row!.trips).toBeGreaterThanOrEqual(4);
    expect(row!.failing_since).not.toBeNull();
    // The SETs stay pending for polling.
    const [pending] = await ctx.db
      .knex('event_deliveries')
      .whereIn('jti', deadJtis)
      .where({ state: 'pending', push_state: 'due' })
      .count({ n: '*' });
    expect(Number(pending!.n)).toBe(30);
  });
});

describe('push breaker: a failure rate over a window', () => {
  const { ctx, tppWith, breaker } = suite({
    PUSH_RETRY_BASE_MS: '50',
    PUSH_BREAKER_FAILURES: '5',
    PUSH_BREAKER_WINDOW_SECONDS: '1',
    PUSH_BREAKER_FAILURE_RATE: '0.8',
    PUSH_BREAKER_OPEN_SECONDS: '5',
    PUSH_PER_ORIGIN_CONCURRENCY: '2',
    PUSH_MAX_ATTEMPTS: '1000',
  });

  it('when an endpoint answers 500 to everything for a whole window, then the breaker opens once that window ends, and a 202 closes it', async () => {
    const { clientId, receiver } = await tppWith(() => ({ status: 500 }));
    const jtis = await publish(ctx.server, clientId, 10);
    const opened = await eventually(
      async () => {
        const b = await breaker(clientId);
        return b?.open_until ? b : undefined;
      },
      5_000,
      'the breaker to open',
    );
    // Judged on a whole window: it opened at least a second after the first failure.
    const [first] = await ctx.db
      .knex('push_attempts')
      .whereIn('jti', jtis)
      .orderBy('id')
      .limit(1)
      .select('attempted_at');
    expect(
      (opened.opened_at as Date).getTime() - (first!.attempted_at as Date).getTime(),
    ).toBeGreaterThanOrEqual(900);
    expect(opened.last_error).toBe('http 500');

    receiver.setScript(() => ({ status: 202 }));
    await receiver.waitFor((r) => jtis.every((j) => r.accepted.has(j)), 10_000, 'the backlog');
    expect(await breaker(clientId)).toMatchObject({ open_until: null, trips: 0 });
  });
});
