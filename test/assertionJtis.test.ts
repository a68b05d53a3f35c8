// The replay record of client assertions: first use wins atomically, duplicates inside one
// batched statement are caught too, and expired records are purged in bounded batches.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { AssertionJtisStore, jtiKey } from '../src/db/stores/assertionJtisStore.js';
import { ReplayGuard } from '../src/domain/replayGuard.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

describe.each([
  ['Postgres (or embedded without it)', false],
  ['embedded PGlite', true],
])('assertion jtis on %s', (_name, embedded) => {
  let db: TestDatabase;
  let store: AssertionJtisStore;
  const later = new Date(Date.now() + 3_600_000);

  beforeAll(async () => {
    db = await createTestDatabase({ embedded });
    store = AssertionJtisStore.create(db.knex);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('when a jti is remembered twice for one client, then only the first is new; another client may use it', async () => {
    expect(await store.remember('a', 'jti-1', later)).toBe(true);
    expect(await store.remember('a', 'jti-1', later)).toBe(false);
    expect(await store.remember('b', 'jti-1', later)).toBe(true);
  });

  it('when a batch holds new, known and repeated jtis, then exactly the new ones come back, once', async () => {
    await store.remember('a', 'known', later);
    const fresh = await store.rememberAll([
      { clientId: 'a', jti: 'new-1', expiresAt: later },
      { clientId: 'a', jti: 'known', expiresAt: later },
      { clientId: 'a', jti: 'twice', expiresAt: later },
      { clientId: 'a', jti: 'twice', expiresAt: later },
    ]);
    expect([...fresh].sort()).toEqual([jtiKey('a', 'new-1'), jtiKey('a', 'twice')].sort());
  });

  it('when requests for the same jti arrive together, then the guard answers true exactly once', async () => {
    const guard = new ReplayGuard(store);
    const answers = await Promise.all([
      guard.firstUse('c', 'same', later),
      guard.firstUse('c', 'same', later),
      guard.firstUse('c', 'other', later),
      guard.firstUse('c', 'same', later),
    ]);
    expect(answers).toEqual([true, false, true, false]);
    expect(await guard.firstUse('c', 'same', later)).toBe(false);
  });

  it('when one jti in a batch holds a NUL byte, then only that request fails and the others are answered', async () => {
    const guard = new ReplayGuard(store);
    const answers = await Promise.allSettled([
      guard.firstUse('d', 'good-1', later),
      guard.firstUse('e', 'bad\u0000jti', later),
      guard.firstUse('f', 'good-2', later),
      guard.firstUse('f', 'good-2', later),
    ]);
    expect(answers.map((a) => (a.status === 'fulfilled' ? a.value : 'rejected'))).toEqual([
      true,
      'rejected',
      true,
      false,
    ]);
    expect(await guard.firstUse('d', 'good-1', later)).toBe(false);
    // A lone surrogate fails the batched (JSON) statement too; the others still get answers.
    // (The token endpoint refuses such a jti before it gets here.)
    const more = await Promise.allSettled([
      guard.firstUse('g', 'lone \ud800 surrogate', later),
      guard.firstUse('h', 'good-3', later),
    ]);
    expect(more[1]).toEqual({ status: 'fulfilled', value: true });
  });

  it('when the database fails, then every waiting request gets the error (nobody is let through)', async () => {
    const broken = {
      rememberAll: () => Promise.reject(new Error('connection lost')),
    } as unknown as AssertionJtisStore;
    const guard = new ReplayGuard(broken);
    await expect(guard.firstUse('c', 'x', later)).rejects.toThrow('connection lost');
  });

  it('when entries have expired, then purging removes them in batches of the given size and keeps the rest', async () => {
    const clock = new ManualClock(Date.now());
    const past = new Date(clock.now() - 1_000);
    const future = new Date(clock.now() + 60_000);
    await db.knex.raw(
      `insert into assertion_jtis (client_id, jti, expires_at)
       select 'purge', 'old-' || i, ? from generate_series(1, 250) i`,
      [past],
    );
    await store.remember('purge', 'still-valid', future);
    const now = new Date(clock.now());
    expect(await store.purgeExpired(now, 100)).toBe(100);
    expect(await store.purgeExpired(now, 100)).toBe(100);
    expect(await store.purgeExpired(now, 100)).toBe(50);
    expect(await store.purgeExpired(now, 100)).toBe(0);
    const left = await db.knex('assertion_jtis').where({ client_id: 'purge' }).select('jti');
    expect(left.map((r: { jti: string }) => r.jti)).toEqual(['still-valid']);
  });
});
