// Push delivery state: claiming due SETs, recording attempt outcomes, the shared circuit breakers,
// and what operators see and do. The hot statements are raw SQL with named bindings, one round
// trip each; every one is a single autocommit statement, so row locks last no longer than it.
//
// Columns of event_deliveries this store writes (see migrations/20261123000001_initial.ts):
//   push_state    NULL (no push) | due | delivered (202) | rejected (400) | failed (gave up)
//   push_next_at  earliest next attempt (left alone by claims: see CLAIM_SQL)
//   leased_until  held by a poll or a push attempt until then (neither takes a held SET)
//   leased_by     the push worker holding it (migrations/20261201110000_push_reliability.ts)
//   push_attempts attempts made in the current series (an operator retry starts a new one)
import type { Knex } from 'knex';

export interface ClaimRequest {
  /** Most SETs to claim in total (free global slots). */
  limit: number;
  /** Most SETs per client when `quotas` does not say otherwise. */
  perClient: number;
  /** Clients not to claim for now (their origin has no free slot). */
  busy: string[];
  /** Per-client limits below `perClient` (free slots of the client's origin). */
  quotas: Map<string, number>;
  /** Lease of a claimed SET (and of a breaker probe): no poll or push takes it before then. */
  leaseSeconds: number;
  /** The claiming push worker (push_workers.worker), written to leased_by. */
  worker: string;
  /** PUSH_WORKER_TIMEOUT_SECONDS: when a silent lease holder counts as gone. */
  workerTimeoutSeconds: number;
}

export interface ClaimedSet {
  jti: string;
  clientId: string;
  /** Attempts made before this one (this one is attempts + 1). */
  attempts: number;
  /** The lease exactly as stored: the fencing token of outcome updates. */
  lease: string;
  /** The client's CallbackUrl now (not when the SET was published). */
  callbackUrl: string;
  /** This SET probes a half-open breaker. */
  probe: boolean;
  createdAt: Date;
  setJws: string;
}

/**
 * Why one statement, and why per client: the claim walks the subscriptions with a CallbackUrl
 * (one row per TPP) and, for each client not busy, not disabled and not behind an open breaker,
 * takes its oldest due SETs from event_deliveries_push_due_idx (client_id, push_next_at, jti)
 * with FOR UPDATE SKIP LOCKED, so replicas split the work and a client with a deep backlog is
 * never scanned past by the others. Clients are served oldest-waiting first and round-robin
 * (every client's first SET before anyone's second) up to `limit`. Rows locked but not chosen
 * are released when the statement commits.
 *
 * A claimed SET gets `leased_until` = now() + lease and `leased_by` = this worker, nothing
 * else: pollers and other claims skip it. Only those two columns, which no index holds,
 * change, so Postgres updates the row in place (a HOT update: no index entries written).
 *
 * A lease that ended is taken over only when its holder may not still hold an unrecorded
 * outcome (a 202 it could not write during a database outage): when the holder is this worker
 * (which claims nothing while it has outcomes to write), or when the holder has not been seen
 * (push_workers) for workerTimeoutSeconds and this worker itself has been connected without a
 * gap for that long (after an outage every live worker gets that long to be seen again).
 *
 * A breaker whose cool-down is over lets one SET through as a probe: the `probes` UPDATE
 * claims it with the row lock, and a concurrent claim on another replica re-checks
 * probe_until after that lock and finds it taken, so only one probe is ever in flight.
 * Revoked clients get no pushes. The CallbackUrl is the subscription's current one.
 */
