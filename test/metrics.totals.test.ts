// Metrics that count every way in (issue 15): publishes made by the CLI (another process) and by
// the outbox were missing from the server's ob_events_events_published_total ("1 counted after 3
// publishes"). The database-read totals count them, on every replica, and do not go down when
// retention deletes the rows they counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.js';
import { silentLogger } from '../src/logger.js';
import { runRetention } from '../src/workers/retention.js';
import { cliEnv, requireBuild, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { eventFor, registerClient, subscribe } from './helpers/fixtures.js';
import { startTestServer, type TestServer } from './helpers/server.js';

/** The value of one series (name and exact label set as Prometheus prints them). */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(server: TestServer): Promise<string> {
  const res = await fetch(`${server.adminUrl}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('metrics totals from the database', () => {
  let db: TestDatabase;
  let server: TestServer;
  let clientId: string;

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    server = await startTestServer(db);
    clientId = await registerClient(server);
    await subscribe(db.knex, clientId);
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('when 2 SETs are published by the CLI and 1 through the outbox, then the server counts 3', async () => {
    const cli = await runCli(
      [
        ...['events', 'publish', '--client-id', clientId, '--type', 'UK.OBIE.Resource-Update'],
        ...['--subject-id', 'pmt-1', '--subject-type', 'domestic-payment', '--count', '2'],
      ],
      { env: cliEnv(db) },
    );
    expect(cli.code, cli.stderr).toBe(0);
    const [{ id }] = (await db
      .knex('event_outbox')
      .insert({ event: JSON.stringify(eventFor(clientId)) })
      .returning('id')) as [{ id: number }];
    await waitFor(
      async () => (await db.knex('event_outbox').where({ id }).first())?.state === 'done',
      'the outbox row to be published',
    );

    const text = await scrape(server);
    expect(value(text, 'ob_events_sets_created_total')).toBe(3);
    expect(value(text, 'ob_events_sets{state="pending"}')).toBe(3);
    expect(value(text, 'ob_events_sets_polled_total')).toBe(0);
    expect(text).toMatch(/# TYPE ob_events_sets_created_total counter/);
    expect(value(text, 'ob_events_outbox_rows{state="done"}')).toBe(1);
    expect(value(text, 'ob_events_outbox_oldest_new_age_seconds')).toBe(0);
    expect(value(text, 'ob_events_ready')).toBe(1);
    const age = value(
      text,
      `ob_events_oldest_pending_age_seconds_by_client{client_id="${clientId}"}`,
    );
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(600);
  });

  it('when SETs are polled, acknowledged and then deleted by retention, then the totals stay (any replica sees them)', async () => {
    const { polling } = server.server.services;
    const first = await polling.poll(clientId, { maxEvents: 2, returnImmediately: true });
    const jtis = Object.keys(first.sets);
    expect(jtis).toHaveLength(2);
    await polling.poll(clientId, { maxEvents: 0, ack: jtis, returnImmediately: true });
    // Resolved long ago, as far as retention is concerned: deleted now.
    await db
      .knex('event_deliveries')
      .whereIn('jti', jtis)
      .update({ resolved_at: new Date(0) });
    const deleted = await runRetention({
      knex: db.knex,
      keys: server.server.services.keys,
      clock: systemClock,
      logger: silentLogger(),
      retentionDays: 1,
    });
    expect(deleted.events).toBe(2);

    // A second replica on the same database: its own process, nothing counted in it.
    const replica = await startTestServer(db);
    try {
      const text = await scrape(replica);
      expect(value(text, 'ob_events_sets_created_total')).toBe(3);
      expect(value(text, 'ob_events_sets_resolved_total{resolution="ack"}')).toBe(2);
      expect(value(text, 'ob_events_sets_polled_total')).toBe(2);
      expect(value(text, 'ob_events_sets{state="pending"}')).toBe(1);
      expect(value(text, 'ob_events_sets{state="acknowledged"}')).toBeUndefined();
    } finally {
      await replica.stop();
    }
  });
});
