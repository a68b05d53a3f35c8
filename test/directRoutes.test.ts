// A request for a route's exact path (GET /open-banking/v3.1/event-subscriptions) runs its steps
// straight from a table (src/http/routes/obieApi.ts); another spelling of the same route (a
// trailing slash) goes through the express routers. Both must answer alike, refusals included:
// the table is a shortcut past path matching, never past a check.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, type TestResponse } from './helpers/http.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

// What differs between two answers to the same request anyway.
const VOLATILE = new Set(['date', 'x-fapi-interaction-id', 'x-jws-signature', 'keep-alive']);

function comparable(res: TestResponse) {
  const headers = Object.fromEntries(
    Object.entries(res.headers).filter(([name]) => !VOLATILE.has(name)),
  );
  // Error bodies carry the interaction id as their Id; it differs by request.
  const text = res.text.replace(/"Id":"[^"]*"/, '"Id":"…"');
  return { status: res.status, headers, text };
}

describe('exact route paths answered from the table', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  let narrow: TestTpp;
  let token: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    tpp = await createTestTpp(server);
    narrow = await createTestTpp(server, { scopes: ['eventpolling'] });
    token = await tpp.accessToken();
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  /** The same request to the exact path and to its trailing-slash spelling. */
  async function both(
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: string },
    agent = tpp.agent,
  ) {
    const direct = await call(agent, `${server.url}${path}`, init);
    const routed = await call(agent, `${server.url}${path}/`, init);
    expect(comparable(direct)).toEqual(comparable(routed));
    return direct;
  }

  const SUBSCRIPTIONS = '/open-banking/v3.1/event-subscriptions';
  const V4_SUBSCRIPTIONS = '/open-banking/v4.0/event-subscriptions';
  const EVENTS = '/open-banking/v3.1/events';

  it('when there is no access token, then both answer 401 alike', async () => {
    for (const path of [SUBSCRIPTIONS, V4_SUBSCRIPTIONS, EVENTS]) {
      const res = await both(path, { method: path === EVENTS ? 'POST' : 'GET' });
      expect(res.status).toBe(401);
    }
  });

  it('when the token is bound to another certificate, then both answer 401 alike', async () => {
    const res = await both(
      SUBSCRIPTIONS,
      { headers: { authorization: `Bearer ${token}` } },
      narrow.agent,
    );
    expect(res.status).toBe(401);
  });

  it('when the token lacks a subscription scope, then both answer 403 alike', async () => {
    const polling = await narrow.accessToken();
    const res = await both(
      SUBSCRIPTIONS,
      { headers: { authorization: `Bearer ${polling}` } },
      narrow.agent,
    );
    expect(res.status).toBe(403);
  });

  it('when a header is malformed, then both answer 400 in the version’s error shape', async () => {
    const headers = { authorization: `Bearer ${token}`, 'x-fapi-auth-date': 'today' };
    const v31 = await both(SUBSCRIPTIONS, { headers });
    expect(v31.status).toBe(400);
    expect(v31.text).toContain('UK.OBIE.Header.Invalid');
    const v40 = await both(V4_SUBSCRIPTIONS, { headers });
    expect(v40.status).toBe(400);
    expect(v40.text).not.toContain('UK.OBIE.');
  });

  it('when the poll body is not JSON, then both answer 415 alike', async () => {
    const res = await both(EVENTS, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
      body: 'maxEvents=1',
    });
    expect(res.status).toBe(415);
  });

  it('when the request is good, then both answer 200 with the same body, signed', async () => {
    const res = await both(SUBSCRIPTIONS, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers['x-jws-signature']).toMatch(/^[\w-]+\.\.[\w-]+$/);
    const polled = await both(EVENTS, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ returnImmediately: true }),
    });
    expect(polled.json()).toEqual({ sets: {}, moreAvailable: false });
  });

  it('when the method is not the route’s, then both answer 405 with Allow', async () => {
    const res = await both(SUBSCRIPTIONS, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('POST, GET');
  });

  it('when requests were answered from the table, then /metrics names their route pattern', async () => {
    await call(tpp.agent, `${server.url}${V4_SUBSCRIPTIONS}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
    expect(text).toMatch(
      /ob_events_http_requests_total\{listener="api",route="\/open-banking\/v4\.0\/event-subscriptions",method="GET",status="200"\} [1-9]/,
    );
    expect(text).not.toContain('route="unmatched",method="GET",status="200"');
  });
});