const CLAIM_SQL = `
WITH me AS (
  SELECT COALESCE(bool_and(w.connected_since <= now() - make_interval(secs => :workerTimeout)
                       AND w.seen_at > now() - make_interval(secs => :workerTimeout / 3.0)),
                  false) AS warm
    FROM push_workers w
   WHERE w.worker = :worker
), candidates AS (
  SELECT s.client_id, s.callback_url, f.first_at,
         (b.client_id IS NOT NULL AND b.open_until IS NOT NULL) AS gated,
         COALESCE(q.quota, :perClient) AS quota
    FROM event_subscriptions s
    JOIN clients c ON c.client_id = s.client_id AND c.status = 'active'
    LEFT JOIN push_breakers b ON b.client_id = s.client_id AND b.callback_url = s.callback_url
    LEFT JOIN unnest(:quotaClients::text[], :quotas::int[]) AS q(client_id, quota)
      ON q.client_id = s.client_id
    CROSS JOIN LATERAL (
      SELECT d.push_next_at AS first_at
        FROM event_deliveries d
       WHERE d.client_id = s.client_id AND d.state = 'pending' AND d.push_state = 'due'
       ORDER BY d.push_next_at, d.jti
       LIMIT 1) f
   WHERE s.callback_url IS NOT NULL
     AND s.client_id <> ALL(:busy::text[])
     AND (b.client_id IS NULL
          OR (b.disabled_at IS NULL
              AND (b.open_until IS NULL
                   OR (b.open_until <= now() AND (b.probe_until IS NULL OR b.probe_until <= now())))))
     AND f.first_at <= now()
   ORDER BY f.first_at
   LIMIT :limit
), probes AS (
  UPDATE push_breakers b
     SET probe_until = now() + make_interval(secs => :leaseSeconds)
    FROM candidates k
   WHERE b.client_id = k.client_id AND k.gated AND b.disabled_at IS NULL
     AND b.open_until <= now() AND (b.probe_until IS NULL OR b.probe_until <= now())
  RETURNING b.client_id
), ready AS (
  SELECT k.client_id, k.callback_url, k.first_at, k.gated AS probe,
         CASE WHEN k.gated THEN 1 ELSE k.quota END AS quota
    FROM candidates k
   WHERE NOT k.gated OR k.client_id IN (SELECT client_id FROM probes)
), picked AS (
  SELECT p.jti, r.client_id, r.callback_url, r.first_at, r.probe,
         row_number() OVER (PARTITION BY r.client_id ORDER BY p.push_next_at, p.jti) AS rn
    FROM ready r
    CROSS JOIN LATERAL (
      SELECT d.jti, d.push_next_at
        FROM event_deliveries d
       WHERE d.client_id = r.client_id AND d.state = 'pending' AND d.push_state = 'due'
         AND d.push_next_at <= now()
         AND (d.leased_until IS NULL
              OR (d.leased_until <= now()
                  AND (d.leased_by IS NULL OR d.leased_by = :worker
                       OR ((SELECT warm FROM me)
                           AND NOT EXISTS (
                             SELECT 1 FROM push_workers w
                              WHERE w.worker = d.leased_by
                                AND w.seen_at > now() - make_interval(secs => :workerTimeout))))))
       ORDER BY d.push_next_at, d.jti
       LIMIT r.quota
         FOR UPDATE SKIP LOCKED) p
), chosen AS (
  SELECT * FROM picked ORDER BY rn, first_at, client_id LIMIT :limit
), claimed AS (
  UPDATE event_deliveries d
     SET leased_until = now() + make_interval(secs => :leaseSeconds), leased_by = :worker
    FROM chosen c
   WHERE d.jti = c.jti
  RETURNING d.jti, d.client_id, d.push_attempts, d.leased_until
)
SELECT cl.jti, cl.client_id, cl.push_attempts, cl.leased_until::text AS lease, c.callback_url,
       c.probe, e.created_at, e.set_jws
  FROM claimed cl
  JOIN chosen c ON c.jti = cl.jti
  JOIN events e ON e.jti = cl.jti
 ORDER BY cl.client_id, c.rn`;

export type AttemptOutcome = 'accepted' | 'rejected' | 'retry' | 'failed';

