// The push delivery engine (OBIE Real-time Event Notification). It runs in `serve` (unless
// PUSH_CONCURRENCY=0) and in `ob-events worker`; any number of them share one database.
//
// Delivery guarantees and how they hold across replicas:
// - At least once, never silently dropped. A SET is claimed with FOR UPDATE SKIP LOCKED and a
//   lease (pushStore.ts): no other replica and no poll takes it while the lease runs, and a
//   replica that dies mid-delivery leaves SETs that become due again when their lease has
//   ended and it has been silent for PUSH_WORKER_TIMEOUT_SECONDS. A
//   SET whose pushes run out (PUSH_MAX_ATTEMPTS / PUSH_MAX_AGE_SECONDS) is marked `failed` and
//   stays pending for polling; operators see it and can retry it.
// - No second send after the TPP accepted, across database outages of any length: a 202
//   resolves the SET in the database before anything can send it again. Outcomes that cannot
//   be written are kept and retried, and this engine claims nothing until they are written
//   (OutcomeWriter.blocked). Every claimed SET names its worker (leased_by) and every worker
//   heartbeats (push_workers, every PUSH_WORKER_TIMEOUT_SECONDS / 6): a lease that ended is
//   taken over by another worker only once its holder has not been seen for
//   PUSH_WORKER_TIMEOUT_SECONDS while the taker was connected all along (pushStore.ts
//   CLAIM_SQL). Only a crash (or a replica cut off from the database alone for that long)
//   between the 202 and its write sends it again.
// - Order: claims take each client's due SETs in (push_next_at, jti) order and each origin
//   dispatches them in that order, so a healthy TPP gets its SETs in creation order; with
//   several requests in flight per origin (PUSH_PER_ORIGIN_CONCURRENCY) they can arrive
//   slightly out of order, and a retried SET arrives after later ones. The jti is a UUIDv7, so a
//   TPP that cares re-sorts by jti.
//
// Fairness: a global limit (PUSH_CONCURRENCY) on SETs held by this replica, a limit per callback
// origin (PUSH_PER_ORIGIN_CONCURRENCY) with one keep-alive connection pool each, and a claim
// that skips clients whose origin is saturated: a slow TPP fills its own slots, never the
// others'. The circuit breaker of each endpoint (breaker.ts) is a row of push_breakers that
// every replica's outcomes move and every replica's claim honours; one claim takes its probe.
//
// Wake-ups: NOTIFY on publish (any replica), a timer for this replica's own retries and breaker
// re-openings, completions that free a slot something was waiting for, and a sweep every
// couple of seconds as the safety net (other replicas' retries, expired leases, lost NOTIFYs).
import { randomBytes, randomUUID } from 'node:crypto';
import type dns from 'node:dns';
import fs from 'node:fs';
import os from 'node:os';
import type { Knex } from 'knex';
import { systemClock, type Clock } from '../clock.js';
import type { Config } from '../config.js';
import { CHANNELS, notify, type Notifier } from '../db/notifier.js';
import { PushStore, type BreakerChange, type ClaimedSet } from '../db/stores/pushStore.js';
import type { Logger } from '../logger.js';
import { Breakers, breakerPolicy } from './breaker.js';
import type { PushHooks } from './hooks.js';
import { decideOutcome, type Outcome } from './outcome.js';
import { OutcomeWriter } from './outcomeWriter.js';
import { Transmitter, type PostResult } from './transmitter.js';

export interface PushEngineDeps {
  knex: Knex;
  notifier: Notifier;
  config: Config['push'];
  /** CALLBACK_ALLOW_PRIVATE_NETWORKS: also checked at connect time. */
  allowPrivateNetworks: boolean;
  logger: Logger;
  clock?: Clock;
  hooks?: PushHooks;
  /** DNS for callback hosts (tests); default dns.lookup. */
  lookup?: typeof dns.lookup;
  /** Safety-net sweep interval (default 2 s). */
  sweepMs?: number;
  random?: () => number;
}

interface Claimed {
  set: ClaimedSet;
  url: URL;
}

interface OriginState {
  inFlight: number;
  queue: Claimed[];
  clients: Set<string>;
  lastUsed: number;
}

