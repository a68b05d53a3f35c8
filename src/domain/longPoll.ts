// Long polling (RFC 8936 §2.2, `returnImmediately: false`): requests that found nothing wait here
// until a SET for their client is published (NOTIFY from any replica, through the process's one
// LISTEN connection) or their time is up. Wake-ups fan out in memory by client id.
// - at most `maxPerClient` waiters per client; further requests answer at once;
// - after the LISTEN connection is re-established every waiter wakes and re-checks, since
//   notifications sent while it was down are lost;
// - shutdown releases every waiter at once.
import { CHANNELS, type Notifier } from '../db/notifier.js';

export type WakeReason = 'published' | 'timeout' | 'resync' | 'shutdown' | 'aborted';

interface Waiter {
  wake(reason: WakeReason): void;
}

export class LongPollHub {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private closed = false;
  private unlisten: (() => void) | undefined;
  private unresync: (() => void) | undefined;

  constructor(private readonly maxPerClient: number) {}

  async start(notifier: Notifier): Promise<void> {
    this.unlisten = await notifier.listen(CHANNELS.published, (clientId) =>
      this.wakeClient(clientId, 'published'),
    );
    this.unresync = notifier.onResync(() => this.wakeAll('resync'));
  }

  /** Waiting requests right now (all clients). */
  get size(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  /**
   * Registers a waiter for the client; returns undefined when the client already has its
   * maximum of waiters (or the hub is closing): the caller answers at once.
   * Register BEFORE the last look at the database, so a publish in between is not missed.
   */
  register(
    clientId: string,
    timeoutMs: number,
    signal?: AbortSignal,
  ): { wait: Promise<WakeReason>; cancel(): void } | undefined {
    if (this.closed) return undefined;
    let set = this.waiters.get(clientId);
    if (set && set.size >= this.maxPerClient) return undefined;
    if (!set) {
      set = new Set();
      this.waiters.set(clientId, set);
    }
    const clientSet = set;
    let waiter!: Waiter;
    const wait = new Promise<WakeReason>((resolve) => {
      const timer = setTimeout(() => waiter.wake('timeout'), timeoutMs);
      const onAbort = () => waiter.wake('aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
      waiter = {
        wake: (reason) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          clientSet.delete(waiter);
          if (clientSet.size === 0 && this.waiters.get(clientId) === clientSet)
            this.waiters.delete(clientId);
          resolve(reason);
        },
      };
      if (signal?.aborted) onAbort();
    });
    clientSet.add(waiter);
    return { wait, cancel: () => waiter.wake('aborted') };
  }

  /** Releases every waiter and refuses new ones (graceful shutdown). */
  close(): void {
    this.closed = true;
    this.unlisten?.();
    this.unresync?.();
    this.wakeAll('shutdown');
  }

  private wakeClient(clientId: string, reason: WakeReason): void {
    const set = this.waiters.get(clientId);
    if (!set) return;
    for (const w of [...set]) w.wake(reason);
  }

  private wakeAll(reason: WakeReason): void {
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w.wake(reason);
  }
}
