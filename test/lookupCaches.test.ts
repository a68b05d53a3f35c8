// The client and subscription lookups every API request makes, against a real Postgres: when
// their one-second cache entry expires under load, one query refreshes it (32 requests in flight
// used to send 32), and a read that started before a revocation is never kept after it.
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { ClientsStore } from '../src/db/stores/clientsStore.js';
import { SubscriptionsStore } from '../src/db/stores/subscriptionsStore.js';
import { Clients } from '../src/domain/clients.js';
import { Subscriptions } from '../src/domain/subscriptions.js';
import { V3_1 } from '../src/domain/versions.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/** Counts the statements sent that mention `table`. */
function countQueries(knex: Knex, table: string): () => number {
  let n = 0;
  knex.on('query', (q: { sql: string }) => {
    if (q.sql.includes(`"${table}"`)) n += 1;
  });
  return () => n;
}

describe('lookup caches', () => {
  let db: TestDatabase;
  const clock = new ManualClock();
  let clients: Clients;
  let subscriptions: Subscriptions;
  // While set, a client read waits for it after reading its row (a slow read, held on purpose).
  let hold: Promise<void> | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    const realStore = ClientsStore.create(db.knex);
    const store = Object.create(realStore) as ClientsStore;
    store.find = async (clientId) => {
      const row = await realStore.find(clientId);
      await hold;
      return row;
    };
    clients = new Clients({ store, knex: db.knex, clock });
    subscriptions = new Subscriptions({
      store: SubscriptionsStore.create(db.knex),
      knex: db.knex,
      clock,
      allowPrivateNetworks: true,
      eventTypesDocUrl: 'https://bank.example/event-types',
    });
    const key = await createSigningKeyPair();
    await clients.register({ clientId: 'cache-1', jwks: { keys: [key.publicJwk] } });
    await subscriptions.create('cache-1', V3_1, { version: '3.1' });
  });
  afterAll(async () => db?.drop());

  it('when 32 requests look the client and its subscription up as their entries expire, then one query each refreshes them', async () => {
    await clients.findActive('cache-1');
    await subscriptions.get('cache-1');
    clock.advance(1_001);
    const clientQueries = countQueries(db.knex, 'clients');
    const subscriptionQueries = countQueries(db.knex, 'event_subscriptions');
    const found = await Promise.all(
      Array.from({ length: 32 }, async () => [
        await clients.findActive('cache-1'),
        await subscriptions.get('cache-1'),
      ]),
    );
    expect(found.every(([c, s]) => c?.clientId === 'cache-1' && s?.clientId === 'cache-1')).toBe(
      true,
    );
    expect(clientQueries()).toBe(1);
    expect(subscriptionQueries()).toBe(1);
  });

  it('when a client is revoked while a read of it is under way, then that read is not kept', async () => {
    clock.advance(1_001);
    let release!: () => void;
    hold = new Promise((resolve) => (release = resolve));
    const before = clients.findActive('cache-1'); // reads the row as active, then waits
    await new Promise((resolve) => setTimeout(resolve, 50));
    hold = undefined;
    await clients.revoke('cache-1');
    release(); // the old read completes only now, after the revocation
    expect((await before)?.clientId).toBe('cache-1');
    // The cache must not serve the pre-revocation read for the next second.
    expect(await clients.findActive('cache-1')).toBeUndefined();
  });
});