export interface AttemptRecord {
  jti: string;
  clientId: string;
  /** The attempt probed a half-open breaker. */
  probe: boolean;
  /** The answer says the endpoint is down (src/push/outcome.ts), not just this SET failed. */
  down: boolean;
  /** 429/503 with Retry-After: the endpoint asked for this long (ms) without requests. */
  retryAfterMs: number | null;
  /** The claim's lease (fencing token). */
  lease: string;
  outcome: AttemptOutcome;
  /** retry: the next attempt is this far from now. */
  delayMs: number | null;
  /** rejected: the TPP's error code and description (RFC 8935 §2.3), or ours. */
  err: string | null;
  errDescription: string | null;
  attempt: number;
  attemptedAt: Date;
  worker: string;
  callbackUrl: string;
  interactionId: string;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
}

/** How outcomes move an endpoint's breaker (README "Circuit breaker"); see push_breaker_record. */
export interface BreakerPolicy {
  /** PUSH_BREAKER_FAILURES: "down" answers in a row, and least failures in a window, to open. */
  failuresToOpen: number;
  windowSeconds: number;
  /** 0-1: the failure rate over a whole window that opens it. */
  failureRate: number;
  /** First cool-down (PUSH_RETRY_BASE_MS); it doubles with each failed probe... */
  baseMs: number;
  /** ...up to this (PUSH_BREAKER_OPEN_SECONDS). */
  maxOpenSeconds: number;
  /** 0: never disabled. */
  disableAfterSeconds: number;
}

export interface BreakerChange {
  clientId: string;
  change: 'opened' | 'reopened' | 'closed' | 'disabled';
  openUntil: Date | null;
  trips: number;
  reason: string | null;
}

/**
 * Outcomes of a batch of attempts, their attempt rows, and what they do to each endpoint's
 * breaker, in one statement.
 * - accepted (202) and rejected (400) resolve a SET that is still pending, whoever holds it now:
 *   the TPP has it. A SET a poller acknowledged meanwhile is left alone (state = 'pending' guard).
 * - retry and failed only touch a SET whose lease is still the one this attempt claimed (a
 *   replica that took it over after the lease decides instead); `retry` keeps push_state as it
 *   is (NULL when the CallbackUrl was dropped meanwhile); `failed` leaves the SET pending, for
 *   polling.
 * - per client, push_breaker_record (migrations/20261201110000_push_reliability.ts) counts the
 *   batch into the shared breaker row (only for endpoints that failed: healthy ones have none)
 *   and returns the changes (opened, reopened, closed, disabled).
 */
