// What operators read and do after the fact: the delivery history of SETs (push attempts and
// poll hand-outs), replay (one SET, or a TPP's SETs since a time), dead letters (pushes that gave
// up, SETs the TPP rejected) and the audit trail of those actions. Every action and its audit row
// are written in one transaction (see src/domain/operations.ts).
//
// A SET's jti is a UUIDv7: its first 48 bits are the creation time in milliseconds, so "since T"
// is a range of jtis, served by events_client_jti_idx (client_id, jti).
import type { Knex } from 'knex';

export interface AttemptView {
  attempt: number;
  at: string;
  worker: string;
  callbackUrl: string;
  interactionId: string;
  statusCode: number | null;
  latencyMs: number;
  outcome: string;
  error: string | null;
}

export interface HandoutView {
  at: string;
  leaseUntil: string;
  replica: string;
}

export interface SetSummary {
  jti: string;
  clientId: string;
  eventTypes: string[];
  subjectId: string;
  subjectType: string;
  createdAt: string;
  state: string;
  pushState: string | null;
  pushAttempts: number;
  pollCount: number;
  replays: number;
  resolvedAt: string | null;
  resolution: string | null;
  err: string | null;
  errDescription: string | null;
}

export interface SetHistory extends SetSummary {
  pushes: AttemptView[];
  polls: HandoutView[];
}

export interface ClientOverview {
  clientId: string;
  name: string;
  status: string;
  subscription: { callbackUrl: string | null; version: string; eventTypes: string[] | null } | null;
  backlog: number;
  oldestPendingAt: string | null;
  lastHandoutAt: string | null;
  pushDue: number;
  pushFailed: number;
  breaker: { openUntil: string; trips: number; lastError: string | null } | null;
}

export type DeadLetterKind = 'push_failed' | 'rejected';

export interface DeadLetter extends SetSummary {
  kind: DeadLetterKind;
  lastError: string | null;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  via: 'cli' | 'admin_api' | 'console';
  action: string;
  clientId: string | null;
  jti: string | null;
  detail: Record<string, unknown>;
}

export type NewAuditEntry = Omit<AuditEntry, 'id' | 'at'>;

