// The circuit breaker of each TPP's callback endpoint: it protects the bank from an endpoint
// that is down or overloaded, and leaves per-message failures to each SET's own back-off.
//
// The state is one row of push_breakers per endpoint that failed, shared by every replica and
// moved by the outcome write itself (push_breaker_record in
// migrations/20261201110000_push_reliability.ts), so failures count across processes:
// - it opens on PUSH_BREAKER_FAILURES answers in a row that say the endpoint is down (refused
//   or broken connections, TLS failures, time-outs, 429/502/503/504); at once on a 429/503
//   with Retry-After (for exactly that long); or when a whole PUSH_BREAKER_WINDOW_SECONDS
//   window had at least PUSH_BREAKER_FAILURES failures making up PUSH_BREAKER_FAILURE_RATE of
//   its attempts (judged when the window ends, so one burst is not a rate);
// - its cool-down starts at PUSH_RETRY_BASE_MS, near the retry schedule, and doubles with each
//   failed probe up to PUSH_BREAKER_OPEN_SECONDS; then one claim (on one replica) takes one
//   SET as the probe (half-open);
// - any 202 or 400 closes it, a probe's or any other SET's;
// - after PUSH_DISABLE_AFTER_SECONDS without a success, push to the TPP is disabled (its SETs
//   stay pending for polling) until an operator enables it (src/domain/pushEndpoints.ts).
// This class only reports the changes: logs, hooks (metrics) and wake-ups.
import type { BreakerChange, BreakerPolicy, ClaimedSet } from '../db/stores/pushStore.js';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { PushBreakerEvent } from './hooks.js';

export function breakerPolicy(cfg: Config['push']): BreakerPolicy {
  return {
    failuresToOpen: cfg.breakerFailures,
    windowSeconds: cfg.breakerWindowSeconds,
    failureRate: cfg.breakerFailureRate,
    baseMs: cfg.retryBaseMs,
    maxOpenSeconds: cfg.breakerOpenSeconds,
    disableAfterSeconds: cfg.disableAfterSeconds,
  };
}

export interface BreakerDeps {
  logger: Logger;
  emit(event: PushBreakerEvent): void;
}

export class Breakers {
  /** Callback URL last claimed per client (for the events; bounded by the engine's origins). */
  private readonly urls = new Map<string, string>();

  constructor(private readonly deps: BreakerDeps) {}

  /** A SET was claimed; a probe means the breaker is half-open. */
  claimed(set: ClaimedSet): void {
    this.urls.set(set.clientId, set.callbackUrl);
    if (!set.probe) return;
    this.deps.emit(event(set.clientId, set.callbackUrl, 'half-open', null, null));
    this.deps.logger.info(
      { clientId: set.clientId, jti: set.jti },
      'push breaker half-open: probing',
    );
  }

  /** Reports what the outcome write did to the breakers. */
  changed(changes: BreakerChange[]): void {
    for (const c of changes) {
      const callbackUrl = this.urls.get(c.clientId) ?? null;
      const fields = {
        clientId: c.clientId,
        callbackUrl,
        openUntil: c.openUntil,
        trips: c.trips,
        reason: c.reason,
      };
      if (c.change === 'closed') {
        this.deps.logger.info(fields, 'push breaker closed: the endpoint answers again');
      } else if (c.change === 'disabled') {
        this.deps.logger.warn(
          fields,
          'push disabled for this client after failing for PUSH_DISABLE_AFTER_SECONDS; its SETs stay pollable; enable it with `ob-events push enable`',
        );
      } else {
        this.deps.logger.warn(
          fields,
          c.change === 'opened'
            ? 'push breaker open: the endpoint looks down'
            : 'push breaker probe failed: endpoint backed off again',
        );
      }
      if (callbackUrl && c.change !== 'disabled') {
        this.deps.emit(
          event(
            c.clientId,
            callbackUrl,
            c.change === 'closed' ? 'closed' : 'open',
            c.openUntil,
            c.reason,
          ),
        );
      }
    }
  }

  /** Forgets a client this replica no longer pushes to (memory stays flat). */
  forget(clientId: string): void {
    this.urls.delete(clientId);
  }
}

function event(
  clientId: string,
  callbackUrl: string,
  state: PushBreakerEvent['state'],
  openUntil: Date | null,
  reason: string | null,
): PushBreakerEvent {
  return {
    clientId,
    callbackUrl,
    origin: new URL(callbackUrl).origin,
    state,
    openUntil,
    reason,
  };
}
