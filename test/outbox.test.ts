// The transactional outbox: the bank inserts rows with plain SQL in its own transaction; the
// worker publishes each exactly once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSetSigner } from '../src/crypto/setSigner.js';
import { SigningKeysStore } from '../src/db/stores/signingKeysStore.js';
import { Publisher } from '../src/domain/publishing.js';
import { KeyRing } from '../src/domain/signingKeys.js';
import { silentLogger } from '../src/logger.js';
import { systemClock } from '../src/clock.js';
import { OutboxWorker } from '../src/workers/outboxWorker.js';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { eventFor, registerClient, subscribe } from './helpers/fixtures.js';
import { startTestServer, type TestServer } from './helpers/server.js';

async function waitFor<T>(fn: () => Promise<T | undefined>, ms = 5_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('transactional outbox', () => {
  let db: TestDatabase;
  let server: TestServer;
  let client: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    client = await registerClient(server);
    await subscribe(db.knex, client);
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  const row = async (id: number) => db.knex('event_outbox').where({ id }).first();

  it('when a bank transaction inserts an event and commits, then the worker publishes it promptly', async () => {
    const started = Date.now();
    const id = await db.knex.transaction(async (trx) => {
      const [r] = await trx('event_outbox')
        .insert({ event: JSON.stringify(eventFor(client)) })
        .returning('id');
      return (r as { id: number }).id;
    });
    const done = await waitFor(async () => {
      const r = await row(id);
      return r.state === 'new' ? undefined : r;
    });
    // Woken by NOTIFY, not by the 5 s sweep.
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(done).toMatchObject({ state: 'done', error: null });
    const event = await db.knex('events').where({ jti: done.result_jti }).first();
    expect(event.client_id).toBe(client);
  });

  it('when a transaction that inserted an outbox row rolls back, then nothing is published', async () => {
    const before = await db.knex('events').count<{ count: number }[]>('* as count');
    await db.knex
      .transaction(async (trx) => {
        await trx('event_outbox').insert({ event: JSON.stringify(eventFor(client)) });
        throw new Error('bank transaction failed');
      })
      .catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    const after = await db.knex('events').count<{ count: number }[]>('* as count');
    expect(after[0]!.count).toBe(before[0]!.count);
  });

  it('when one row of a batch is invalid, then it fails alone with the reason and the others are published', async () => {
    const ids = (await db
      .knex('event_outbox')
      .insert([
        { event: JSON.stringify(eventFor(client)) },
        { event: JSON.stringify({ clientId: client, type: 'UK.OBIE.Nope' }) },
        { event: JSON.stringify(eventFor('no-such-client')) },
        { event: JSON.stringify(eventFor(client)) },
      ])
      .returning('id')) as { id: number }[];
    const rows = await waitFor(async () => {
      const rs = await db
        .knex('event_outbox')
        .whereIn(
          'id',
          ids.map((r) => r.id),
        )
        .orderBy('id');
      return rs.every((r) => r.state !== 'new') ? rs : undefined;
    });
    expect(rows.map((r) => r.state)).toEqual(['done', 'failed', 'skipped', 'done']);
    expect(rows[1].error).toMatch(/type/);
    expect(rows[2].error).toMatch(/no such client/);
  });
});

describePostgres('outbox workers on several replicas', () => {
  let db: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('when two workers drain the same outbox, then every row is published exactly once', async () => {
    const client = await registerClient(server);
    await subscribe(db.knex, client);
    await server.stop(); // its own worker must not take part
    const rows = Array.from({ length: 400 }, (_, i) => ({
      event: JSON.stringify(eventFor(client, { idempotencyKey: undefined, txn: `t${i}` })),
    }));
    await db.knex.batchInsert('event_outbox', rows, 200);
    const config = server.config;
    const make = () => {
      const signer = createSetSigner({ workers: 1 });
      const keys = new KeyRing({
        store: SigningKeysStore.create(db.knex),
        knex: db.knex,
        config: config.keys,
        clock: systemClock,
        logger: silentLogger(),
      });
      const publisher = new Publisher({ knex: db.knex, keys, signer, config, clock: systemClock });
      return {
        signer,
        worker: new OutboxWorker({
          knex: db.knex,
          publisher,
          notifier: {
            listen: async () => () => {},
            onResync: () => () => {},
            close: async () => {},
          },
          logger: silentLogger(),
          batchSize: 25,
        }),
      };
    };
    const a = make();
    const b = make();
    const [na, nb] = await Promise.all([a.worker.drain(), b.worker.drain()]);
    await a.signer.close();
    await b.signer.close();
    expect(na + nb).toBe(400);
    expect(na).toBeGreaterThan(0);
    expect(nb).toBeGreaterThan(0);
    const published = await db
      .knex('events')
      .where({ client_id: client })
      .count<{ count: number }[]>('* as count');
    expect(Number(published[0]!.count)).toBe(400);
    const states = await db
      .knex('event_outbox')
      .select('state')
      .count<{ state: string; count: number }[]>('* as count')
      .groupBy('state');
    expect(states).toEqual([{ state: 'done', count: 400 }]);
  });
});