/** The smallest UUIDv7 of a millisecond: every jti created at or after `at` is ≥ it. */
export function jtiFloor(at: Date): string {
  const hex = Math.max(0, Math.floor(at.getTime())).toString(16).padStart(12, '0').slice(-12);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** Which resolved or stuck SETs count as dead letters, over event_deliveries d. */
const DEAD_LETTER = `((d.state = 'pending' AND d.push_state = 'failed') OR d.state = 'errored')`;

const SUMMARY_COLUMNS = `
  e.jti, e.client_id, e.event_types, e.subject_id, e.subject_type, e.created_at,
  d.state, d.push_state, d.push_attempts, d.poll_count, d.replays, d.resolved_at, d.resolution,
  d.err, d.err_description`;

interface SummaryRow {
  jti: string;
  client_id: string;
  event_types: string[];
  subject_id: string;
  subject_type: string;
  created_at: Date;
  state: string;
  push_state: string | null;
  push_attempts: number;
  poll_count: number;
  replays: number;
  resolved_at: Date | null;
  resolution: string | null;
  err: string | null;
  err_description: string | null;
}

export interface ReplayOneResult {
  found: boolean;
  clientId?: string;
  clientActive?: boolean;
  /** The state before: what the audit records. */
  previous?: { state: string; pushState: string | null; resolution: string | null };
  /** replayed: made pending again; rearmed: pending with a failed push, now due again. */
  outcome?: 'replayed' | 'rearmed' | 'already_pending';
  push?: boolean;
}

export interface ReplaySinceResult {
  replayed: number;
  rearmed: number;
  /** More SETs since T wait to be replayed than `limit` allowed: run it again. */
  more: boolean;
}

export class OperationsStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): OperationsStore {
    return new OperationsStore(knex);
  }

  in(trx: Knex.Transaction): OperationsStore {
    return new OperationsStore(trx);
  }

  async summary(jti: string): Promise<SetSummary | undefined> {
    const { rows } = await this.knex.raw<{ rows: SummaryRow[] }>(
      `SELECT ${SUMMARY_COLUMNS} FROM events e JOIN event_deliveries d ON d.jti = e.jti
        WHERE e.jti = :jti`,
      { jti },
    );
    return rows[0] ? toSummary(rows[0]) : undefined;
  }

  /** One SET with its push attempts and poll hand-outs, oldest first. */
  async history(jti: string): Promise<SetHistory | undefined> {
    const summary = await this.summary(jti);
    if (!summary) return undefined;
    const [pushes, polls] = await this.attemptsAndHandouts([jti]);
    return { ...summary, pushes: pushes.get(jti) ?? [], polls: polls.get(jti) ?? [] };
  }

  /**
   * A TPP's SETs, newest first, each with its history: created in [from, to), after the
   * cursor `before` (a jti), filtered by state or subject. At most `limit`.
   */
  async setsOfClient(f: {
    clientId?: string;
    from?: Date;
    to?: Date;
    before?: string;
    subjectId?: string;
    state?: string;
    limit: number;
    withHistory: boolean;
  }): Promise<SetHistory[]> {
    const { rows } = await this.knex.raw<{ rows: SummaryRow[] }>(
      `SELECT ${SUMMARY_COLUMNS} FROM events e JOIN event_deliveries d ON d.jti = e.jti
        WHERE (:clientId::text IS NULL OR e.client_id = :clientId::text)
          AND (:from::uuid IS NULL OR e.jti >= :from::uuid)
          AND (:to::uuid IS NULL OR e.jti < :to::uuid)
          AND (:before::uuid IS NULL OR e.jti < :before::uuid)
          AND (:subjectId::text IS NULL OR e.subject_id = :subjectId::text)
          AND (:state::text IS NULL OR d.state = :state::text)
        ORDER BY e.jti DESC
        LIMIT :limit`,
      {
        clientId: f.clientId ?? null,
        from: f.from ? jtiFloor(f.from) : null,
        to: f.to ? jtiFloor(f.to) : null,
        before: f.before ?? null,
        subjectId: f.subjectId ?? null,
        state: f.state ?? null,
        limit: f.limit,
      },
    );
    const sets = rows.map(toSummary);
    if (!f.withHistory) return sets.map((s) => ({ ...s, pushes: [], polls: [] }));
    const [pushes, polls] = await this.attemptsAndHandouts(sets.map((s) => s.jti));
    return sets.map((s) => ({
      ...s,
      pushes: pushes.get(s.jti) ?? [],
      polls: polls.get(s.jti) ?? [],
    }));
  }

  private async attemptsAndHandouts(
    jtis: string[],
  ): Promise<[Map<string, AttemptView[]>, Map<string, HandoutView[]>]> {
    const pushes = new Map<string, AttemptView[]>();
    const polls = new Map<string, HandoutView[]>();
    if (jtis.length === 0) return [pushes, polls];
    const [attemptRows, handoutRows] = await Promise.all([
      this.knex('push_attempts').whereIn('jti', jtis).orderBy(['jti', 'id']),
      this.knex('poll_handouts').whereIn('jti', jtis).orderBy(['jti', 'id']),
    ]);
    for (const r of attemptRows as Record<string, unknown>[]) {
      const list = pushes.get(r.jti as string) ?? [];
      list.push({
        attempt: r.attempt as number,
        at: (r.attempted_at as Date).toISOString(),
        worker: r.worker as string,
        callbackUrl: r.callback_url as string,
        interactionId: r.interaction_id as string,
        statusCode: r.status_code as number | null,
        latencyMs: r.latency_ms as number,
        outcome: r.outcome as string,
        error: r.error as string | null,
      });
      pushes.set(r.jti as string, list);
    }
    for (const r of handoutRows as Record<string, unknown>[]) {
      const list = polls.get(r.jti as string) ?? [];
      list.push({
        at: (r.handed_out_at as Date).toISOString(),
        leaseUntil: (r.lease_until as Date).toISOString(),
        replica: r.replica as string,
      });
      polls.set(r.jti as string, list);
    }
    return [pushes, polls];
  }

  /**
   * Makes one SET pending again, same row, same bytes: its state, resolution and error are
   * cleared, its push (when the TPP has a CallbackUrl) is due now with a fresh series of
   * attempts. A pending SET whose push gave up is only re-armed; any other pending SET is left
   * as it is (replaying twice makes no second piece of work). The SET's history is trimmed to
   * the newest `keep` attempts and hand-outs, so repeated replays stay bounded.
   */
  async replayOne(jti: string, keep: number): Promise<ReplayOneResult> {
    const { rows } = await this.knex.raw<{
      rows: {
        client_id: string;
        client_status: string;
        state: string;
        push_state: string | null;
        resolution: string | null;
        callback_url: string | null;
        outcome: 'replayed' | 'rearmed' | 'already_pending' | null;
      }[];
    }>(
      `WITH target AS (
         SELECT d.jti, d.client_id, d.state, d.push_state, d.resolution, c.status AS client_status,
                s.callback_url
           FROM event_deliveries d
           JOIN clients c ON c.client_id = d.client_id
           LEFT JOIN event_subscriptions s ON s.client_id = d.client_id
          WHERE d.jti = :jti
            FOR UPDATE OF d
       ), updated AS (
         ${REPLAY_UPDATE}
       ), trimmed_attempts AS (
         ${TRIM_ATTEMPTS}
       ), trimmed_handouts AS (
         ${TRIM_HANDOUTS}
       )
       SELECT t.client_id, t.client_status, t.state, t.push_state, t.resolution, t.callback_url,
              CASE WHEN t.client_status <> 'active' THEN NULL
                   WHEN EXISTS (SELECT 1 FROM updated) THEN
                     CASE WHEN t.state = 'pending' THEN 'rearmed' ELSE 'replayed' END
                   ELSE 'already_pending' END AS outcome
         FROM target t`,
      { jti, keep },
    );
    const row = rows[0];
    if (!row) return { found: false };
    return {
      found: true,
      clientId: row.client_id,
      clientActive: row.client_status === 'active',
      previous: { state: row.state, pushState: row.push_state, resolution: row.resolution },
      ...(row.outcome ? { outcome: row.outcome } : {}),
      push: row.callback_url !== null,
    };
  }

  /**
   * Replays a TPP's SETs created at or after `since`, in creation order, at most `limit`:
   * resolved ones (acknowledged, errored) become pending again, pending ones whose push gave up
   * are re-armed. Discarded and purged SETs stay as they are. Idempotent: a second run finds the
   * first run's SETs pending and leaves them alone (it takes the next `limit`, if any).
   */
  async replaySince(
    clientId: string,
    since: Date,
    limit: number,
    keep: number,
  ): Promise<ReplaySinceResult> {
    const { rows } = await this.knex.raw<{
      rows: { replayed: number; rearmed: number; candidates: number }[];
    }>(
      `WITH sub AS (
         SELECT callback_url FROM event_subscriptions WHERE client_id = :clientId
       ), candidates AS (
         SELECT d.jti
           FROM events e
           JOIN event_deliveries d ON d.jti = e.jti
          WHERE e.client_id = :clientId AND e.jti >= :from::uuid
            AND (d.state IN ('acknowledged', 'errored')
                 OR (d.state = 'pending' AND d.push_state = 'failed'
                     AND EXISTS (SELECT 1 FROM sub WHERE callback_url IS NOT NULL)))
          ORDER BY e.jti
          LIMIT :limitPlusOne
       ), target AS (
         SELECT d.jti, d.client_id, d.state, d.push_state, 'active'::text AS client_status,
                (SELECT callback_url FROM sub) AS callback_url
           FROM event_deliveries d
          WHERE d.jti IN (SELECT jti FROM candidates ORDER BY jti LIMIT :limit)
            FOR UPDATE OF d
       ), updated AS (
         ${REPLAY_UPDATE}
       ), trimmed_attempts AS (
         ${TRIM_ATTEMPTS}
       ), trimmed_handouts AS (
         ${TRIM_HANDOUTS}
       )
       SELECT (SELECT count(*) FROM target t WHERE t.state <> 'pending' AND t.jti IN (SELECT jti FROM updated))::int AS replayed,
              (SELECT count(*) FROM target t WHERE t.state = 'pending' AND t.jti IN (SELECT jti FROM updated))::int AS rearmed,
              (SELECT count(*) FROM candidates)::int AS candidates`,
      { clientId, from: jtiFloor(since), limit, limitPlusOne: limit + 1, keep },
    );
    const r = rows[0]!;
    return { replayed: r.replayed, rearmed: r.rearmed, more: r.candidates > limit };
  }

  /** Pushes that gave up (still pollable) and SETs the TPP rejected (push 400 or setErrs). */
  async deadLetters(f: {
    clientId?: string;
    after?: string;
    limit: number;
  }): Promise<DeadLetter[]> {
    const { rows } = await this.knex.raw<{ rows: (SummaryRow & { last_error: string | null })[] }>(
      `SELECT ${SUMMARY_COLUMNS},
              (SELECT pa.error FROM push_attempts pa WHERE pa.jti = d.jti ORDER BY pa.id DESC LIMIT 1) AS last_error
         FROM event_deliveries d
         JOIN events e ON e.jti = d.jti
        WHERE ${DEAD_LETTER}
          AND (:clientId::text IS NULL OR d.client_id = :clientId::text)
          AND (:after::uuid IS NULL OR d.jti > :after::uuid)
        ORDER BY d.jti
        LIMIT :limit`,
      { clientId: f.clientId ?? null, after: f.after ?? null, limit: f.limit },
    );
    return rows.map((r) => ({
      ...toSummary(r),
      kind: r.state === 'errored' ? 'rejected' : 'push_failed',
      lastError: r.last_error ?? (r.err ? `${r.err}: ${r.err_description ?? ''}`.trim() : null),
    }));
  }

  async isDeadLetter(jti: string): Promise<boolean> {
    const { rows } = await this.knex.raw<{ rows: unknown[] }>(
      `SELECT 1 FROM event_deliveries d WHERE d.jti = :jti AND ${DEAD_LETTER}`,
      { jti },
    );
    return rows.length > 0;
  }

  /**
   * Takes a dead letter out of delivery for good: state discarded, resolution purged. The SET
   * and its history stay until EVENT_RETENTION_DAYS (then retention deletes them).
   */
  async purge(jti: string): Promise<{ clientId: string; state: string } | undefined> {
    const { rows } = await this.knex.raw<{ rows: { client_id: string; state: string }[] }>(
      `WITH target AS (
         SELECT d.jti, d.client_id, d.state FROM event_deliveries d
          WHERE d.jti = :jti AND ${DEAD_LETTER}
            FOR UPDATE OF d
       ), updated AS (
         UPDATE event_deliveries d
            SET state = 'discarded', resolution = 'purged', resolved_at = now(),
                push_state = CASE WHEN d.push_state = 'failed' THEN NULL ELSE d.push_state END,
                push_next_at = NULL, leased_until = NULL
           FROM target t WHERE d.jti = t.jti
         RETURNING d.jti
       )
       SELECT t.client_id, t.state FROM target t WHERE EXISTS (SELECT 1 FROM updated)`,
      { jti },
    );
    return rows[0] ? { clientId: rows[0].client_id, state: rows[0].state } : undefined;
  }

  /** Every TPP with what an operator looks at first. */
  async clientsOverview(): Promise<ClientOverview[]> {
    const { rows } = await this.knex.raw<{
      rows: {
        client_id: string;
        name: string;
        status: string;
        subscribed: boolean;
        callback_url: string | null;
        version: string | null;
        event_types: string[] | null;
        backlog: number;
        oldest_jti: string | null;
        last_handout_at: Date | null;
        push_due: number;
        push_failed: number;
        open_until: Date | null;
        trips: number | null;
        last_error: string | null;
      }[];
    }>(
      `SELECT c.client_id, c.name, c.status, s.client_id IS NOT NULL AS subscribed, s.callback_url,
              s.version, s.event_types,
              p.backlog, p.push_due, p.push_failed,
              (SELECT d.jti::text FROM event_deliveries d
                WHERE d.client_id = c.client_id AND d.state = 'pending'
                ORDER BY d.jti LIMIT 1) AS oldest_jti,
              (SELECT max(h.handed_out_at) FROM poll_handouts h WHERE h.client_id = c.client_id) AS last_handout_at,
              b.open_until, b.trips, b.last_error
         FROM clients c
         LEFT JOIN event_subscriptions s ON s.client_id = c.client_id
         LEFT JOIN push_breakers b ON b.client_id = c.client_id
         CROSS JOIN LATERAL (
           SELECT count(*)::int AS backlog,
                  count(*) FILTER (WHERE d.push_state = 'due')::int AS push_due,
                  count(*) FILTER (WHERE d.push_state = 'failed')::int AS push_failed
             FROM event_deliveries d
            WHERE d.client_id = c.client_id AND d.state = 'pending') p
        ORDER BY c.client_id`,
    );
    return rows.map((r) => ({
      clientId: r.client_id,
      name: r.name,
      status: r.status,
      subscription: r.subscribed
        ? { callbackUrl: r.callback_url, version: r.version!, eventTypes: r.event_types }
        : null,
      backlog: r.backlog,
      oldestPendingAt: r.oldest_jti ? jtiTime(r.oldest_jti).toISOString() : null,
      lastHandoutAt: r.last_handout_at ? r.last_handout_at.toISOString() : null,
      pushDue: r.push_due,
      pushFailed: r.push_failed,
      breaker: r.open_until
        ? { openUntil: r.open_until.toISOString(), trips: r.trips!, lastError: r.last_error }
        : null,
    }));
  }

  async clientExists(clientId: string): Promise<boolean> {
    const row: unknown = await this.knex('clients')
      .where({ client_id: clientId })
      .first('client_id');
    return row !== undefined;
  }

  async audit(entry: NewAuditEntry): Promise<void> {
    await this.knex('operator_audit').insert({
      actor: entry.actor.slice(0, 200),
      via: entry.via,
      action: entry.action,
      client_id: entry.clientId,
      jti: entry.jti,
      detail: JSON.stringify(entry.detail),
    });
  }

  async auditLog(f: { clientId?: string; before?: number; limit: number }): Promise<AuditEntry[]> {
    const rows = (await this.knex('operator_audit')
      .modify((q) => {
        if (f.clientId) q.where({ client_id: f.clientId });
        if (f.before) q.where('id', '<', f.before);
      })
      .orderBy('id', 'desc')
      .limit(f.limit)) as Record<string, unknown>[];
    return rows.map((r) => ({
      id: Number(r.id),
      at: (r.at as Date).toISOString(),
      actor: r.actor as string,
      via: r.via as AuditEntry['via'],
      action: r.action as string,
      clientId: r.client_id as string | null,
      jti: r.jti as string | null,
      detail: r.detail as Record<string, unknown>,
    }));
  }
}