const MAINTENANCE_MS = 60_000;
const IDLE_ORIGIN_MS = 5 * 60_000;
/** How long a completion may wait for others before claiming (throughput against latency). */
const COALESCE_MS = 2;
/** Retry wake-ups remembered; later ones are found by the sweep. */
const MAX_RETRY_WAKES = 10_000;

export class PushEngine {
  /** Names this engine in push_attempts.worker. */
  readonly worker = `${os.hostname().slice(0, 150)}:${process.pid}:${randomBytes(3).toString('hex')}`;
  /** How long a claimed SET is held: longer than any attempt can take, queueing included. */
  readonly leaseSeconds: number;

  private readonly store: PushStore;
  private readonly transmitter: Transmitter;
  private readonly clock: Clock;
  private readonly cfg: Config['push'];
  private readonly origins = new Map<string, OriginState>();
  private readonly clientOrigin = new Map<string, string>();
  /** Origins that had SETs left behind by the last claim (busy, or quota reached). */
  private readonly waiting = new Set<string>();
  private readonly attempts = new Set<Promise<void>>();
  private held = 0; // claimed SETs in flight or queued here
  private claimMore = false;
  private pumping: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private started = false;
  private readonly outcomes: OutcomeWriter;
  private readonly breakers: Breakers;
  private sweepTimer: NodeJS.Timeout | undefined;
  private maintenanceTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeating: Promise<void> | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private slotTimer: NodeJS.Timeout | undefined;
  private readonly minBatch: number;
  private wakeAt = Infinity;
  /** When this engine's recorded retries fall due (ms, ascending; bounded, the sweep covers more). */
  private retryAt: number[] = [];
  private unlisten: (() => void) | undefined;
  private unresync: (() => void) | undefined;

