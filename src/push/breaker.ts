// The circuit breaker of each TPP's callback endpoint. This replica counts retryable failures in
// a row per client; at PUSH_BREAKER_FAILURES it opens the breaker in the database
// (push_breakers), which every replica's claim honours: nobody pushes to the endpoint until
// open_until. Then the claim lets one SET through as a probe (half-open): an answer a working
// endpoint gives (202 or 400) closes the breaker, a failure opens it again for
// PUSH_BREAKER_OPEN_SECONDS. It is never disabled for good; an operator retry closes it.
import type { ClaimedSet, PushStore } from '../db/stores/pushStore.js';
import type { Logger } from '../logger.js';
import type { PushBreakerEvent } from './hooks.js';

export interface BreakerDeps {
  store: PushStore;
  logger: Logger;
  failuresToOpen: number;
  openSeconds: number;
  /** Requests still in flight when a breaker opens end within this long. */
  inFlightMs: number;
  emit(event: PushBreakerEvent): void;
}

export type BreakerChange = { state: 'open'; until: Date } | { state: 'closed' } | undefined;

export class Breakers {
  /** Consecutive retryable failures per client (this replica's count). */
  private readonly failures = new Map<string, number>();
  /**
   * Clients whose breaker this replica just opened, until their requests still in flight have
   * ended (wall-clock ms): those failures do not count again, and the client is not claimed here
   * meanwhile. Afterwards the push_breakers row alone decides, on every replica (so an operator
   * retry, which deletes it, takes effect at once).
   */
  private readonly justOpened = new Map<string, number>();

  constructor(private readonly deps: BreakerDeps) {}

  /** Clients not to claim for right now. */
  held(now = Date.now()): string[] {
    const out: string[] = [];
    for (const [clientId, until] of this.justOpened) {
      if (now < until) out.push(clientId);
      else this.justOpened.delete(clientId);
    }
    return out;
  }

  /** A probe SET was claimed: the breaker is half-open. */
  probing(set: ClaimedSet): void {
    this.deps.emit(event(set, 'half-open', null, null));
    this.deps.logger.info(
      { clientId: set.clientId, jti: set.jti },
      'push breaker half-open: probing',
    );
  }

  /** After an attempt: `healthy` when the endpoint answered 202 or 400. */
  async afterAttempt(
    set: ClaimedSet,
    healthy: boolean,
    reason: string | null,
  ): Promise<BreakerChange> {
    const { clientId } = set;
    if (healthy) {
      this.failures.delete(clientId);
      if (!set.probe) return undefined;
      await this.deps.store.closeBreaker(clientId);
      this.deps.emit(event(set, 'closed', null, null));
      this.deps.logger.info({ clientId }, 'push breaker closed: the endpoint answers again');
      return { state: 'closed' };
    }
    if (!set.probe) {
      if ((this.justOpened.get(clientId) ?? 0) > Date.now()) return undefined; // opened a moment ago
      const n = (this.failures.get(clientId) ?? 0) + 1;
      if (n < this.deps.failuresToOpen) {
        this.failures.set(clientId, n);
        return undefined;
      }
    }
    this.failures.delete(clientId);
    this.justOpened.set(clientId, Date.now() + this.deps.inFlightMs);
    const until = await this.deps.store.openBreaker(
      clientId,
      set.callbackUrl,
      this.deps.openSeconds,
      reason,
    );
    this.deps.emit(event(set, 'open', until, reason));
    this.deps.logger.warn(
      { clientId, callbackUrl: set.callbackUrl, openUntil: until, reason, probe: set.probe },
      set.probe
        ? 'push breaker probe failed: endpoint backed off again'
        : `push breaker open: ${this.deps.failuresToOpen} failures in a row`,
    );
    return { state: 'open', until };
  }

  /** Forgets a client this replica no longer pushes to (memory stays flat). */
  forget(clientId: string): void {
    this.failures.delete(clientId);
  }
}

function event(
  set: ClaimedSet,
  state: PushBreakerEvent['state'],
  openUntil: Date | null,
  reason: string | null,
): PushBreakerEvent {
  return {
    clientId: set.clientId,
    callbackUrl: set.callbackUrl,
    origin: new URL(set.callbackUrl).origin,
    state,
    openUntil,
    reason,
  };
}