/**
 * Shared by both replays, over `target` (jti, state, push_state, client_status, callback_url):
 * resolved SETs of active clients become pending; pending ones whose push gave up are re-armed.
 */
const REPLAY_UPDATE = `
  UPDATE event_deliveries d
     SET state = 'pending', resolved_at = NULL, resolution = NULL, err = NULL,
         err_description = NULL,
         leased_until = CASE WHEN t.state = 'pending' THEN d.leased_until END,
         push_state = CASE WHEN t.callback_url IS NOT NULL THEN 'due' END,
         push_next_at = CASE WHEN t.callback_url IS NOT NULL THEN now() END,
         push_attempts = 0,
         replays = d.replays + CASE WHEN t.state = 'pending' THEN 0 ELSE 1 END
    FROM target t
   WHERE d.jti = t.jti AND t.client_status = 'active'
     AND (t.state <> 'pending' OR (t.push_state = 'failed' AND t.callback_url IS NOT NULL))
  RETURNING d.jti`;

const TRIM_ATTEMPTS = `
  DELETE FROM push_attempts pa
   USING (SELECT jti, id, row_number() OVER (PARTITION BY jti ORDER BY id DESC) AS rn
            FROM push_attempts WHERE jti IN (SELECT jti FROM updated)) x
   WHERE pa.jti = x.jti AND pa.id = x.id AND x.rn > :keep`;

const TRIM_HANDOUTS = `
  DELETE FROM poll_handouts h
   USING (SELECT jti, id, row_number() OVER (PARTITION BY jti ORDER BY id DESC) AS rn
            FROM poll_handouts WHERE jti IN (SELECT jti FROM updated)) x
   WHERE h.jti = x.jti AND h.id = x.id AND x.rn > :keep`;

/** The creation time in a UUIDv7. */
export function jtiTime(jti: string): Date {
  return new Date(parseInt(jti.replace(/-/g, '').slice(0, 12), 16));
}

function toSummary(r: SummaryRow): SetSummary {
  return {
    jti: r.jti,
    clientId: r.client_id,
    eventTypes: r.event_types,
    subjectId: r.subject_id,
    subjectType: r.subject_type,
    createdAt: r.created_at.toISOString(),
    state: r.state,
    pushState: r.push_state,
    pushAttempts: r.push_attempts,
    pollCount: r.poll_count,
    replays: r.replays,
    resolvedAt: r.resolved_at ? r.resolved_at.toISOString() : null,
    resolution: r.resolution,
    err: r.err,
    errDescription: r.err_description,
  };
}