const RECORD_SQL = `
WITH o AS (
  SELECT * FROM jsonb_to_recordset(:rows::jsonb) AS o(
    jti uuid, client_id text, lease timestamptz, outcome text, delay_ms double precision,
    err text, err_description text, attempt integer, attempted_at timestamptz, worker text,
    callback_url text, interaction_id uuid, status_code integer, latency_ms integer, error text,
    probe boolean, down boolean, retry_after_ms double precision)
), updated AS (
  UPDATE event_deliveries d
     SET push_attempts = d.push_attempts + 1,
         leased_until = NULL,
         leased_by = NULL,
         state = CASE o.outcome WHEN 'accepted' THEN 'acknowledged' WHEN 'rejected' THEN 'errored' ELSE d.state END,
         resolved_at = CASE WHEN o.outcome IN ('accepted', 'rejected') THEN now() ELSE d.resolved_at END,
         resolution = CASE o.outcome WHEN 'accepted' THEN 'push_accepted' WHEN 'rejected' THEN 'push_rejected' ELSE d.resolution END,
         push_state = CASE
           WHEN o.outcome = 'accepted' THEN 'delivered'
           WHEN o.outcome = 'rejected' THEN 'rejected'
           WHEN o.outcome = 'failed' AND d.push_state = 'due' THEN 'failed'
           ELSE d.push_state END,
         push_next_at = CASE WHEN o.outcome = 'retry' AND d.push_state = 'due'
           THEN now() + make_interval(secs => o.delay_ms / 1000.0) END,
         err = CASE WHEN o.outcome = 'rejected' THEN o.err ELSE d.err END,
         err_description = CASE WHEN o.outcome = 'rejected' THEN o.err_description ELSE d.err_description END
    FROM o
   WHERE d.jti = o.jti AND d.state = 'pending'
     AND (o.outcome IN ('accepted', 'rejected') OR d.leased_until = o.lease)
  RETURNING d.jti
), recorded AS (
  INSERT INTO push_attempts (jti, attempt, attempted_at, worker, callback_url, interaction_id,
                             status_code, latency_ms, outcome, error)
  SELECT o.jti, o.attempt, o.attempted_at, o.worker, o.callback_url, o.interaction_id,
         o.status_code, o.latency_ms, o.outcome, o.error
    FROM o JOIN events e ON e.jti = o.jti
  RETURNING 1
), last_up AS (
  SELECT o.client_id, max(o.attempted_at) FILTER (WHERE NOT o.down) AS at
    FROM o GROUP BY o.client_id
), agg AS MATERIALIZED (
  SELECT o.client_id, max(o.callback_url) AS callback_url, count(*)::int AS attempts,
         count(*) FILTER (WHERE o.outcome IN ('accepted', 'rejected'))::int AS ok,
         count(*) FILTER (WHERE o.outcome IN ('retry', 'failed'))::int AS failures,
         count(*) FILTER (WHERE o.down)::int AS downs,
         -- "down" answers after the last other answer of the batch: the streak goes on
         count(*) FILTER (WHERE o.down AND (u.at IS NULL OR o.attempted_at > u.at))::int
           AS trailing_downs,
         bool_or(o.probe) AS probe,
         max(o.retry_after_ms) AS retry_after_ms,
         (array_agg(o.error ORDER BY o.attempted_at DESC)
            FILTER (WHERE o.outcome IN ('retry', 'failed')))[1] AS error
    FROM o JOIN last_up u ON u.client_id = o.client_id
   GROUP BY o.client_id
), judged AS MATERIALIZED (
  SELECT * FROM agg a
   WHERE EXISTS (SELECT 1 FROM clients c WHERE c.client_id = a.client_id)
     AND (a.failures > 0 OR EXISTS (SELECT 1 FROM push_breakers b WHERE b.client_id = a.client_id))
   ORDER BY a.client_id -- breaker rows locked in one order by every writer: no deadlock
), changes AS (
  SELECT j.client_id, r.change, r.open_until, r.trips, r.reason
    FROM judged j
   CROSS JOIN LATERAL push_breaker_record(
     j.client_id, j.callback_url, j.attempts, j.ok, j.failures, j.downs, j.trailing_downs,
     j.probe, j.retry_after_ms, j.error, :failuresToOpen::int, :windowSeconds::float8,
     :failureRate::float8, :baseMs::float8, :maxOpenSeconds::float8,
     :disableAfterSeconds::float8) r
)
SELECT (SELECT count(*) FROM updated) AS updated, (SELECT count(*) FROM recorded) AS recorded,
       (SELECT COALESCE(json_agg(changes), '[]'::json) FROM changes) AS changes`;

/** What operators filter deliveries by (README "Real-time push"). */
export const DELIVERY_STATES = [
  'pending',
  'failed',
  'delivered',
  'rejected',
  'acknowledged',
  'errored',
] as const;
export type DeliveryStateFilter = (typeof DELIVERY_STATES)[number];

/** The condition behind each filter, over event_deliveries d. */
const STATE_CONDITION: Record<DeliveryStateFilter, string> = {
  // A push is scheduled or in flight.
  pending: `d.state = 'pending' AND d.push_state = 'due'`,
  // Push gave up (attempts or age exhausted); the SET is still pending, for polling.
  failed: `d.state = 'pending' AND d.push_state = 'failed'`,
  // The TPP answered 202.
  delivered: `d.push_state = 'delivered'`,
  // The TPP answered 400.
  rejected: `d.push_state = 'rejected'`,
  // Resolved positively: a poll ack or a push 202.
  acknowledged: `d.state = 'acknowledged'`,
  // Resolved negatively: a setErrs entry or a push 400.
  errored: `d.state = 'errored'`,
};

