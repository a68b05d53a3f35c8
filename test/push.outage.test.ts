// No second send after a 202 across a database outage (issue 11 item 3): the database goes
// away (through a TCP proxy: every connection cut, new ones refused) while pushes are in
// flight, for longer than their leases; the TPP answers 202 meanwhile. When the database
// comes back, the held outcomes are written and no SET is POSTed again, with one replica and
// with two. (A longer outage changes nothing: after it, no worker takes another's SETs before
// PUSH_WORKER_TIMEOUT_SECONDS, whatever the length; see README "Delivery guarantees".)
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { startPgProxy, type PgProxy } from './helpers/pgProxy.js';
import { eventually, publish, pushEnv, sleep } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

// A 1 s time-out: leases of 2 × 1 s + 5 s = 7 s; the outage lasts longer than that.
const LEASE_MS = 7_000;
const OUTAGE_MS = LEASE_MS + 2_500;

describePostgres('push across a database outage longer than a lease', () => {
  let db: TestDatabase;
  let proxy: PgProxy;
  let publisher: TestServer; // direct connection, pushes nothing: only publishes
  const servers: TestServer[] = [];
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    proxy = await startPgProxy(db.url!);
    publisher = await startTestServer(db, { env: { PUSH_CONCURRENCY: '0' } });
  });
  afterAll(async () => {
    proxy?.up();
    await Promise.all(servers.map((s) => s.stop()));
    await publisher?.stop();
    await Promise.all(receivers.map((r) => r.close()));
    await proxy?.close();
    await db?.drop();
  });

  async function replicas(n: number): Promise<TestServer[]> {
    const env = pushEnv({
      DATABASE_URL: proxy.url,
      PUSH_TIMEOUT_MS: '1000',
      PUSH_WORKER_TIMEOUT_SECONDS: '3',
      PUSH_PER_ORIGIN_CONCURRENCY: '4',
    });
    const started = await Promise.all(
      Array.from({ length: n }, () => startTestServer(db, { env })),
    );
    servers.push(...started);
    return started;
  }

  async function scenario(replicaCount: number): Promise<void> {
    // The TPP answers 202 after 400 ms: the answers come while the database is away.
    const receiver = await startReceiver(() => ({ status: 202, delayMs: 400 }));
    receivers.push(receiver);
    const clientId = await registerClient(publisher);
    await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });
    await replicas(replicaCount);

    const jtis = await publish(publisher, clientId, 12);
    await receiver.waitFor((r) => r.requests.length >= 2, 10_000, 'pushes in flight');
    proxy.down();
    await sleep(OUTAGE_MS);
    const acceptedDuringOutage = [...receiver.accepted.keys()];
    expect(acceptedDuringOutage.length).toBeGreaterThanOrEqual(2);
    // Their leases ended during the outage; the outcomes are still held in memory.
    const [held] = await db
      .knex('event_deliveries')
      .whereIn('jti', acceptedDuringOutage)
      .where({ state: 'pending' })
      .count({ n: '*' });
    expect(Number(held!.n)).toBe(acceptedDuringOutage.length);

    proxy.up();
    await eventually(
      async () => {
        const [row] = await db
          .knex('event_deliveries')
          .whereIn('jti', jtis)
          .where({ state: 'acknowledged' })
          .count({ n: '*' });
        return Number(row!.n) === jtis.length ? true : undefined;
      },
      30_000,
      'every SET acknowledged after the outage',
    );
    await sleep(1_500); // time for a wrongful second send

    for (const jti of jtis) expect(receiver.forJti(jti), jti).toHaveLength(1);
  }

  it('when one replica holds 202 outcomes through an outage longer than their leases, then none of those SETs is POSTed again', async () => {
    await scenario(1);
  }, 60_000);

  it('when two replicas push through an outage longer than the leases, then no SET accepted with 202 is POSTed again by either', async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    await scenario(2);
  }, 60_000);
});
