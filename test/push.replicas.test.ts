// Two ob-events instances on one Postgres share push delivery: 2,000 SETs for four TPPs, every
// jti accepted exactly once, and both instances did part of the work. And one circuit breaker
// per endpoint across them: failures counted together, one probe at a time.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { eventually, publish, pushEnv } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

describePostgres('push with two replicas on one database', () => {
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    // A 5 s time-out: on a busy machine a 500 ms one expires on requests that did arrive, and
    // their retries are (correct) second sends that are not what this test is about.
    const env = pushEnv({
      PUSH_CONCURRENCY: '16',
      PUSH_PER_ORIGIN_CONCURRENCY: '4',
      PUSH_TIMEOUT_MS: '5000',
    });
    [a, b] = await Promise.all([startTestServer(db, { env }), startTestServer(db, { env })]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await Promise.all(receivers.map((r) => r.close()));
    await db?.drop();
  });

  it('when 2,000 SETs are published while two replicas push, then every jti is accepted exactly once', async () => {
    const clients: string[] = [];
    for (let i = 0; i < 4; i++) {
      // A few milliseconds per answer, so the replicas' claims interleave.
      const receiver = await startReceiver(() => ({
        status: 202,
        delayMs: Math.floor(Math.random() * 4),
      }));
      receivers.push(receiver);
      const clientId = await registerClient(a);
      await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });
      clients.push(clientId);
    }
    const jtis: string[] = [];
    for (let round = 0; round < 5; round++) {
      for (const [i, clientId] of clients.entries()) {
        jtis.push(...(await publish(round % 2 === 0 ? a : b, clientId, i === 0 ? 130 : 90)));
      }
    }
    expect(jtis).toHaveLength(2_000);

    const total = () => receivers.reduce((n, r) => n + r.accepted.size, 0);
    await Promise.all(
      receivers.map((r) => r.waitFor(() => total() === 2_000, 25_000, '2,000 accepted SETs')),
    );
    await eventually(
      async () => {
        const [row] = await db
          .knex('event_deliveries')
          .where({ state: 'acknowledged' })
          .count({ n: '*' });
        return Number(row!.n) === 2_000 ? true : undefined;
      },
      5_000,
      'every SET acknowledged',
    );

    const counts = new Map<string, number>();
    for (const r of receivers)
      for (const req of r.requests) counts.set(req.jti!, (counts.get(req.jti!) ?? 0) + 1);
    expect(counts.size).toBe(2_000);
    expect([...counts.values()].filter((n) => n !== 1)).toEqual([]);
    expect(new Set(jtis)).toEqual(new Set(counts.keys()));

    const workers = await db.knex('push_attempts').distinct('worker').pluck('worker');
    expect(workers).toHaveLength(2);
  }, 60_000);
});

describePostgres('one push breaker across two replicas', () => {
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let receiver: Receiver;

  beforeAll(async () => {
    db = await createTestDatabase();
    const env = pushEnv({
      PUSH_BREAKER_FAILURES: '4',
      PUSH_PER_ORIGIN_CONCURRENCY: '1',
      PUSH_RETRY_BASE_MS: '100',
      PUSH_BREAKER_OPEN_SECONDS: '1',
      PUSH_MAX_ATTEMPTS: '1000',
    });
    [a, b] = await Promise.all([startTestServer(db, { env }), startTestServer(db, { env })]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await receiver?.close();
    await db?.drop();
  });

  it('when an overloaded endpoint fails on both replicas, then their failures open one breaker together and only one probe is ever in flight', async () => {
    // 503 after 150 ms: a down signal, and long enough for two probes to overlap if both
    // replicas sent one.
    receiver = await startReceiver(() => ({ status: 503, delayMs: 150 }));
    const clientId = await registerClient(a);
    await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });
    await publish(a, clientId, 40);

    const opened = await eventually(
      async () => {
        const row = await db.knex('push_breakers').where({ client_id: clientId }).first();
        return row?.opened_at ? row : undefined;
      },
      10_000,
      'the breaker to open',
    );
    await eventually(
      async () => {
        const row = await db.knex('push_breakers').where({ client_id: clientId }).first();
        return row.trips >= 5 ? row : undefined;
      },
      15_000,
      'four failed probes',
    );
    const tries = (await db
      .knex('push_attempts as p')
      .join('event_deliveries as d', 'd.jti', 'p.jti')
      .where('d.client_id', clientId)
      .orderBy('p.attempted_at')
      .select('p.attempted_at', 'p.latency_ms', 'p.worker')) as {
      attempted_at: Date;
      latency_ms: number;
      worker: string;
    }[];
    const openedAt = (opened.opened_at as Date).getTime();
    // Four failures in all opened it (each replica alone would have needed four): those and
    // the one request each replica may have had in flight.
    expect(tries.filter((t) => t.attempted_at.getTime() < openedAt).length).toBeLessThanOrEqual(
      4 + 2,
    );
    // After the requests in flight at the opening: probes only, never two at once.
    const probes = tries.filter((t) => t.attempted_at.getTime() > openedAt + 300);
    expect(probes.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < probes.length; i++) {
      const previousEnd = probes[i - 1]!.attempted_at.getTime() + probes[i - 1]!.latency_ms;
      expect(probes[i]!.attempted_at.getTime()).toBeGreaterThanOrEqual(previousEnd - 5);
    }
  }, 30_000);
});
