// Values Postgres text cannot hold (U+0000, lone UTF-16 surrogates) and bodies that are not valid
// UTF-8, at every endpoint that takes them: each is the caller's 400/401 in the endpoint's own
// error shape, never a 500, never a half-written row, and never text altered and then signed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { eventFor } from './helpers/fixtures.js';
import { call, type TestResponse } from './helpers/http.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import {
  createTestTpp,
  JWT_BEARER,
  postToken,
  signClientAssertion,
  type TestTpp,
} from './helpers/tpp.js';

const SECRET = 'test-admin-secret-0123456789';
const NUL = '\u0000';
const LONE = '\ud800';

describe('hostile input', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  let token: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: { ADMIN_API_SECRET: SECRET, REQUIRE_REQUEST_SIGNATURE: 'false' },
    });
    tpp = await createTestTpp(server);
    token = await tpp.accessToken();
  });
  afterAll(async () => {
    await tpp?.agent.close();
    await server?.stop();
    await db?.drop();
  });

  function api(method: string, path: string, body?: string | Buffer): Promise<TestResponse> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return call(tpp.agent, `${server.url}${path}`, { method, headers, ...(body ? { body } : {}) });
  }

  async function adminPost(body: string | Buffer) {
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
    return { status: res.status, body: (await res.json()) as { Errors?: { Path?: string }[] } };
  }

  async function storedEvents(): Promise<number> {
    const [row] = await db.knex('events').count<{ count: string }[]>('* as count');
    return Number(row!.count);
  }

  describe('at /token', () => {
    it('when client_id=%00 is sent, then 400 invalid_request (not 500)', async () => {
      const res = await postToken(server, tpp.agent, {
        grant_type: 'client_credentials',
        client_id: NUL,
      });
      expect(res.status).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_request' });
    });

    it('when client_id is a percent-encoded lone surrogate, then 401 invalid_client (not 500)', async () => {
      const res = await call(tpp.agent, `${server.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials&client_id=%ED%A0%80',
      });
      expect(res.status).toBe(401);
      expect(res.json()).toMatchObject({ error: 'invalid_client' });
    });

    it.each([
      ['jti', { jti: `a${NUL}b` }],
      ['jti', { jti: `a${LONE}b` }],
      ['iss and sub', { iss: `x${NUL}`, sub: `x${NUL}` }],
      ['iss and sub', { iss: LONE, sub: LONE }],
    ])(
      'when a signed assertion has U+0000 or a lone surrogate in its %s, then 401 invalid_client',
      async (_name, claims) => {
        const assertion = await signClientAssertion(tpp, server, { claims });
        const res = await postToken(server, tpp.agent, {
          grant_type: 'client_credentials',
          client_assertion_type: JWT_BEARER,
          client_assertion: assertion,
        });
        expect(res.status).toBe(401);
        expect(res.json()).toMatchObject({ error: 'invalid_client' });
      },
    );

    it('when a bad jti arrives together with good requests, then only it is refused', async () => {
      const good = () => signClientAssertion(tpp, server);
      const bad = signClientAssertion(tpp, server, { claims: { jti: `x${NUL}` } });
      const assertions = await Promise.all([good(), bad, good(), good()]);
      const answers = await Promise.all(
        assertions.map((a) =>
          postToken(server, tpp.agent, {
            grant_type: 'client_credentials',
            client_assertion_type: JWT_BEARER,
            client_assertion: a,
          }),
        ),
      );
      expect(answers.map((r) => r.status)).toEqual([200, 401, 200, 200]);
    });
  });

  describe('on the OBIE API', () => {
    it('when DELETE /event-subscriptions/%00, then 400 UK.OBIE.Resource.NotFound', async () => {
      const res = await api('DELETE', '/open-banking/v3.1/event-subscriptions/%00');
      expect(res.status).toBe(400);
      expect(res.json()).toMatchObject({ Errors: [{ ErrorCode: 'UK.OBIE.Resource.NotFound' }] });
    });

    it.each([
      [
        'a setErrs key',
        JSON.stringify({ setErrs: { [NUL]: { err: 'jwtIss', description: 'x' } } }),
      ],
      [
        'a setErrs value',
        JSON.stringify({
          setErrs: {
            '0190e3a0-0000-7000-8000-000000000000': { err: 'jwtIss', description: `x${NUL}` },
          },
        }),
      ],
      ['a lone surrogate in ack', '{"ack":["\\ud800"]}'],
    ])('when POST /events has U+0000 or a lone surrogate in %s, then 400', async (_n, body) => {
      const res = await api('POST', '/open-banking/v3.1/events', body);
      expect(res.status, res.text).toBe(400);
      expect(res.json()).toMatchObject({ Errors: [{ ErrorCode: 'UK.OBIE.Field.Invalid' }] });
    });

    it('when a subscription body is not valid UTF-8, then 400 and nothing is stored', async () => {
      const body = Buffer.concat([
        Buffer.from('{"Data":{"Version":"3.1","CallbackUrl":"https://tpp.example/v3.1/'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('/event-notifications"}}'),
      ]);
      const res = await api('POST', '/open-banking/v3.1/event-subscriptions', body);
      expect(res.status).toBe(400);
      expect(res.json()).toMatchObject({
        Errors: [{ ErrorCode: 'UK.OBIE.Resource.InvalidFormat' }],
      });
      expect(await db.knex('event_subscriptions').where({ client_id: tpp.clientId })).toEqual([]);
    });

    it('when POST /events is not valid UTF-8, then 400', async () => {
      const body = Buffer.concat([
        Buffer.from('{"ack":["'),
        Buffer.from([0xc3]),
        Buffer.from('"]}'),
      ]);
      expect((await api('POST', '/open-banking/v3.1/events', body)).status).toBe(400);
    });
  });

  describe('on the admin events API', () => {
    it.each([
      ['clientId', { clientId: NUL }],
      ['subject', { subject: { id: `p${NUL}`, type: 'domestic-payment' } }],
      ['txn', { txn: `t${LONE}` }],
      ['idempotencyKey', { idempotencyKey: `k${NUL}` }],
    ])(
      'when an event has U+0000 or a lone surrogate in %s, then 400 and nothing is published',
      async (_n, overrides) => {
        const before = await storedEvents();
        const event = { ...eventFor(tpp.clientId), ...overrides };
        const res = await adminPost(JSON.stringify({ events: [event] }));
        expect(res.status).toBe(400);
        expect(res.body.Errors?.[0]?.Path).toMatch(/^events\[0\]/);
        expect(await storedEvents()).toBe(before);
      },
    );

    it('when the body is not valid UTF-8, then 400 and no SET is signed (not U+FFFD)', async () => {
      const before = await storedEvents();
      const json = JSON.stringify({
        events: [eventFor(tpp.clientId, { txn: 'caf\u00e9' })],
      });
      // "café" with its é cut to a lone lead byte.
      const bytes = Buffer.from(json.replace('caf\u00e9', 'caf\u0001'), 'utf8');
      bytes[bytes.indexOf(0x01)] = 0xc3;
      const res = await adminPost(bytes);
      expect(res.status).toBe(400);
      expect(await storedEvents()).toBe(before);
    });
  });
});
