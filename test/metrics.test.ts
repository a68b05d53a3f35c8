// /metrics on the admin listener: after some traffic of every kind, the series are there, with
// bounded labels.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { subscribe } from './helpers/fixtures.js';
import { call } from './helpers/http.js';
import { deliveryWhen, publish, pushEnv } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { createTestTpp, postToken } from './helpers/tpp.js';

/** The value of one series (name and exact label set as Prometheus prints them). */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics', () => {
  let db: TestDatabase;
  let server: TestServer;
  let receiver: Receiver;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: pushEnv() });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
    await server?.stop();
    await db?.drop();
  });

  it('when tokens, publishing, polling and push have happened, then /metrics exposes their series', async () => {
    const poller = await createTestTpp(server);
    await subscribe(db.knex, poller.clientId);
    const pushed = await createTestTpp(server);
    await subscribe(db.knex, pushed.clientId, { callbackUrl: receiver.callbackUrl });

    const token = await poller.accessToken();
    const refused = await postToken(server, poller.agent, {
      grant_type: 'client_credentials',
      client_id: 'nobody',
    });
    expect(refused.status).toBe(401);
    await publish(server, poller.clientId, 3);
    const [pushedJti] = await publish(server, pushed.clientId, 1);
    const polled = await call(poller.agent, `${server.url}/open-banking/v3.1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ maxEvents: 2, returnImmediately: true }),
    });
    expect(polled.status).toBe(200);
    await deliveryWhen(db.knex, pushedJti!, (r) => r.state === 'acknowledged');

    const res = await fetch(`${server.adminUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();

    expect(value(text, 'ob_events_tokens_issued_total{auth_method="private_key_jwt"}')).toBe(1);
    expect(value(text, 'ob_events_tokens_refused_total{reason="invalid_client"}')).toBe(1);
    expect(
      value(
        text,
        'ob_events_events_published_total{type="UK.OBIE.Resource-Update",outcome="created"}',
      ),
    ).toBe(4);
    expect(value(text, 'ob_events_sets_delivered_total{channel="poll"}')).toBe(2);
    expect(value(text, 'ob_events_sets_delivered_total{channel="push"}')).toBe(1);
    expect(value(text, 'ob_events_push_attempts_total{outcome="accepted"}')).toBe(1);
    expect(text).toContain(
      'ob_events_push_attempt_duration_seconds_bucket{le="0.005",outcome="accepted"}',
    );
    expect(value(text, 'ob_events_pending_sets')).toBe(3);
    expect(value(text, `ob_events_pending_sets_by_client{client_id="${poller.clientId}"}`)).toBe(3);
    expect(value(text, 'ob_events_oldest_pending_age_seconds')).toBeGreaterThanOrEqual(0);
    expect(value(text, 'ob_events_push_failed_sets')).toBe(0);
    expect(value(text, 'ob_events_long_polls_waiting')).toBe(0);
    expect(value(text, 'ob_events_db_pool_connections{state="used"}')).toBeGreaterThanOrEqual(0);
    expect(text).toContain('ob_events_process_resident_memory_bytes');
    // Routes are patterns, never raw paths or ids.
    expect(text).toMatch(
      /ob_events_http_requests_total\{listener="api",route="\/open-banking\/v3\.1\/events",method="POST",status="200"\} 1/,
    );
    expect(text).toMatch(
      /ob_events_http_requests_total\{listener="api",route="\/token",method="POST",status="401"\} 1/,
    );
    expect(text).not.toContain(pushedJti!);
  });
});
