// A Postgres outage seen by a running server: its database connections go through a TCP proxy
// that the test cuts (open connections dropped, new ones refused) and restores. Every endpoint
// answers 503 with Retry-After in its own error shape, the outage is logged once (not per
// request), and the server recovers by itself.
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { isDatabaseUnavailable } from '../src/db/outage.js';
import { startServer } from '../src/main.js';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { eventFor, subscribe } from './helpers/fixtures.js';
import { call } from './helpers/http.js';
import { expectObieShape } from './helpers/obieSchema.js';
import { eventually } from './helpers/push.js';
import { testEnv, type TestServer } from './helpers/server.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcpProxy.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

const SECRET = 'test-admin-secret-0123456789';

it('when errors say the database cannot be reached, then they are classified as an outage, and query errors are not', () => {
  const outage = [
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    }),
    Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
    Object.assign(new Error('connection failure'), { code: '08006' }),
    new Error('Connection terminated unexpectedly'),
    Object.assign(new Error('Knex: Timeout acquiring a connection. The pool is probably full.'), {
      name: 'KnexTimeoutError',
    }),
    new AggregateError([Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })], ''),
  ];
  for (const err of outage) expect(isDatabaseUnavailable(err), String(err)).toBe(true);
  const notOutage = [
    Object.assign(new Error('duplicate key'), { code: '23505' }),
    Object.assign(new Error('syntax error'), { code: '42601' }),
    new Error('something else'),
    undefined,
    'ECONNREFUSED',
  ];
  for (const err of notOutage) expect(isDatabaseUnavailable(err), String(err)).toBe(false);
});

it('when knex puts the statement in front of a dropped connection (a ROLLBACK under an outage), then it is still an outage', () => {
  // Seen in the fault suite: a transaction's ROLLBACK on a connection the stop had cut was
  // answered 500 ("ROLLBACK - Connection terminated unexpectedly").
  expect(isDatabaseUnavailable(new Error('ROLLBACK - Connection terminated unexpectedly'))).toBe(
    true,
  );
  expect(
    isDatabaseUnavailable(
      Object.assign(new Error('insert into "x" - duplicate key value'), { code: '23505' }),
    ),
  ).toBe(false);
});

describePostgres('a database outage', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let server: TestServer;
  let tpp: TestTpp;
  let token: string;
  const lines: { level: number; msg: string }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const target = new URL(db.url!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const config = loadConfig(
      testEnv(db, {
        DATABASE_URL: proxy.urlFor(db.url!),
        ADMIN_API_SECRET: SECRET,
        LONG_POLL_SECONDS: '10',
        PUSH_CONCURRENCY: '0',
      }),
    );
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean))
          lines.push(JSON.parse(l) as { level: number; msg: string });
        done();
      },
    });
    const running = await startServer({ config, logger: pino({ level: 'info' }, sink) });
    server = {
      url: `https://127.0.0.1:${running.apiPort}`,
      adminUrl: `http://127.0.0.1:${running.adminPort}`,
      config,
      server: running,
      stop: () => running.stop(),
    };
    tpp = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId);
    token = await tpp.accessToken();
  });
  afterAll(async () => {
    await proxy?.restore().catch(() => {});
    await server?.stop();
    await proxy?.close();
    await db?.drop();
  });

  const poll = (body: unknown) =>
    call(tpp.agent, `${server.url}/open-banking/v3.1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const adminPublish = async () => {
    const body = JSON.stringify({ events: [eventFor(tpp.clientId)] });
    const res = await fetch(`${server.adminUrl}/admin/v1/events`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-ob-events-signature': signAdminRequest({
          secret: SECRET,
          method: 'POST',
          path: '/admin/v1/events',
          body,
        }),
      },
      body,
    });
    return {
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      body: await res.json(),
    };
  };
  const postToken = async () => {
    const { signClientAssertion, JWT_BEARER, postToken: post } = await import('./helpers/tpp.js');
    return post(server, tpp.agent, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await signClientAssertion(tpp, server),
    });
  };

  it('when the database goes away, then every endpoint answers 503 with Retry-After in its own shape, the outage is logged once, and all recovers when it is back', async () => {
    // A long poll waits through the outage.
    const waiting = poll({ returnImmediately: false, maxEvents: 5 });
    await eventually(
      () => Promise.resolve(server.server.services.longPolls.size === 1 || undefined),
      5_000,
      'the long poll waits',
    );
    await new Promise((r) => setTimeout(r, 500)); // past its first look at the database

    await proxy.cut();
    await new Promise((r) => setTimeout(r, 1_100)); // the access token's client cache (1 s) ends

    const tokenRes = await postToken();
    expect(tokenRes.status, tokenRes.text).toBe(503);
    expect(tokenRes.headers['retry-after']).toMatch(/^\d+$/);
    expect(tokenRes.headers['cache-control']).toBe('no-store');
    expect(tokenRes.json()).toMatchObject({ error: 'temporarily_unavailable' });

    for (let i = 0; i < 5; i++) {
      const res = await poll({ returnImmediately: true });
      expect(res.status, res.text).toBe(503);
      expect(res.headers['retry-after']).toMatch(/^\d+$/);
      expectObieShape('OBErrorResponse1', res.json());
    }
    const subs = await call(tpp.agent, `${server.url}/open-banking/v3.1/event-subscriptions`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(subs.status, subs.text).toBe(503);
    expectObieShape('OBErrorResponse1', subs.json());

    const published = await adminPublish();
    expect(published.status).toBe(503);
    expect(published.retryAfter).toMatch(/^\d+$/);
    expect(published.body).toMatchObject({ Errors: [{ ErrorCode: 'UK.OBIE.UnexpectedError' }] });
    expect((await fetch(`${server.adminUrl}/health/ready`)).status).toBe(503);

    const warned = lines.filter((l) => l.msg.startsWith('database unavailable'));
    expect(warned).toHaveLength(1);
    expect(warned[0]!.level).toBe(40); // warn
    expect(lines.filter((l) => l.level >= 50)).toEqual([]); // nothing at error level

    await proxy.restore();
    await eventually(
      async () => (await fetch(`${server.adminUrl}/health/ready`)).status === 200 || undefined,
      10_000,
      'ready again',
    );
    // The long poll that waited through the outage gets a SET published after it.
    const after = await adminPublish();
    expect(after.status).toBe(200);
    const answer = await waiting;
    expect(answer.status, answer.text).toBe(200);
    expect(Object.keys(answer.json<{ sets: object }>().sets)).toHaveLength(1);

    expect((await postToken()).status).toBe(200);
    await eventually(
      () =>
        Promise.resolve(
          lines.some((l) => l.msg === 'database available again' && l.level === 30) || undefined,
        ),
      5_000,
      'the end of the outage is logged',
    );
    expect(lines.filter((l) => l.msg.startsWith('database unavailable'))).toHaveLength(1);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
  }, 30_000);
});
