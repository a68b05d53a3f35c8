// Delivery state of SETs (event_deliveries) for aggregated polling. The hot statement is raw SQL
// with named bindings: one round trip applies the acks and negative acks, picks the next pending
// SETs of the client in creation order (jti is a UUIDv7) that nobody holds, leases them, and
// returns their stored bytes (and records the hand-outs, the poll side of the delivery history).
import os from 'node:os';
import type { Knex } from 'knex';

export const EVENT_DELIVERIES = 'event_deliveries';

export interface SetError {
  jti: string;
  err: string;
  description: string;
}

export interface PollRequest {
  clientId: string;
  /** Positive acks (valid UUIDs only; anything else cannot be one of our jtis). */
  acks: string[];
  /** Negative acks (jtis not also in `acks`). */
  setErrs: SetError[];
  /** Most SETs to return (≥ 1). */
  limit: number;
  leaseSeconds: number;
}

export interface PollResult {
  sets: { jti: string; jws: string }[];
  /** More SETs of this client could be returned right now (pending, not leased, not locked). */
  moreAvailable: boolean;
}

const ACKED_CTE = `acked AS (
  UPDATE event_deliveries
     SET state = 'acknowledged', resolved_at = now(), resolution = 'ack', leased_until = NULL
   WHERE client_id = :clientId AND jti = ANY(:acks::uuid[]) AND state = 'pending'
  RETURNING jti
)`;

const ERRORED_CTE = `errored AS (
  UPDATE event_deliveries d
     SET state = 'errored', resolved_at = now(), resolution = 'set_err', leased_until = NULL,
         err = e.err, err_description = e.description
    FROM jsonb_to_recordset(:setErrs::jsonb) AS e(jti uuid, err text, description text)
   WHERE d.jti = ANY(:errJtis::uuid[]) AND d.jti = e.jti AND d.client_id = :clientId AND d.state = 'pending'
  RETURNING d.jti
)`;

const RESOLVED_COUNT = (withAcks: boolean, withErrs: boolean) =>
  [withAcks ? '(SELECT count(*) FROM acked)' : '', withErrs ? '(SELECT count(*) FROM errored)' : '']
    .filter(Boolean)
    .join(' + ') || '0';

/**
 * Why one statement: every round trip costs more than the work. Data-modifying CTEs all see the
 * snapshot from before the statement, so the candidates exclude this call's acks explicitly
 * (a SET acknowledged in a call is never returned by it). `FOR UPDATE SKIP LOCKED` makes
 * concurrent pollers of one client split the work; one row past the limit is read to answer
 * `moreAvailable`. Acks are primary-key lookups, the candidates a range of
 * event_deliveries_pending_client_idx; the ack parts are left out when there is nothing to ack.
 */
export function pollSql(withAcks: boolean, withErrs: boolean): string {
  return `
WITH ${[withAcks ? ACKED_CTE : '', withErrs ? ERRORED_CTE : '']
    .filter(Boolean)
    .map((c) => `${c},`)
    .join('\n')}
candidates AS (
  -- migrations/20261202100000_poll_candidates.ts: always a plain index scan (dead entries of
  -- resolved SETs are then marked once, not re-read by every poll until a vacuum).
  SELECT jti FROM poll_candidates(:clientId, :resolved::uuid[], :limitPlusOne)
), leased AS (
  UPDATE event_deliveries d
     SET leased_until = now() + make_interval(secs => :leaseSeconds), poll_count = d.poll_count + 1
    FROM (SELECT jti FROM candidates ORDER BY jti LIMIT :limit) c
   WHERE d.jti = c.jti
  RETURNING d.jti, d.leased_until
), handouts AS (
  -- Delivery history (operators): a row per hand-out, the first HISTORY_MAX_PER_SET of a SET.
  INSERT INTO poll_handouts (jti, client_id, lease_until, replica)
  SELECT l.jti, :clientId, l.leased_until, :replica
    FROM leased l
   WHERE (SELECT count(*) FROM poll_handouts h WHERE h.jti = l.jti) < :historyMaxPerSet
)
SELECT (SELECT count(*) FROM candidates) AS candidates,
       ${RESOLVED_COUNT(withAcks, withErrs)} AS resolved,
       l.jti, e.set_jws
  FROM (SELECT 1) AS one
  LEFT JOIN (leased l JOIN events e ON e.jti = l.jti) ON true
 ORDER BY l.jti`;
}

