// Table health under queue-like churn: the hot tables carry autovacuum storage parameters
// (migrations/20261201111000_autovacuum.ts), and /metrics shows each table's dead tuples, their
// ratio and its size, read from pg_stat_user_tables.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { subscribe } from './helpers/fixtures.js';
import { publish } from './helpers/push.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { registerClient } from './helpers/fixtures.js';

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describePostgres('table health', () => {
  let db: TestDatabase;
  let server: TestServer;
  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: { PUSH_CONCURRENCY: '0' } });
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('when migrated, then the hot tables vacuum after a small share of dead rows', async () => {
    const { rows } = await db.knex.raw<{ rows: { relname: string; reloptions: string[] }[] }>(
      `SELECT relname, reloptions FROM pg_class
        WHERE relname IN ('event_deliveries', 'events', 'event_outbox', 'assertion_jtis')`,
    );
    const options = Object.fromEntries(rows.map((r) => [r.relname, r.reloptions ?? []]));
    expect(options.event_deliveries).toContain('autovacuum_vacuum_scale_factor=0.01');
    expect(options.event_deliveries).toContain('autovacuum_vacuum_cost_limit=2000');
    expect(options.event_outbox).toContain('autovacuum_vacuum_scale_factor=0.01');
    expect(options.events).toContain('autovacuum_vacuum_scale_factor=0.02');
    expect(options.assertion_jtis).toContain('autovacuum_vacuum_scale_factor=0.02');
  });

  it('when deliveries are acknowledged, then /metrics shows the dead tuples, their ratio and the table sizes', async () => {
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId);
    await publish(server, clientId, 50);
    await db
      .knex('event_deliveries')
      .where({ client_id: clientId })
      .update({ state: 'acknowledged', resolved_at: db.knex.fn.now() });
    // The statistics collector reports at most every 500 ms (stats_fetch_consistency aside).
    await db.knex.raw('select pg_stat_force_next_flush()').catch(() => {});
    await new Promise((r) => setTimeout(r, 1_000));

    const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
    const dead = value(text, 'ob_events_db_dead_tuples{table="event_deliveries"}');
    const ratio = value(text, 'ob_events_db_dead_tuple_ratio{table="event_deliveries"}');
    const bytes = value(text, 'ob_events_db_table_bytes{table="events"}');
    expect(dead).toBeGreaterThan(0);
    expect(ratio).toBeGreaterThan(0);
    expect(ratio).toBeLessThanOrEqual(1);
    expect(bytes).toBeGreaterThan(8192);
    expect(text).toMatch(/^ob_events_db_last_vacuum_age_seconds\{table="event_deliveries"\} /m);
    expect(text).not.toMatch(/table="knex_migrations"/);
  });
});
