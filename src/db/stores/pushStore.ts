// Push delivery state: claiming due SETs, recording attempt outcomes, the shared circuit breakers,
// and what operators see and do. The hot statements are raw SQL with named bindings, one round
// trip each; every one is a single autocommit statement, so row locks last no longer than it.
//
// Columns of event_deliveries this store writes (see migrations/20261123000001_initial.ts):
//   push_state    NULL (no push) | due | delivered (202) | rejected (400) | failed (gave up)
//   push_next_at  earliest next attempt (left alone by claims: see CLAIM_SQL)
//   leased_until  held by a poll or a push attempt until then (neither takes a held SET)
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
  /** Lease of a claimed SET: no poll or push takes it before then. */
  leaseSeconds: number;
  /** A half-open breaker's probe holds the breaker for this long. */
  probeSeconds: number;
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
 * (one row per TPP) and, for each client not busy and not behind an open breaker, takes its
 * oldest due SETs from event_deliveries_push_due_idx (client_id, push_next_at, jti) with
 * FOR UPDATE SKIP LOCKED, so replicas split the work and a client with a deep backlog is never
 * scanned past by the others. Clients are served oldest-waiting first and round-robin
 * (every client's first SET before anyone's second) up to `limit`. Rows locked but not chosen
 * are released when the statement commits.
 *
 * A claimed SET gets `leased_until` = now() + lease and nothing else: pollers and other
 * claims skip it, and if this replica dies it is due again by itself when the lease ends. Only
 * `leased_until`, which no index holds, changes, so Postgres updates the row in place (a HOT
 * update: no index entries written), which is most of the cost of a claim. A half-open breaker lets one SET
 * through and is moved on by probeSeconds while the probe is in flight. Revoked clients get no
 * pushes. The CallbackUrl is the subscription's current one.
 */