export interface DeliveryFilter {
  clientId?: string | undefined;
  /** Absent: pending and failed (what needs watching). */
  state?: DeliveryStateFilter | undefined;
  limit: number;
  /** Paging: deliveries after this jti (creation order). */
  after?: string | undefined;
}

export interface DeliveryView {
  jti: string;
  clientId: string;
  state: string;
  pushState: string | null;
  pushAttempts: number;
  nextAttemptAt: string | null;
  leasedUntil: string | null;
  createdAt: string;
  resolvedAt: string | null;
  resolution: string | null;
  err: string | null;
  errDescription: string | null;
  lastAttempt: {
    attempt: number;
    at: string;
    statusCode: number | null;
    outcome: string;
    latencyMs: number;
    error: string | null;
    interactionId: string;
    callbackUrl: string;
  } | null;
  /** The client's endpoint is backed off until then (circuit breaker open). */
  breakerOpenUntil: string | null;
}

interface DeliveryRow {
  jti: string;
  client_id: string;
  state: string;
  push_state: string | null;
  push_attempts: number;
  push_next_at: Date | null;
  leased_until: Date | null;
  created_at: Date;
  resolved_at: Date | null;
  resolution: string | null;
  err: string | null;
  err_description: string | null;
  a_attempt: number | null;
  a_at: Date | null;
  a_status: number | null;
  a_outcome: string | null;
  a_latency: number | null;
  a_error: string | null;
  a_interaction: string | null;
  a_url: string | null;
  breaker_open_until: Date | null;
}

export type RetryResult =
  | { ok: true; clientId: string }
  | {
      ok: false;
      reason: 'not_found' | 'not_pending' | 'no_callback' | 'disabled';
      message: string;
    };

/** A TPP endpoint's push health, for operators (`push endpoints`, GET /admin/v1/push/endpoints). */
export interface EndpointView {
  clientId: string;
  callbackUrl: string;
  /** closed: pushing; open: backed off until openUntil; half-open: probing; disabled: off. */
  state: 'closed' | 'open' | 'half-open' | 'disabled';
  openUntil: string | null;
  probeInFlight: boolean;
  /** Openings in a row. */
  trips: number;
  /** First failure since the last success (null: the last attempt succeeded). */
  failingSince: string | null;
  lastSuccessAt: string | null;
  disabledAt: string | null;
  lastError: string | null;
}

export class PushStore {
  private constructor(private readonly knex: Knex | Knex.Transaction) {}

  static create(knex: Knex): PushStore {
    return new PushStore(knex);
  }

  in(trx: Knex.Transaction): PushStore {
    return new PushStore(trx);
  }

  async claim(req: ClaimRequest): Promise<ClaimedSet[]> {
    if (req.limit <= 0) return [];
    const { rows } = await this.knex.raw<{
      rows: {
        jti: string;
        client_id: string;
        push_attempts: number;
        lease: string;
        callback_url: string;
        probe: boolean;
        created_at: Date;
        set_jws: string;
      }[];
    }>(CLAIM_SQL, {
      limit: req.limit,
      perClient: req.perClient,
      busy: req.busy,
      quotaClients: [...req.quotas.keys()],
      quotas: [...req.quotas.values()],
      leaseSeconds: req.leaseSeconds,
      worker: req.worker,
      workerTimeout: req.workerTimeoutSeconds,
    });
    return rows.map((r) => ({
      jti: r.jti,
      clientId: r.client_id,
      attempts: r.push_attempts,
      lease: r.lease,
      callbackUrl: r.callback_url,
      probe: r.probe,
      createdAt: r.created_at,
      setJws: r.set_jws,
    }));
  }

