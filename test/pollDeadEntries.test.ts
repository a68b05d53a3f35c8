// Issue 11, item 7: SETs resolved since the last vacuum must not slow every later poll. Their
// entries stay in event_deliveries_pending_client_idx until a vacuum; the poll statement must read
// each such entry's heap row at most once (a plain index scan marks it dead), not on every poll
// (a bitmap scan, which the planner picked after a drain, never does). Measured with the
// transaction's own block counters, so the test counts work, not time.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DeliveriesStore } from '../src/db/stores/deliveriesStore.js';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';

const CLIENT = 'tpp-dead-entries';
const RESOLVED = 20_000;

describePostgres('polling past resolved SETs (dead index entries)', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.knex.raw(
      `INSERT INTO clients (client_id, name, auth_method, scopes, signing_iss, jwks)
       VALUES (?, ?, 'private_key_jwt', '{}', ?, '{"keys": []}')`,
      [CLIENT, CLIENT, CLIENT],
    );
    // Two drained rounds, as in the soak: SETs inserted pending, then all acknowledged; a vacuum
    // after the first, none since the second.
    for (let round = 0; round < 2; round++) {
      if (round > 0) await db.knex.raw('VACUUM event_deliveries');
      await db.knex.raw(
        `WITH e AS (
           INSERT INTO events (jti, client_id, event_types, subject_id, subject_type, txn, kid, set_jws)
           SELECT gen_random_uuid(), ?, '{UK.OBIE.Resource-Update}', 'r', 'domestic-payment', 't', 'k', 'x.y.z'
             FROM generate_series(1, ${RESOLVED})
           RETURNING jti, client_id)
         INSERT INTO event_deliveries (jti, client_id) SELECT jti, client_id FROM e`,
        [CLIENT],
      );
      await db.knex.raw(
        `UPDATE event_deliveries SET state = 'acknowledged', resolved_at = now(), resolution = 'ack'
          WHERE client_id = ? AND state = 'pending'`,
        [CLIENT],
      );
    }
  }, 60_000);

  afterAll(async () => {
    await db?.drop();
  });

  it('when a client has nothing pending but many SETs resolved since the last vacuum, then polls soon stop reading their rows', async () => {
    const store = DeliveriesStore.create(db.knex);
    // Heap blocks one poll reads, from its own transaction's counters.
    const pollReads = () =>
      db.knex.transaction(async (trx) => {
        const blocks = async () => {
          const { rows } = await trx.raw<{ rows: { n: string }[] }>(
            `SELECT pg_stat_get_xact_blocks_fetched('event_deliveries'::regclass) AS n`,
          );
          return Number(rows[0]!.n);
        };
        // The planner's preference in the soak (from its statistics after a drain), made
        // certain here: without an index scan it takes a bitmap scan.
        await trx.raw('SET LOCAL enable_indexscan = off');
        const before = await blocks();
        const answer = await store
          .in(trx)
          .poll({ clientId: CLIENT, acks: [], setErrs: [], limit: 10, leaseSeconds: 30 });
        expect(answer.sets).toEqual([]);
        return (await blocks()) - before;
      });
    // The first poll visits each resolved row once (a plain index scan), and marks its index
    // entry dead as soon as no transaction can still see the row; from then on polls read the
    // index alone. A bitmap scan would read every heap page (over 100 here) on every poll.
    const reads: number[] = [];
    for (let i = 0; i < 40; i++) {
      reads.push(await pollReads());
      if (reads.at(-1)! < 10) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(reads[0]).toBeGreaterThan(100);
    expect(reads.at(-1), `heap blocks read per poll: ${reads.join(', ')}`).toBeLessThan(10);
  });
});