/** Acknowledgement-only call (maxEvents 0): apply acks and errors, tell whether more wait. */
export function ackOnlySql(withAcks: boolean, withErrs: boolean): string {
  const ctes = [withAcks ? ACKED_CTE : '', withErrs ? ERRORED_CTE : ''].filter(Boolean);
  return `
${ctes.length ? `WITH ${ctes.join(',\n')}` : ''}
SELECT EXISTS (
  SELECT 1 FROM event_deliveries
   WHERE client_id = :clientId AND state = 'pending'
     AND (leased_until IS NULL OR leased_until <= now())
     AND jti <> ALL(:resolved::uuid[])
) AS more,
${RESOLVED_COUNT(withAcks, withErrs)} AS resolved`;
}

interface PollRow {
  candidates: number;
  resolved: number;
  jti: string | null;
  set_jws: string | null;
}

/** Poll hand-outs recorded in poll_handouts (the delivery history). */
export interface HandoutHistory {
  /** Names this server in the rows (host:pid). */
  replica: string;
  /** At most this many hand-outs are recorded per SET (HISTORY_MAX_PER_SET). */
  maxPerSet: number;
}

const DEFAULT_HISTORY: HandoutHistory = {
  replica: `${os.hostname().slice(0, 150)}:${process.pid}`,
  maxPerSet: 50,
};

export class DeliveriesStore {
  private constructor(
    private readonly knex: Knex,
    private readonly history: HandoutHistory,
  ) {}

  static create(knex: Knex, history: Partial<HandoutHistory> = {}): DeliveriesStore {
    return new DeliveriesStore(knex, { ...DEFAULT_HISTORY, ...history });
  }

  in(trx: Knex.Transaction): DeliveriesStore {
    return new DeliveriesStore(trx, this.history);
  }

  async poll(req: PollRequest): Promise<PollResult & { resolved: number }> {
    const resolved = [...req.acks, ...req.setErrs.map((e) => e.jti)];
    const sql = pollSql(req.acks.length > 0, req.setErrs.length > 0);
    const { rows } = await this.knex.raw<{ rows: PollRow[] }>(sql, {
      clientId: req.clientId,
      acks: req.acks,
      setErrs: JSON.stringify(req.setErrs),
      errJtis: req.setErrs.map((e) => e.jti),
      resolved,
      limit: req.limit,
      limitPlusOne: req.limit + 1,
      leaseSeconds: req.leaseSeconds,
      replica: this.history.replica,
      historyMaxPerSet: this.history.maxPerSet,
    });
    const sets: PollResult['sets'] = [];
    for (const r of rows)
      if (r.jti !== null && r.set_jws !== null) sets.push({ jti: r.jti, jws: r.set_jws });
    const first = rows[0];
    return {
      sets,
      moreAvailable: (first?.candidates ?? 0) > req.limit,
      resolved: first?.resolved ?? 0,
    };
  }

  async acknowledgeOnly(
    req: Omit<PollRequest, 'limit' | 'leaseSeconds'>,
  ): Promise<{ moreAvailable: boolean; resolved: number }> {
    const resolved = [...req.acks, ...req.setErrs.map((e) => e.jti)];
    const sql = ackOnlySql(req.acks.length > 0, req.setErrs.length > 0);
    const { rows } = await this.knex.raw<{ rows: { more: boolean; resolved: number }[] }>(sql, {
      clientId: req.clientId,
      acks: req.acks,
      setErrs: JSON.stringify(req.setErrs),
      errJtis: req.setErrs.map((e) => e.jti),
      resolved,
    });
    return { moreAvailable: rows[0]?.more ?? false, resolved: rows[0]?.resolved ?? 0 };
  }
}
