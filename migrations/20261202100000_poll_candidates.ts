// The next pending SETs of a client, for aggregated polling, always read with a plain index scan
// (issue 11, item 7: the soak's empty-poll p50 went from 3 to 13 ms over an hour's worth of churn).
//
// Why: a SET leaves event_deliveries_pending_client_idx's predicate (state = 'pending') when it is
// acknowledged, but its index entry stays until a vacuum. A plain index scan that meets such an
// entry visits the heap once, finds the row dead and marks the entry dead (kill_prior_tuple), so
// the next poll skips it without touching the heap. A bitmap scan never marks entries: with it,
// every poll re-read the heap row of every SET resolved since the last vacuum (72,000 rows, about
// 1,000 pages, per empty poll in the soak). The planner picked the bitmap scan whenever its
// statistics said the client had few pending rows — which is exactly after a drain.
// The SET clauses of the function apply to its one statement only and leave the ordered scan of
// the partial index as the one plan (a session's own planner settings cannot change it); that
// scan is also what `ORDER BY jti LIMIT n` wants, so nothing else is given up.
import type { Knex } from 'knex';

export const name = '20261202100000_poll_candidates';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE FUNCTION poll_candidates(p_client_id text, p_exclude uuid[], p_limit integer)
      RETURNS TABLE (jti uuid)
      LANGUAGE sql VOLATILE
      ROWS 10 -- at most p_limit (maxEvents + 1): tells the planner of the calling statement
      SET enable_bitmapscan = off
      SET enable_seqscan = off
      SET enable_indexscan = on
    AS $$
      SELECT jti
        FROM event_deliveries
       WHERE client_id = p_client_id AND state = 'pending'
         AND (leased_until IS NULL OR leased_until <= now())
         AND jti <> ALL(p_exclude)
       ORDER BY jti
       LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    $$;
    COMMENT ON FUNCTION poll_candidates(text, uuid[], integer) IS
      'Next pending, unleased SETs of a client in jti order, locked (SKIP LOCKED); a plain index scan so that entries of resolved SETs are marked dead once (see the migration).';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION IF EXISTS poll_candidates(text, uuid[], integer)');
}
