// The "next pending SETs of one client" query stays an index range scan on a large table.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pollSql } from '../src/db/stores/deliveriesStore.js';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';

const ROWS = 1_000_000;
const CLIENTS = 1_000;

interface PlanNode {
  'Node Type': string;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
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

  const BINDINGS = {
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
  };

  /**
   * Runs the poll statement for real and returns the plans Postgres executed, nested ones
   * included: the candidates are read inside poll_candidates(), whose plan a plain EXPLAIN of the
   * statement does not show. auto_explain logs each plan; client_min_messages sends the log lines
   * to this connection as notices.
   */
  async function executedPlans(
    sql: string,
    bindings: Record<string, unknown>,
  ): Promise<{ query: string; plan: PlanNode; ms: number }[]> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const plans: { query: string; plan: PlanNode; ms: number }[] = [];
    client.on('notice', (n) => {
      const m = /duration: ([\d.]+) ms\s+plan:\s*([\s\S]*)$/.exec(n.message ?? '');
      if (!m) return;
      const parsed = JSON.parse(m[2]!) as { 'Query Text': string; Plan: PlanNode };
      plans.push({ query: parsed['Query Text'], plan: parsed.Plan, ms: Number(m[1]) });
    });
    try {
      await client.query(`LOAD 'auto_explain'`);
      for (const setting of [
        'auto_explain.log_min_duration = 0',
        'auto_explain.log_nested_statements = on',
        'auto_explain.log_analyze = on',
        'auto_explain.log_buffers = on',
        'auto_explain.log_timing = off',
        `auto_explain.log_format = 'json'`,
        'client_min_messages = log',
      ]) {
        await client.query(`SET ${setting}`);
      }
      const native = db.knex.raw(sql, bindings).toSQL().toNative();
      await client.query(native.sql, native.bindings as unknown[]);
    } finally {
      await client.end();
    }
    return plans;
  }

  function candidatesPlan(plans: { query: string; plan: PlanNode }[]): PlanNode {
    const inner = plans.find(
      (p) => /FOR UPDATE SKIP LOCKED/.test(p.query) && !/WITH/.test(p.query),
    );
    expect(inner, plans.map((p) => p.query).join('\n---\n')).toBeDefined();
    return inner!.plan;
  }

  it('when a client polls, then its pending SETs are read by an index range scan of the pending index', async () => {
    const plans = await executedPlans(pollSql(true, true), BINDINGS);
    const all = plans.flatMap((p) => nodes(p.plan));
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
    const candidateScan = nodes(candidatesPlan(plans)).find(
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
    const plans = await executedPlans(pollSql(false, false), {
      ...BINDINGS,
      clientId: 'c7',
      acks: [],
      setErrs: '[]',
      errJtis: [],
      resolved: [],
    });
    const candidates = candidatesPlan(plans);
    const blocks = (candidates['Shared Hit Blocks'] ?? 0) + (candidates['Shared Read Blocks'] ?? 0);
    // About 100 pending rows per client: a few index pages and one heap page per candidate.
    expect(blocks).toBeLessThan(100);
    const outer = plans.find((p) => /^\s*WITH/.test(p.query));
    expect(outer?.ms).toBeLessThan(50);
  });
});
