// What the push engine tells the outside world as it works: one call per attempt, per claim and
// per breaker change. The metrics (prom-client) plug in here without touching the engine; every
// hook is optional and must not throw (a throwing hook is logged and ignored).
import type { AttemptOutcome } from '../db/stores/pushStore.js';

export interface PushAttemptEvent {
  clientId: string;
  /** Callback origin, e.g. https://tpp.example:443 */
  origin: string;
  outcome: AttemptOutcome;
  /** HTTP status, or null for time-outs, refused addresses and connection errors. */
  statusCode: number | null;
  latencyMs: number;
  /** Why it did not succeed (null for 202). */
  error: string | null;
  /** The attempt probed a half-open breaker. */
  probe: boolean;
}

export interface PushBreakerEvent {
  clientId: string;
  callbackUrl: string;
  /** Callback origin, e.g. https://tpp.example:443 */
  origin: string;
  /** open: backed off until `openUntil`; half-open: one probe sent; closed: working again. */
  state: 'open' | 'half-open' | 'closed';
  openUntil: Date | null;
  reason: string | null;
}

export interface PushClaimEvent {
  /** SETs claimed by one claim statement. */
  count: number;
  ms: number;
}

export interface PushHooks {
  attempt?(event: PushAttemptEvent): void;
  breaker?(event: PushBreakerEvent): void;
  claim?(event: PushClaimEvent): void;
}