  /**
   * Applies outcomes, writes attempt rows and moves the endpoints' breakers; returns how many
   * SETs changed and the breaker changes.
   */
  async record(
    records: AttemptRecord[],
    policy: BreakerPolicy,
  ): Promise<{ updated: number; changes: BreakerChange[] }> {
    if (records.length === 0) return { updated: 0, changes: [] };
    const rows = records.map((r) => ({
      jti: r.jti,
      client_id: r.clientId,
      lease: r.lease,
      outcome: r.outcome,
      delay_ms: r.delayMs,
      err: r.err,
      err_description: r.errDescription,
      attempt: r.attempt,
      attempted_at: r.attemptedAt.toISOString(),
      worker: r.worker,
      callback_url: r.callbackUrl,
      interaction_id: r.interactionId,
      status_code: r.statusCode,
      latency_ms: Math.max(0, Math.round(r.latencyMs)),
      error: r.error,
      probe: r.probe,
      down: r.down,
      retry_after_ms: r.retryAfterMs,
    }));
    const { rows: out } = await this.knex.raw<{
      rows: {
        updated: number;
        changes: {
          client_id: string;
          change: BreakerChange['change'];
          open_until: string | null;
          trips: number;
          reason: string | null;
        }[];
      }[];
    }>(RECORD_SQL, {
      rows: JSON.stringify(rows),
      failuresToOpen: policy.failuresToOpen,
      windowSeconds: policy.windowSeconds,
      failureRate: policy.failureRate,
      baseMs: policy.baseMs,
      maxOpenSeconds: policy.maxOpenSeconds,
      disableAfterSeconds: policy.disableAfterSeconds,
    });
    const row = out[0];
    return {
      updated: Number(row?.updated ?? 0),
      changes: (row?.changes ?? []).map((c) => ({
        clientId: c.client_id,
        change: c.change,
        openUntil: c.open_until ? new Date(c.open_until) : null,
        trips: c.trips,
        reason: c.reason,
      })),
    };
  }

  /**
   * A push worker's heartbeat. `connected_since` starts again after a gap of more than
   * `gapSeconds` (the database, or this worker, was away): see CLAIM_SQL.
   */
  async heartbeat(worker: string, gapSeconds: number): Promise<void> {
    await this.knex.raw(
      `INSERT INTO push_workers (worker, seen_at, connected_since) VALUES (:worker, now(), now())
       ON CONFLICT (worker) DO UPDATE
          SET seen_at = now(),
              connected_since = CASE
                WHEN push_workers.seen_at < now() - make_interval(secs => :gap) THEN now()
                ELSE push_workers.connected_since END`,
      { worker, gap: gapSeconds },
    );
  }

  /** A worker that stopped cleanly (nothing held) leaves; old rows of vanished ones go too. */
  async removeWorker(worker: string): Promise<void> {
    await this.knex.raw(
      `DELETE FROM push_workers WHERE worker = :worker OR seen_at < now() - interval '1 day'`,
      { worker },
    );
  }

  /** SETs claimed but never attempted (shutdown): due again at once, for any replica. */
  async release(sets: { jti: string; lease: string }[]): Promise<void> {
    if (sets.length === 0) return;
    await this.knex.raw(
      `UPDATE event_deliveries d
          SET leased_until = NULL, leased_by = NULL
         FROM unnest(:jtis::uuid[], :leases::timestamptz[]) AS r(jti, lease)
        WHERE d.jti = r.jti AND d.leased_until = r.lease AND d.state = 'pending'
          AND d.push_state = 'due'`,
      { jtis: sets.map((s) => s.jti), leases: sets.map((s) => s.lease) },
    );
  }

