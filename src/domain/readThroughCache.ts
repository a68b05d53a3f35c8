// The read-through cache of the lookups every API request makes (a client, a client's
// subscription): an entry lives `ttlMs`; concurrent misses for one key share one load (when an
// entry expires under load, one query refreshes it, not one per request waiting); a load that
// overlapped an invalidation is handed to the requests that were waiting for it but not kept,
// since it may predate the change. Bounded: cleared when full (a flood of unknown keys).
export class ReadThroughCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();
  private readonly loading = new Map<string, Promise<V>>();
  // Bumped by every invalidation: a load started before one is not kept.
  private generation = 0;

  constructor(private readonly opts: { ttlMs: number; maxEntries: number; now: () => number }) {}

  get(key: string, load: () => Promise<V>): Promise<V> {
    const now = this.opts.now();
    const hit = this.entries.get(key);
    if (hit && hit.until > now) return Promise.resolve(hit.value);
    const pending = this.loading.get(key);
    if (pending) return pending;
    const generation = this.generation;
    const loaded = load().then(
      (value) => {
        if (this.loading.get(key) === loaded) this.loading.delete(key);
        if (generation === this.generation) {
          if (this.entries.size >= this.opts.maxEntries) this.entries.clear();
          this.entries.set(key, { value, until: now + this.opts.ttlMs });
        }
        return value;
      },
      (err: unknown) => {
        if (this.loading.get(key) === loaded) this.loading.delete(key);
        throw err;
      },
    );
    this.loading.set(key, loaded);
    return loaded;
  }

  /** The key changed: the next read loads it afresh (and no load under way is kept). */
  forget(key: string): void {
    this.generation++;
    this.entries.delete(key);
    this.loading.delete(key);
  }

  /** Everything may have changed (e.g. change notifications were missed). */
  clear(): void {
    this.generation++;
    this.entries.clear();
    this.loading.clear();
  }
}
