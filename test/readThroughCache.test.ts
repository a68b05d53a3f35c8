// The cache in front of the client and subscription lookups every API request makes.
import { describe, expect, it } from 'vitest';
import { ReadThroughCache } from '../src/domain/readThroughCache.js';

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function setup(ttlMs = 1_000, maxEntries = 100) {
  let now = 0;
  const cache = new ReadThroughCache<string>({ ttlMs, maxEntries, now: () => now });
  let loads = 0;
  const pending: ReturnType<typeof deferred<string>>[] = [];
  const load = () => {
    loads += 1;
    const d = deferred<string>();
    pending.push(d);
    return d.promise;
  };
  return {
    cache,
    load,
    loads: () => loads,
    pending,
    advance: (ms: number) => (now += ms),
  };
}

describe('ReadThroughCache', () => {
  it('when 32 requests miss the same key at once, then one load answers them all', async () => {
    const t = setup();
    const reads = Array.from({ length: 32 }, () => t.cache.get('c1', t.load));
    expect(t.loads()).toBe(1);
    t.pending[0]!.resolve('v1');
    expect(await Promise.all(reads)).toEqual(Array(32).fill('v1'));
    expect(await t.cache.get('c1', t.load)).toBe('v1');
    expect(t.loads()).toBe(1);
  });

  it('when the entry is older than its ttl, then the next read loads again', async () => {
    const t = setup(1_000);
    const first = t.cache.get('c1', t.load);
    t.pending[0]!.resolve('v1');
    await first;
    t.advance(1_000);
    const second = t.cache.get('c1', t.load);
    expect(t.loads()).toBe(2);
    t.pending[1]!.resolve('v2');
    expect(await second).toBe('v2');
  });

  it('when the key is forgotten while a load is under way, then that load is not kept and later reads do not join it', async () => {
    const t = setup();
    const before = t.cache.get('c1', t.load);
    t.cache.forget('c1'); // e.g. the client was revoked meanwhile
    const after = t.cache.get('c1', t.load);
    expect(t.loads()).toBe(2);
    t.pending[0]!.resolve('active (read before the revocation)');
    t.pending[1]!.resolve('revoked');
    expect(await before).toBe('active (read before the revocation)');
    expect(await after).toBe('revoked');
    expect(await t.cache.get('c1', t.load)).toBe('revoked');
    expect(t.loads()).toBe(2);
  });

  it('when everything is cleared while a load is under way, then that load is not kept', async () => {
    const t = setup();
    const before = t.cache.get('c1', t.load);
    t.cache.clear();
    t.pending[0]!.resolve('stale');
    await before;
    void t.cache.get('c1', t.load);
    expect(t.loads()).toBe(2);
  });

  it('when a load fails, then its waiters see the error and the next read tries again', async () => {
    const t = setup();
    const reads = [t.cache.get('c1', t.load), t.cache.get('c1', t.load)];
    t.pending[0]!.reject(new Error('connection terminated'));
    for (const r of reads) await expect(r).rejects.toThrow('connection terminated');
    const again = t.cache.get('c1', t.load);
    expect(t.loads()).toBe(2);
    t.pending[1]!.resolve('v1');
    expect(await again).toBe('v1');
  });

  it('when the cache is full, then it starts again empty rather than growing', async () => {
    const t = setup(1_000, 2);
    for (const key of ['a', 'b', 'c']) {
      const read = t.cache.get(key, t.load);
      t.pending.at(-1)!.resolve(key);
      await read;
    }
    void t.cache.get('a', t.load); // 'a' went with the clear that made room for 'c'
    expect(t.loads()).toBe(4);
  });
});