  /**
   * An operator enables push to a client again (after it was disabled for failing too long, or
   * to close an open breaker): its breaker row goes, so it is judged afresh, and its due SETs
   * are due now. Returns whether the client exists and whether push was disabled.
   */
  async enable(clientId: string): Promise<{ found: boolean; wasDisabled: boolean }> {
    const { rows } = await this.knex.raw<{
      rows: { found: boolean; was_disabled: boolean }[];
    }>(
      `WITH gone AS (
         DELETE FROM push_breakers WHERE client_id = :clientId RETURNING disabled_at
       ), due AS (
         UPDATE event_deliveries
            SET push_next_at = now()
          WHERE client_id = :clientId AND state = 'pending' AND push_state = 'due'
            AND push_next_at > now() AND EXISTS (SELECT 1 FROM gone)
       )
       SELECT EXISTS (SELECT 1 FROM clients WHERE client_id = :clientId) AS found,
              EXISTS (SELECT 1 FROM gone WHERE disabled_at IS NOT NULL) AS was_disabled`,
      { clientId },
    );
    return { found: rows[0]!.found, wasDisabled: rows[0]!.was_disabled };
  }

  /** Endpoints that failed lately: breaker state and whether push is disabled (operators). */
  async endpoints(clientId?: string): Promise<EndpointView[]> {
    const { rows } = await this.knex.raw<{ rows: Record<string, unknown>[] }>(
      `SELECT b.*, now() AS now FROM push_breakers b
        WHERE (:clientId::text IS NULL OR b.client_id = :clientId::text)
        ORDER BY b.client_id`,
      { clientId: clientId ?? null },
    );
    return rows.map((r) => {
      const now = (r.now as Date).getTime();
      const openUntil = r.open_until as Date | null;
      const probeUntil = r.probe_until as Date | null;
      const state: EndpointView['state'] = r.disabled_at
        ? 'disabled'
        : !openUntil
          ? 'closed'
          : openUntil.getTime() > now
            ? 'open'
            : 'half-open';
      return {
        clientId: r.client_id as string,
        callbackUrl: r.callback_url as string,
        state,
        openUntil: iso(openUntil),
        probeInFlight: state === 'half-open' && !!probeUntil && probeUntil.getTime() > now,
        trips: r.trips as number,
        failingSince: iso(r.failing_since as Date | null),
        lastSuccessAt: iso(r.last_success_at as Date | null),
        disabledAt: iso(r.disabled_at as Date | null),
        lastError: r.last_error as string | null,
      };
    });
  }

  /**
   * Safety net: SETs still due for a client without a CallbackUrl (or without a subscription)
   * are no longer pushed; they stay pending for polling. Returns how many.
   */
  async stopOrphanedPushes(): Promise<number> {
    const { rowCount } = await this.knex.raw<{ rowCount: number }>(
      `UPDATE event_deliveries d
          SET push_state = NULL, push_next_at = NULL
        WHERE d.state = 'pending' AND d.push_state = 'due'
          AND (d.leased_until IS NULL OR d.leased_until <= now())
          AND NOT EXISTS (SELECT 1 FROM event_subscriptions s
                           WHERE s.client_id = d.client_id AND s.callback_url IS NOT NULL)`,
    );
    return rowCount;
  }

  /** Deliveries for operators, in creation order, with the last attempt and breaker state. */
  async list(filter: DeliveryFilter): Promise<DeliveryView[]> {
    const condition = filter.state
      ? STATE_CONDITION[filter.state]
      : `d.state = 'pending' AND d.push_state IN ('due', 'failed')`;
    const { rows } = await this.knex.raw<{ rows: DeliveryRow[] }>(
      `SELECT d.jti, d.client_id, d.state, d.push_state, d.push_attempts, d.push_next_at,
              d.leased_until, e.created_at, d.resolved_at, d.resolution, d.err, d.err_description,
              a.attempt AS a_attempt, a.attempted_at AS a_at, a.status_code AS a_status,
              a.outcome AS a_outcome, a.latency_ms AS a_latency, a.error AS a_error,
              a.interaction_id AS a_interaction, a.callback_url AS a_url,
              b.open_until AS breaker_open_until
         FROM event_deliveries d
         JOIN events e ON e.jti = d.jti
         LEFT JOIN LATERAL (
           SELECT * FROM push_attempts pa WHERE pa.jti = d.jti ORDER BY pa.id DESC LIMIT 1) a ON true
         LEFT JOIN push_breakers b ON b.client_id = d.client_id AND b.open_until > now()
        WHERE ${condition}
          AND (:clientId::text IS NULL OR d.client_id = :clientId::text)
          AND (:after::uuid IS NULL OR d.jti > :after::uuid)
        ORDER BY d.jti
        LIMIT :limit`,
      { clientId: filter.clientId ?? null, after: filter.after ?? null, limit: filter.limit },
    );
    return rows.map(toView);
  }

