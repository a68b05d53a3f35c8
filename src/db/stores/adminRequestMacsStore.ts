// Rows of admin_request_macs: the MACs of admin API requests already accepted, kept until their
// timestamp is out of the tolerance window. The primary key makes "first use wins" atomic across
// every replica sharing the database: a captured request is refused on all of them.
import type { Knex } from 'knex';

export const ADMIN_REQUEST_MACS = 'admin_request_macs';

export class AdminRequestMacsStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): AdminRequestMacsStore {
    return new AdminRequestMacsStore(knex);
  }

  /** Records the MAC; true the first time, false when it was already there (a replay). */
  async remember(mac: Buffer, expiresAt: Date): Promise<boolean> {
    const result = await this.knex.raw<{ rowCount: number | null }>(
      `insert into ${ADMIN_REQUEST_MACS} (mac, expires_at) values (:mac, :expiresAt)
       on conflict (mac) do nothing`,
      { mac, expiresAt },
    );
    return result.rowCount === 1;
  }

  /** Deletes at most `limit` MACs that expired before `now`; returns how many. */
  async purgeExpired(now: Date, limit = 10_000): Promise<number> {
    const result = await this.knex.raw<{ rowCount: number | null }>(
      `delete from ${ADMIN_REQUEST_MACS} m
       using (select mac from ${ADMIN_REQUEST_MACS} where expires_at < :now
              order by expires_at limit :limit) expired
       where m.mac = expired.mac`,
      { now, limit },
    );
    return result.rowCount ?? 0;
  }
}
