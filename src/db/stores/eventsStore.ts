// Signed SETs (events) and their first delivery row, written together; plus what publishing
// reads first: each target client's status and subscription, and earlier idempotency keys.
import type { Knex } from 'knex';

export const EVENTS = 'events';

export interface NewEvent {
  jti: string;
  clientId: string;
  eventTypes: string[];
  subjectId: string;
  subjectType: string;
  txn: string;
  idempotencyKey: string | null;
  kid: string;
  setJws: string;
  /** The subscription has a CallbackUrl: the SET is due for push as well. */
  push: boolean;
}

export interface PublishTarget {
  clientId: string;
  status: 'active' | 'revoked';
  subscription: { version: string; eventTypes: string[] | null; callbackUrl: string | null } | null;
}

/**
 * One statement for a whole batch: rows arrive as one JSON parameter, the events insert skips
 * idempotency-key conflicts (a concurrent publisher won), and only the rows it inserted get a
 * delivery row. Returns the inserted jtis.
 */
const INSERT_SQL = `
WITH input AS (
  SELECT * FROM jsonb_to_recordset(:rows::jsonb) AS r(
    jti uuid, client_id text, event_types text[], subject_id text, subject_type text, txn text,
    idempotency_key text, kid text, set_jws text, push boolean)
), inserted AS (
  INSERT INTO events (jti, client_id, event_types, subject_id, subject_type, txn, idempotency_key, kid, set_jws)
  SELECT jti, client_id, event_types, subject_id, subject_type, txn, idempotency_key, kid, set_jws FROM input
  ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING jti, client_id
), deliveries AS (
  INSERT INTO event_deliveries (jti, client_id, push_state, push_next_at)
  SELECT i.jti, i.client_id,
         CASE WHEN input.push THEN 'due' END,
         CASE WHEN input.push THEN now() END
    FROM inserted i JOIN input ON input.jti = i.jti
  RETURNING jti
)
SELECT jti FROM deliveries`;

export class EventsStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): EventsStore {
    return new EventsStore(knex);
  }

  in(trx: Knex.Transaction): EventsStore {
    return new EventsStore(trx);
  }

  /**
   * Status and subscription of each client. `lock` takes a share lock on the subscriptions so a
   * concurrent DELETE waits for the publishing transaction (no SET for a deleted subscription).
   */
  async targets(clientIds: string[], lock: boolean): Promise<Map<string, PublishTarget>> {
    const { rows } = await this.knex.raw<{
      rows: {
        client_id: string;
        status: 'active' | 'revoked';
        version: string | null;
        event_types: string[] | null;
        callback_url: string | null;
        subscribed: boolean;
      }[];
    }>(
      `SELECT c.client_id, c.status, s.version, s.event_types, s.callback_url, s.client_id IS NOT NULL AS subscribed
         FROM clients c
         LEFT JOIN (SELECT * FROM event_subscriptions WHERE client_id = ANY(:ids::text[]) ${lock ? 'FOR SHARE' : ''}) s
           ON s.client_id = c.client_id
        WHERE c.client_id = ANY(:ids::text[])`,
      { ids: clientIds },
    );
    const out = new Map<string, PublishTarget>();
    for (const r of rows) {
      out.set(r.client_id, {
        clientId: r.client_id,
        status: r.status,
        subscription: r.subscribed
          ? { version: r.version!, eventTypes: r.event_types, callbackUrl: r.callback_url }
          : null,
      });
    }
    return out;
  }

  /** jtis already published under these (client, idempotency key) pairs, keyed `client\0key`. */
  async byIdempotencyKeys(
    pairs: { clientId: string; key: string }[],
  ): Promise<Map<string, string>> {
    if (pairs.length === 0) return new Map();
    const { rows } = await this.knex.raw<{
      rows: { client_id: string; idempotency_key: string; jti: string }[];
    }>(
      `SELECT e.client_id, e.idempotency_key, e.jti
         FROM events e
         JOIN unnest(:clients::text[], :keys::text[]) AS k(client_id, key)
           ON e.client_id = k.client_id AND e.idempotency_key = k.key`,
      { clients: pairs.map((p) => p.clientId), keys: pairs.map((p) => p.key) },
    );
    return new Map(rows.map((r) => [idempotencyKey(r.client_id, r.idempotency_key), r.jti]));
  }

  /** Inserts SETs and their delivery rows; returns the jtis inserted (conflicting keys are not). */
  async insert(events: NewEvent[]): Promise<Set<string>> {
    if (events.length === 0) return new Set();
    const rows = events.map((e) => ({
      jti: e.jti,
      client_id: e.clientId,
      event_types: e.eventTypes,
      subject_id: e.subjectId,
      subject_type: e.subjectType,
      txn: e.txn,
      idempotency_key: e.idempotencyKey,
      kid: e.kid,
      set_jws: e.setJws,
      push: e.push,
    }));
    const { rows: inserted } = await this.knex.raw<{ rows: { jti: string }[] }>(INSERT_SQL, {
      rows: JSON.stringify(rows),
    });
    return new Set(inserted.map((r) => r.jti));
  }

  /**
   * Deletes SETs that left pending more than `cutoff` ago (acknowledged, errored, discarded), at
   * most `limit` at a time; delivery rows and push attempts go with them (ON DELETE CASCADE).
   */
  async deleteResolvedBefore(cutoff: Date, limit: number): Promise<number> {
    const { rowCount } = await this.knex.raw<{ rowCount: number }>(
      `DELETE FROM events WHERE jti IN (
         SELECT jti FROM event_deliveries
          WHERE state <> 'pending' AND resolved_at < :cutoff
          ORDER BY resolved_at
          LIMIT :limit)`,
      { cutoff, limit },
    );
    return rowCount;
  }
}

export function idempotencyKey(clientId: string, key: string): string {
  return `${clientId}\0${key}`;
}