  /**
   * An operator's "push it again now": a pending SET whose client has a CallbackUrl becomes due
   * at once with a fresh series of attempts, and the client's breaker closes. A SET held by an
   * attempt or a poll right now keeps its lease (it is claimed once that ends).
   */
  async retry(jti: string): Promise<RetryResult> {
    const { rows } = await this.knex.raw<{
      rows: {
        client_id: string;
        state: string;
        callback_url: string | null;
        disabled: boolean;
        updated: boolean;
      }[];
    }>(
      `WITH target AS (
         SELECT d.jti, d.client_id, d.state, s.callback_url,
                (b.disabled_at IS NOT NULL) AS disabled
           FROM event_deliveries d
           LEFT JOIN event_subscriptions s ON s.client_id = d.client_id
           LEFT JOIN push_breakers b ON b.client_id = d.client_id
                                    AND b.callback_url = s.callback_url
          WHERE d.jti = :jti
            FOR UPDATE OF d
       ), updated AS (
         UPDATE event_deliveries d
            SET push_state = 'due', push_next_at = now(), push_attempts = 0
           FROM target t
          WHERE d.jti = t.jti AND t.state = 'pending' AND t.callback_url IS NOT NULL
            AND NOT t.disabled
         RETURNING d.jti
       ), closed AS (
         DELETE FROM push_breakers b
          USING target t
          WHERE b.client_id = t.client_id AND t.state = 'pending' AND t.callback_url IS NOT NULL
            AND NOT t.disabled
       )
       SELECT t.client_id, t.state, t.callback_url, t.disabled,
              EXISTS (SELECT 1 FROM updated) AS updated
         FROM target t`,
      { jti },
    );
    const row = rows[0];
    if (!row) return { ok: false, reason: 'not_found', message: `no SET with jti ${jti}` };
    if (row.state !== 'pending') {
      return {
        ok: false,
        reason: 'not_pending',
        message: `SET ${jti} is ${row.state}, not pending: there is nothing to retry`,
      };
    }
    if (!row.callback_url) {
      return {
        ok: false,
        reason: 'no_callback',
        message: `client ${row.client_id} has no CallbackUrl: SET ${jti} can only be polled`,
      };
    }
    if (row.disabled) {
      return {
        ok: false,
        reason: 'disabled',
        message: `push to client ${row.client_id} is disabled after failing for long: enable it first (push enable ${row.client_id})`,
      };
    }
    return { ok: true, clientId: row.client_id };
  }
}

function iso(d: Date | null): string | null {
  return d ? d.toISOString() : null;
}

function toView(r: DeliveryRow): DeliveryView {
  return {
    jti: r.jti,
    clientId: r.client_id,
    state: r.state,
    pushState: r.push_state,
    pushAttempts: r.push_attempts,
    nextAttemptAt: r.push_state === 'due' ? iso(r.push_next_at) : null,
    leasedUntil: iso(r.leased_until),
    createdAt: r.created_at.toISOString(),
    resolvedAt: iso(r.resolved_at),
    resolution: r.resolution,
    err: r.err,
    errDescription: r.err_description,
    lastAttempt:
      r.a_attempt !== null && r.a_at !== null
        ? {
            attempt: r.a_attempt,
            at: r.a_at.toISOString(),
            statusCode: r.a_status,
            outcome: r.a_outcome!,
            latencyMs: r.a_latency!,
            error: r.a_error,
            interactionId: r.a_interaction!,
            callbackUrl: r.a_url!,
          }
        : null,
    breakerOpenUntil: iso(r.breaker_open_until),
  };
}