const CLAIM_SQL = `
WITH ready AS (
  SELECT s.client_id, s.callback_url, f.first_at,
         (b.client_id IS NOT NULL) AS probe,
         CASE WHEN b.client_id IS NOT NULL THEN 1 ELSE COALESCE(q.quota, :perClient) END AS quota
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
     AND (b.open_until IS NULL OR b.open_until <= now())
     AND f.first_at <= now()
   ORDER BY f.first_at
   LIMIT :limit
), picked AS (
  SELECT p.jti, r.client_id, r.callback_url, r.first_at, r.probe,
         row_number() OVER (PARTITION BY r.client_id ORDER BY p.push_next_at, p.jti) AS rn
    FROM ready r
    CROSS JOIN LATERAL (
      SELECT d.jti, d.push_next_at
        FROM event_deliveries d
       WHERE d.client_id = r.client_id AND d.state = 'pending' AND d.push_state = 'due'
         AND d.push_next_at <= now()
         AND (d.leased_until IS NULL OR d.leased_until <= now())
       ORDER BY d.push_next_at, d.jti
       LIMIT r.quota
         FOR UPDATE SKIP LOCKED) p
), chosen AS (
  SELECT * FROM picked ORDER BY rn, first_at, client_id LIMIT :limit
), claimed AS (
  UPDATE event_deliveries d
     SET leased_until = now() + make_interval(secs => :leaseSeconds)
    FROM chosen c
   WHERE d.jti = c.jti
  RETURNING d.jti, d.client_id, d.push_attempts, d.leased_until
), probing AS (
  UPDATE push_breakers b
     SET open_until = now() + make_interval(secs => :probeSeconds)
   WHERE b.client_id IN (SELECT client_id FROM chosen WHERE probe)
  RETURNING b.client_id
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

/**
 * Outcomes of a batch of attempts, and their attempt rows, in one statement.
 * - accepted (202) and rejected (400) resolve a SET that is still pending, whoever holds it now:
 *   the TPP has it. A SET a poller acknowledged meanwhile is left alone (state = 'pending' guard).
 * - retry and failed only touch a SET whose lease is still the one this attempt claimed (a
 *   replica that took it over after the lease decides instead); `retry` keeps push_state as it
 *   is (NULL when the CallbackUrl was dropped meanwhile); `failed` leaves the SET pending, for
 *   polling.
 */
const RECORD_SQL = `
WITH o AS (
  SELECT * FROM jsonb_to_recordset(:rows::jsonb) AS o(
    jti uuid, lease timestamptz, outcome text, delay_ms double precision, err text,
    err_description text, attempt integer, attempted_at timestamptz, worker text,
    callback_url text, interaction_id uuid, status_code integer, latency_ms integer, error text)
), updated AS (
  UPDATE event_deliveries d
     SET push_attempts = d.push_attempts + 1,
         leased_until = NULL,
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
)
SELECT (SELECT count(*) FROM updated) AS updated, (SELECT count(*) FROM recorded) AS recorded`;

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
  | { ok: false; reason: 'not_found' | 'not_pending' | 'no_callback'; message: string };

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
      probeSeconds: req.probeSeconds,
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

  /** Applies outcomes and writes attempt rows; returns how many SETs changed. */
  async record(records: AttemptRecord[]): Promise<number> {
    if (records.length === 0) return 0;
    const rows = records.map((r) => ({
      jti: r.jti,
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
    }));
    const { rows: out } = await this.knex.raw<{ rows: { updated: number }[] }>(RECORD_SQL, {
      rows: JSON.stringify(rows),
    });
    return out[0]?.updated ?? 0;
  }

  /** SETs claimed but never attempted (shutdown): due again at once, for any replica. */
  async release(sets: { jti: string; lease: string }[]): Promise<void> {
    if (sets.length === 0) return;
    await this.knex.raw(
      `UPDATE event_deliveries d
          SET leased_until = NULL
         FROM unnest(:jtis::uuid[], :leases::timestamptz[]) AS r(jti, lease)
        WHERE d.jti = r.jti AND d.leased_until = r.lease AND d.state = 'pending'
          AND d.push_state = 'due'`,
      { jtis: sets.map((s) => s.jti), leases: sets.map((s) => s.lease) },
    );
  }

  /** Opens (or re-opens) the client's breaker; returns until when. */
  async openBreaker(
    clientId: string,
    callbackUrl: string,
    openSeconds: number,
    error: string | null,
  ): Promise<Date> {
    const { rows } = await this.knex.raw<{ rows: { open_until: Date }[] }>(
      `INSERT INTO push_breakers (client_id, callback_url, open_until, last_error)
       VALUES (:clientId, :callbackUrl, now() + make_interval(secs => :openSeconds), :error)
       ON CONFLICT (client_id) DO UPDATE
          SET open_until = EXCLUDED.open_until,
              last_error = EXCLUDED.last_error,
              trips = CASE WHEN push_breakers.callback_url = EXCLUDED.callback_url
                           THEN push_breakers.trips + 1 ELSE 1 END,
              opened_at = CASE WHEN push_breakers.callback_url = EXCLUDED.callback_url
                               THEN push_breakers.opened_at ELSE now() END,
              callback_url = EXCLUDED.callback_url
       RETURNING open_until`,
      { clientId, callbackUrl, openSeconds, error: error?.slice(0, 2000) ?? null },
    );
    return rows[0]!.open_until;
  }

  /** Closes the client's breaker; true if one was open or half-open. */
  async closeBreaker(clientId: string): Promise<boolean> {
    const { rowCount } = await this.knex.raw<{ rowCount: number }>(
      `DELETE FROM push_breakers WHERE client_id = :clientId`,
      { clientId },
    );
    return rowCount > 0;
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
      rows: { client_id: string; state: string; callback_url: string | null; updated: boolean }[];
    }>(
      `WITH target AS (
         SELECT d.jti, d.client_id, d.state, s.callback_url
           FROM event_deliveries d
           LEFT JOIN event_subscriptions s ON s.client_id = d.client_id
          WHERE d.jti = :jti
            FOR UPDATE OF d
       ), updated AS (
         UPDATE event_deliveries d
            SET push_state = 'due', push_next_at = now(), push_attempts = 0
           FROM target t
          WHERE d.jti = t.jti AND t.state = 'pending' AND t.callback_url IS NOT NULL
         RETURNING d.jti
       ), closed AS (
         DELETE FROM push_breakers b
          USING target t
          WHERE b.client_id = t.client_id AND t.state = 'pending' AND t.callback_url IS NOT NULL
       )
       SELECT t.client_id, t.state, t.callback_url, EXISTS (SELECT 1 FROM updated) AS updated
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
    return { ok: true, clientId: row.client_id };
  }

  /** The attempts of one SET, oldest first (tests and operators). */
  async attempts(jti: string): Promise<
    {
      attempt: number;
      attemptedAt: Date;
      worker: string;
      interactionId: string;
      statusCode: number | null;
      latencyMs: number;
      outcome: AttemptOutcome;
      error: string | null;
    }[]
  > {
    const rows = await this.knex('push_attempts').where({ jti }).orderBy('id');
    return rows.map((r: Record<string, unknown>) => ({
      attempt: r.attempt as number,
      attemptedAt: r.attempted_at as Date,
      worker: r.worker as string,
      interactionId: r.interaction_id as string,
      statusCode: r.status_code as number | null,
      latencyMs: r.latency_ms as number,
      outcome: r.outcome as AttemptOutcome,
      error: r.error as string | null,
    }));
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
