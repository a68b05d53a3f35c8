// Two ob-events instances on one Postgres share push delivery: 2,000 SETs for four TPPs, every
// jti accepted exactly once, and both instances did part of the work.
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
    const env = pushEnv({ PUSH_CONCURRENCY: '16', PUSH_PER_ORIGIN_CONCURRENCY: '4' });
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
