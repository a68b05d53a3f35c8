// The "next pending SETs of one client" query stays an index range scan on a large table.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pollSql } from '../src/db/stores/deliveriesStore.js';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';

const ROWS = 1_000_000;
const CLIENTS = 1_000;

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  'Plan Rows'?: number;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

describePostgres('pending-SET query plan with a million rows across a thousand clients', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
    const k = db.knex;
    await k.raw(`INSERT INTO clients (client_id, name, auth_method, jwks, scopes, signing_iss)
                 SELECT 'c' || g, 'c' || g, 'private_key_jwt', '{"keys":[]}', '{accounts}', 'c' || g
                   FROM generate_series(0, ${CLIENTS - 1}) g`);
    await k.raw(`INSERT INTO events (jti, client_id, event_types, subject_id, subject_type, txn, kid, set_jws, created_at)
                 SELECT gen_random_uuid(), 'c' || (g % ${CLIENTS}), '{UK.OBIE.Resource-Update}', 'r' || g, 'domestic-payment', 't', 'k', 'x', now()
                   FROM generate_series(1, ${ROWS}) g`);
    // Most SETs are long acknowledged; about one in ten is still pending, a few of those leased.
    await k.raw(`INSERT INTO event_deliveries (jti, client_id, state, resolved_at, resolution, leased_until)
                 SELECT jti, client_id,
                        CASE WHEN r < 0.9 THEN 'acknowledged' ELSE 'pending' END,
                        CASE WHEN r < 0.9 THEN now() END,
                        CASE WHEN r < 0.9 THEN 'ack' END,
                        CASE WHEN r BETWEEN 0.9 AND 0.91 THEN now() + interval '30 seconds' END
                   FROM (SELECT jti, client_id, random() AS r FROM events) s`);
    await k.raw('ANALYZE events');
    await k.raw('ANALYZE event_deliveries');
  }, 300_000);

  afterAll(async () => {
    await db?.drop();
  });

  it('when a client polls, then its pending SETs are read by an index range scan of the pending index', async () => {
    const explained = await db.knex.raw<{ rows: { 'QUERY PLAN': [{ Plan: PlanNode }] }[] }>(
      `EXPLAIN (FORMAT JSON) ${pollSql(true, true)}`,
      {
        clientId: 'c42',
        acks: ['0190b1a4-0000-7000-8000-000000000001'],
        setErrs: JSON.stringify([
          { jti: '0190b1a4-0000-7000-8000-000000000002', err: 'jwtIss', description: 'x' },
        ]),
        errJtis: ['0190b1a4-0000-7000-8000-000000000002'],
        resolved: ['0190b1a4-0000-7000-8000-000000000001', '0190b1a4-0000-7000-8000-000000000002'],
        limit: 10,
        limitPlusOne: 11,
        leaseSeconds: 30,
        // The poll also records its hand-outs (delivery history).
        replica: 'test',
        historyMaxPerSet: 50,
      },
    );
    const all = nodes(explained.rows[0]!['QUERY PLAN'][0].Plan);
    const onDeliveries = all.filter(
      (n) => n['Relation Name'] === 'event_deliveries' && n['Node Type'].includes('Scan'),
    );
    expect(onDeliveries.length).toBeGreaterThan(0);
    // Acks and negative acks are primary-key lookups; the candidates a range of the pending index.
    for (const n of onDeliveries) {
      expect(n['Node Type'], JSON.stringify(n)).toMatch(/^Index (Only )?Scan$/);
      expect(['event_deliveries_pkey', 'event_deliveries_pending_client_idx']).toContain(
        n['Index Name'],
      );
    }
    const candidateScan = onDeliveries.find(
      (n) => n['Index Name'] === 'event_deliveries_pending_client_idx',
    );
    expect(candidateScan?.['Node Type']).toMatch(/^Index (Only )?Scan$/);
    // Creation order comes from the index: no Sort reads event_deliveries directly (the small sorts
    // of at most maxEvents + 1 rows that the CTEs hand on are fine).
    const sortsOfTheTable = all.filter(
      (n) =>
        n['Node Type'] === 'Sort' &&
        (n.Plans ?? []).some(
          (c) => c['Node Type'].includes('Scan') && c['Relation Name'] === 'event_deliveries',
        ),
    );
    expect(sortsOfTheTable, JSON.stringify(sortsOfTheTable)).toEqual([]);
  });

  it('when a client polls for real, then the statement touches only a handful of buffers', async () => {
    const analyzed = await db.knex.raw<{ rows: { 'QUERY PLAN': string }[] }>(
      `EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) ${pollSql(false, false)}`,
      {
        clientId: 'c7',
        acks: [],
        setErrs: '[]',
        errJtis: [],
        resolved: [],
        limit: 10,
        limitPlusOne: 11,
        leaseSeconds: 30,
        // The poll also records its hand-outs (delivery history).
        replica: 'test',
        historyMaxPerSet: 50,
      },
    );
    const text = analyzed.rows.map((r) => r['QUERY PLAN']).join('\n');
    const execution = /Execution Time: ([\d.]+) ms/.exec(text);
    expect(Number(execution?.[1])).toBeLessThan(50);
    expect(text).toContain('event_deliveries_pending_client_idx');
  });
});