  constructor(private readonly deps: PushEngineDeps) {
    this.cfg = deps.config;
    this.clock = deps.clock ?? systemClock;
    this.store = PushStore.create(deps.knex);
    this.leaseSeconds = Math.ceil((2 * this.cfg.timeoutMs + 5_000) / 1000);
    this.minBatch = Math.max(1, Math.floor(this.cfg.concurrency / 4));
    this.breakers = new Breakers({
      logger: deps.logger,
      emit: (event) => this.hook('breaker', event),
    });
    this.outcomes = new OutcomeWriter({
      store: this.store,
      logger: deps.logger,
      batchHint: this.minBatch,
      policy: breakerPolicy(this.cfg),
      onRetriesRecorded: (delays) => this.retriesDue(delays),
      onBreakerChanges: (changes) => this.breakersChanged(changes),
      onUnblocked: () => this.wake(),
    });
    this.transmitter = new Transmitter({
      financialId: this.cfg.financialId,
      timeoutMs: this.cfg.timeoutMs,
      connectionsPerOrigin: this.cfg.perOriginConcurrency,
      allowPrivate: deps.allowPrivateNetworks,
      ca: this.cfg.caFile ? fs.readFileSync(this.cfg.caFile) : undefined,
      cert: this.cfg.clientCertFile ? fs.readFileSync(this.cfg.clientCertFile) : undefined,
      key: this.cfg.clientKeyFile ? fs.readFileSync(this.cfg.clientKeyFile) : undefined,
      lookup: deps.lookup,
    });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.unlisten = await this.deps.notifier.listen(CHANNELS.published, () => this.wake());
    this.unresync = this.deps.notifier.onResync(() => this.wake());
    this.sweepTimer = setInterval(() => this.wake(), this.deps.sweepMs ?? 2_000);
    this.sweepTimer.unref();
    this.maintenanceTimer = setInterval(() => void this.maintain(), MAINTENANCE_MS);
    this.maintenanceTimer.unref();
    await this.heartbeat();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.heartbeatMs());
    this.heartbeatTimer.unref();
    this.deps.logger.info(
      {
        worker: this.worker,
        concurrency: this.cfg.concurrency,
        perOrigin: this.cfg.perOriginConcurrency,
        leaseSeconds: this.leaseSeconds,
      },
      'push delivery started',
    );
    this.wake();
  }

  /**
   * Stops claiming, hands back SETs claimed but not yet sent, lets requests in flight finish
   * (each ends by PUSH_TIMEOUT_MS), writes their outcomes and closes the connections.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of [this.sweepTimer, this.maintenanceTimer, this.heartbeatTimer])
      if (t) clearInterval(t);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.slotTimer) clearTimeout(this.slotTimer);
    this.unlisten?.();
    this.unresync?.();
    await this.pumping;
    const queued = [...this.origins.values()].flatMap((o) => o.queue.splice(0));
    this.held -= queued.length;
    await this.store
      .release(queued.map((c) => ({ jti: c.set.jti, lease: c.set.lease })))
      .catch((err: unknown) =>
        this.deps.logger.warn({ err }, 'could not release queued SETs; their leases will end'),
      );
    await Promise.allSettled([...this.attempts]);
    await this.outcomes.flush(true);
    await this.heartbeating;
    // Everything written: nothing of ours is left for others to wait on. (If the database was
    // unreachable, the row stays and ages out: our SETs are taken over like a crash's.)
    if (this.outcomes.pending === 0 && !this.outcomes.blocked) {
      await this.store.removeWorker(this.worker).catch(() => undefined);
    }
    await this.transmitter.close();
  }

  private heartbeatMs(): number {
    return (this.cfg.workerTimeoutSeconds * 1000) / 6;
  }

  /**
   * Says this worker is alive (its leases are not taken over), and is how it notices the
   * database is back: held outcomes are written at once then.
   */
  private async heartbeat(): Promise<void> {
    if (this.heartbeating) return;
    this.heartbeating = (async () => {
      try {
        await this.store.heartbeat(this.worker, (3 * this.heartbeatMs()) / 1000);
        if (this.outcomes.blocked) this.outcomes.kick();
      } catch (err) {
        this.deps.logger.debug({ err }, 'push worker heartbeat failed');
      }
    })().finally(() => {
      this.heartbeating = undefined;
    });
    await this.heartbeating;
  }

  private breakersChanged(changes: BreakerChange[]): void {
    this.breakers.changed(changes);
    for (const c of changes) {
      if (c.change === 'closed') {
        this.wake(); // the backlog may flow again, here and (NOTIFY) on every replica
        void notify(this.deps.knex, CHANNELS.published, c.clientId).catch(() => undefined);
      } else if (c.openUntil) {
        this.wakeIn(c.openUntil.getTime() - Date.now() + 20); // half-open then
      }
    }
  }

  /** For tests and the bench: what this engine holds right now. */
  stats(): { held: number; inFlight: number; origins: number; unrecorded: number } {
    let inFlight = 0;
    for (const o of this.origins.values()) inFlight += o.inFlight;
    return {
      held: this.held,
      inFlight,
      origins: this.origins.size,
      unrecorded: this.outcomes.pending,
    };
  }

  /** Claims now (tests); normally NOTIFY, timers and completions do this. */
  wake(): void {
    if (this.stopped || !this.started) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        this.wake();
      }
    });
  }

  /**
   * A slot freed up: claim at once when a good batch is free, else a moment later, so that under
   * load claims take several SETs each instead of one statement per completion.
   */
  private wakeForSlots(): void {
    if (this.free() >= this.minBatch) {
      this.wake();
      return;
    }
    this.slotTimer ??= setTimeout(() => {
      this.slotTimer = undefined;
      this.wake();
    }, COALESCE_MS);
  }

  private async pump(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.claimOnce();
      } catch (err) {
        this.deps.logger.warn({ err }, 'push claim failed; trying again shortly');
        this.wakeIn(1_000);
        return;
      }
    } while (!this.stopped && (this.again || this.claimMore) && this.free() > 0);
  }

  private free(): number {
    return this.cfg.concurrency - this.held;
  }

  private async claimOnce(): Promise<void> {
    const free = this.free();
    if (free <= 0) {
      this.claimMore = true; // a completion wakes us
      return;
    }
    if (this.outcomes.blocked) return; // outcomes to write first; onUnblocked wakes us
    const perClient = Math.min(this.cfg.perOriginConcurrency, free);
    const { busy, quotas } = this.limits(perClient);
    const started = performance.now();
    const sets = await this.store.claim({
      limit: free,
      perClient,
      busy,
      quotas,
      leaseSeconds: this.leaseSeconds,
      worker: this.worker,
      workerTimeoutSeconds: this.cfg.workerTimeoutSeconds,
    });
    const claimMs = performance.now() - started;
    this.hook('claim', { count: sets.length, ms: claimMs });
    this.deps.logger.trace(
      { claimed: sets.length, free, busy: busy.length, ms: Math.round(claimMs) },
      'push claim',
    );
    this.claimMore = sets.length >= free;

    const perClientCount = new Map<string, number>();
    for (const set of sets)
      perClientCount.set(set.clientId, (perClientCount.get(set.clientId) ?? 0) + 1);
    this.waiting.clear();
    for (const clientId of busy) {
      const origin = this.clientOrigin.get(clientId);
      if (origin) this.waiting.add(origin);
    }
    for (const set of sets) {
      if (this.stopped) {
        // Claimed while stopping: hand it back at once.
        await this.store.release([{ jti: set.jti, lease: set.lease }]);
        continue;
      }
      const url = new URL(set.callbackUrl);
      const origin = this.originFor(set.clientId, url.origin);
      if ((perClientCount.get(set.clientId) ?? 0) >= (quotas.get(set.clientId) ?? perClient)) {
        this.waiting.add(url.origin);
      }
      this.breakers.claimed(set);
      this.held += 1;
      origin.queue.push({ set, url });
      this.dispatch(url.origin, origin);
    }
  }

  /** Which clients not to claim for, and smaller quotas for origins partly in use. */
  private limits(perClient: number): { busy: string[]; quotas: Map<string, number> } {
    const busy: string[] = [];
    const quotas = new Map<string, number>();
    for (const o of this.origins.values()) {
      const room = this.cfg.perOriginConcurrency - o.inFlight - o.queue.length;
      if (room >= perClient) continue;
      for (const clientId of o.clients) {
        if (room <= 0) busy.push(clientId);
        else quotas.set(clientId, room);
      }
    }
    return { busy, quotas };
  }

  private originFor(clientId: string, originKey: string): OriginState {
    const previous = this.clientOrigin.get(clientId);
    if (previous !== originKey) {
      if (previous) this.origins.get(previous)?.clients.delete(clientId);
      this.clientOrigin.set(clientId, originKey);
    }
    let origin = this.origins.get(originKey);
    if (!origin) {
      origin = { inFlight: 0, queue: [], clients: new Set(), lastUsed: Date.now() };
      this.origins.set(originKey, origin);
    }
    origin.clients.add(clientId);
    return origin;
  }

  /** Starts queued SETs of an origin, in claim order, while it has a free slot. */
  private dispatch(originKey: string, origin: OriginState): void {
    while (origin.inFlight < this.cfg.perOriginConcurrency && origin.queue.length > 0) {
      const next = origin.queue.shift()!;
      origin.inFlight += 1;
      origin.lastUsed = Date.now();
      const attempt: Promise<void> = this.attempt(next)
        .catch((err: unknown) =>
          this.deps.logger.error({ err, jti: next.set.jti }, 'push attempt failed unexpectedly'),
        )
        .finally(() => {
          this.attempts.delete(attempt);
          origin.inFlight -= 1;
          this.held -= 1;
          origin.lastUsed = Date.now();
          this.dispatch(originKey, origin);
          if (this.claimMore || this.waiting.has(originKey)) this.wakeForSlots();
        });
      this.attempts.add(attempt);
    }
  }

  private async attempt({ set, url }: Claimed): Promise<void> {
    const interactionId = randomUUID();
    const attemptedAt = new Date(this.clock.now());
    const number = set.attempts + 1;
    const result: PostResult = await this.transmitter.post(url, set.setJws, interactionId);
    const decided = decideOutcome(
      result,
      {
        attempt: number,
        createdAt: set.createdAt,
        nowMs: this.clock.now(),
        ...(this.deps.random ? { random: this.deps.random } : {}),
      },
      this.cfg,
    );
    this.outcomes.add({
      jti: set.jti,
      clientId: set.clientId,
      probe: set.probe,
      down: decided.endpointDown,
      retryAfterMs: decided.retryAfterMs,
      lease: set.lease,
      outcome: decided.outcome,
      delayMs: decided.delayMs,
      err: decided.err,
      errDescription: decided.errDescription,
      attempt: number,
      attemptedAt,
      worker: this.worker,
      callbackUrl: set.callbackUrl,
      interactionId,
      statusCode: decided.statusCode,
      latencyMs: result.latencyMs,
      error: decided.error,
    });
    this.log(set, number, interactionId, decided, result.latencyMs);
    this.hook('attempt', {
      clientId: set.clientId,
      origin: url.origin,
      outcome: decided.outcome,
      statusCode: decided.statusCode,
      latencyMs: result.latencyMs,
      error: decided.error,
      probe: set.probe,
    });
  }

  private log(
    set: ClaimedSet,
    attempt: number,
    interactionId: string,
    d: Outcome,
    latencyMs: number,
  ): void {
    const fields = {
      jti: set.jti,
      clientId: set.clientId,
      interactionId,
      attempt,
      status: d.statusCode,
      latencyMs: Math.round(latencyMs),
      outcome: d.outcome,
      ...(d.error ? { error: d.error } : {}),
      ...(d.delayMs !== null ? { retryInMs: d.delayMs } : {}),
    };
    if (d.outcome === 'accepted') this.deps.logger.debug(fields, 'push delivered');
    else if (d.outcome === 'rejected') this.deps.logger.info(fields, 'push rejected by the TPP');
    else if (d.outcome === 'retry')
      this.deps.logger.info(fields, 'push attempt failed; will retry');
    else this.deps.logger.warn(fields, 'push failed for good; the SET stays available to polling');
  }

  /** Wakes the claim loop in `ms` (keeps only the earliest such wake-up). */
  private wakeIn(ms: number): void {
    if (this.stopped) return;
    const at = Date.now() + Math.max(0, ms);
    if (this.wakeTimer && at >= this.wakeAt) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.wakeAt = Infinity;
        this.wake();
        this.nextRetryWake();
      },
      Math.max(0, ms),
    );
    this.wakeTimer.unref();
  }

  /** Retries were recorded: wake when each falls due (not only the soonest). */
  private retriesDue(delaysMs: number[]): void {
    const now = Date.now();
    this.retryAt.push(...delaysMs.map((d) => now + d));
    this.retryAt.sort((a, b) => a - b);
    if (this.retryAt.length > MAX_RETRY_WAKES) this.retryAt.length = MAX_RETRY_WAKES;
    this.nextRetryWake();
  }

  private nextRetryWake(): void {
    const now = Date.now();
    let i = 0;
    while (i < this.retryAt.length && this.retryAt[i]! <= now) i++;
    if (i > 0) this.retryAt.splice(0, i);
    const next = this.retryAt[0];
    if (next !== undefined) this.wakeIn(next - now);
  }

  /** Keeps memory flat: forgets idle origins, closes their pools; drops orphaned pushes. */
  private async maintain(): Promise<void> {
    const now = Date.now();
    for (const [key, o] of this.origins) {
      if (o.inFlight === 0 && o.queue.length === 0 && now - o.lastUsed > IDLE_ORIGIN_MS) {
        this.origins.delete(key);
        for (const clientId of o.clients) {
          this.clientOrigin.delete(clientId);
          this.breakers.forget(clientId);
        }
      }
    }
    await this.transmitter.closeIdle(IDLE_ORIGIN_MS);
    try {
      const stopped = await this.store.stopOrphanedPushes();
      if (stopped > 0)
        this.deps.logger.info({ stopped }, 'pushes stopped for clients without a CallbackUrl');
    } catch (err) {
      this.deps.logger.warn({ err }, 'push maintenance failed');
    }
  }

  private hook<K extends keyof PushHooks>(
    name: K,
    event: Parameters<NonNullable<PushHooks[K]>>[0],
  ): void {
    const fn = this.deps.hooks?.[name] as ((e: typeof event) => void) | undefined;
    if (!fn) return;
    try {
      fn(event);
    } catch (err) {
      this.deps.logger.warn({ err, hook: name }, 'push hook failed');
    }
  }
}
