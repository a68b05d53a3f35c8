// Rows of assertion_jtis: the client assertion jtis seen at /token, kept until their assertion can
// no longer be accepted. The primary key (client_id, jti) makes "first use wins" atomic across
// every replica sharing the database.
import type { Knex } from 'knex';

export const ASSERTION_JTIS = 'assertion_jtis';

/** The identity of one record: client ids cannot contain NUL. */
export function jtiKey(clientId: string, jti: string): string {
  return `${clientId}\u0000${jti}`;
}

export class AssertionJtisStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): AssertionJtisStore {
    return new AssertionJtisStore(knex);
  }

  /** The same store, running its statements in `trx`. */
  in(trx: Knex.Transaction): AssertionJtisStore {
    return new AssertionJtisStore(trx);
  }

  /**
   * Records the jti; true the first time, false when it was already there (a replay).
   * Raw so that it is exactly one statement and one round trip on the hot path of /token.
   */
  async remember(clientId: string, jti: string, expiresAt: Date): Promise<boolean> {
    const result = await this.knex.raw<{ rowCount: number | null }>(
      `insert into ${ASSERTION_JTIS} (client_id, jti, expires_at)
       values (:clientId, :jti, :expiresAt)
       on conflict (client_id, jti) do nothing`,
      { clientId, jti, expiresAt },
    );
    return result.rowCount === 1;
  }

  /**
   * Records several jtis in one statement; returns the keys (`jtiKey`) of those that were new.
   * A (client, jti) listed twice is new at most once. The rows travel as one JSON parameter.
   */
  async rememberAll(
    entries: readonly { clientId: string; jti: string; expiresAt: Date }[],
  ): Promise<Set<string>> {
    if (entries.length === 0) return new Set();
    const rows = entries.map((e) => ({
      client_id: e.clientId,
      jti: e.jti,
      expires_at: e.expiresAt.toISOString(),
    }));
    const result = await this.knex.raw<{ rows: { client_id: string; jti: string }[] }>(
      `insert into ${ASSERTION_JTIS} (client_id, jti, expires_at)
       select client_id, jti, expires_at
       from jsonb_to_recordset(:rows::jsonb) as r(client_id text, jti text, expires_at timestamptz)
       on conflict (client_id, jti) do nothing
       returning client_id, jti`,
      { rows: JSON.stringify(rows) },
    );
    return new Set(result.rows.map((r) => jtiKey(r.client_id, r.jti)));
  }

  /**
   * Deletes at most `limit` entries that expired before `now`; returns how many. Bounded so a
   * large backlog is removed in short statements that do not hold locks for long.
   */
  async purgeExpired(now: Date, limit: number): Promise<number> {
    const result = await this.knex.raw<{ rowCount: number | null }>(
      `delete from ${ASSERTION_JTIS} a
       using (select client_id, jti from ${ASSERTION_JTIS}
              where expires_at < :now
              order by expires_at
              limit :limit) expired
       where a.client_id = expired.client_id and a.jti = expired.jti`,
      { now, limit },
    );
    return result.rowCount ?? 0;
  }
}
