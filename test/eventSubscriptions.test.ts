// The OBIE Event Subscription API over mTLS with real tokens: every rule of issue 4 and every
// error code. Each response is checked against the official OBIE 3.1.11 schema here, and against
// our own document by the server itself (VALIDATE_RESPONSES=true in tests: a mismatch is a 500,
// and `api()` fails on any 5xx). Signed responses are verified over the exact bytes received.
import { randomUUID } from 'node:crypto';
import { flattenedVerify, importJWK, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, type TestResponse } from './helpers/http.js';
import { detachedJws, OB_CRIT, OB_IAT, OB_ISS, OB_TAN } from './helpers/jws.js';
import { expectObieShape } from './helpers/obieSchema.js';
import { startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

const PATH = '/open-banking/v3.1/event-subscriptions';
const CALLBACK = 'https://localhost/open-banking/v3.1/event-notifications';

interface ObError {
  Code: string;
  Id?: string;
  Message: string;
  Errors: { ErrorCode: string; Message: string; Path?: string; Url?: string }[];
}

interface SubscriptionBody {
  Data: {
    EventSubscriptionId: string;
    CallbackUrl?: string;
    Version: string;
    EventTypes?: string[];
  };
  Links: { Self: string };
  Meta: Record<string, never>;
}

interface Caller {
  tpp: TestTpp;
  token: string;
}

interface ApiOptions {
  body?: unknown;
  /** true (default for POST/PUT): a valid signature; false: none; a string: that header value. */
  sign?: boolean | string;
  headers?: Record<string, string>;
  token?: string | null;
}

/** One request; fails the test on any 5xx or a response without x-fapi-interaction-id. */
async function api(
  server: TestServer,
  caller: Caller,
  method: string,
  path: string,
  opts: ApiOptions = {},
): Promise<TestResponse> {
  const body =
    opts.body === undefined
      ? undefined
      : typeof opts.body === 'string'
        ? opts.body
        : JSON.stringify(opts.body);
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? caller.token}`;
  if (body !== undefined) headers['content-type'] ??= 'application/json';
  const sign = opts.sign ?? (method === 'POST' || method === 'PUT');
  if (typeof sign === 'string') headers['x-jws-signature'] = sign;
  else if (sign) headers['x-jws-signature'] = signFor(caller.tpp, body ?? '');
  const res = await call(caller.tpp.agent, `${server.url}${path}`, { method, headers, body });
  expect(res.status, `${method} ${path}: ${res.text}`).toBeLessThan(500);
  expect(res.headers['x-fapi-interaction-id']).toBeTruthy();
  if (res.status >= 400 && res.text !== '') expectObieShape('OBErrorResponse1', res.json());
  return res;
}

function signFor(
  tpp: TestTpp,
  body: string,
  opts: Partial<Parameters<typeof detachedJws>[1]> = {},
) {
  return detachedJws(body, { key: tpp.signingKey, kid: tpp.kid, iss: tpp.clientId, ...opts });
}

function expectError(res: TestResponse, status: number, code: string, path?: string): ObError {
  expect(res.status, res.text).toBe(status);
  const body = res.json<ObError>();
  expect(body.Errors.map((e) => e.ErrorCode)).toContain(code);
  if (path !== undefined) expect(body.Errors.find((e) => e.ErrorCode === code)?.Path).toBe(path);
  expect(body.Id).toBe(res.headers['x-fapi-interaction-id']);
  return body;
}

/** Verifies our x-jws-signature over the exact bytes received; returns its header. */
async function expectSignedBy(server: TestServer, res: TestResponse, caller: Caller) {
  const value = res.headers['x-jws-signature'];
  expect(typeof value).toBe('string');
  const [h, payload, s] = (value as string).split('.');
  expect(payload).toBe('');
  const jwks = (await call(caller.tpp.agent, `${server.url}/jwks`)).json<{ keys: JWK[] }>();
  const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  expect(jwk, 'the kid is in /jwks').toBeDefined();
  await flattenedVerify(
    { protected: h!, payload: Buffer.from(res.text).toString('base64url'), signature: s! },
    await importJWK(jwk!, 'PS256'),
    { algorithms: ['PS256'], crit: Object.fromEntries(OB_CRIT.map((c) => [c, true])) },
  );
  expect(header).toMatchObject({
    alg: 'PS256',
    typ: 'JOSE',
    crit: OB_CRIT,
    [OB_ISS]: server.config.push.financialId,
    [OB_TAN]: 'openbanking.org.uk',
  });
  expect(header[OB_IAT]).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  return header;
}

const subscription = (data: Record<string, unknown> = {}) => ({
  Data: { CallbackUrl: CALLBACK, Version: '3.1', ...data },
});

describe('event subscriptions', () => {
  let db: TestDatabase;
  let server: TestServer;
  const callers: TestTpp[] = [];

  /** A TPP of its own (one subscription per client) with a subscription-scoped token. */
  async function newCaller(scope?: string): Promise<Caller> {
    const tpp = await createTestTpp(server);
    callers.push(tpp);
    return { tpp, token: await tpp.accessToken(scope) };
  }

  async function created(caller: Caller, data: Record<string, unknown> = {}) {
    const res = await api(server, caller, 'POST', PATH, { body: subscription(data) });
    expect(res.status, res.text).toBe(201);
    return res.json<SubscriptionBody>();
  }

  /** For requests that never create a subscription: one TPP saves a key pair and a token each. */
  let shared: Caller;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    shared = await newCaller();
  });
  afterAll(async () => {
    await Promise.all(callers.map((t) => t.agent.close()));
    await server?.stop();
    await db?.drop();
  });

  describe('create, read, replace, delete', () => {
    it('when a client has no subscription, then GET is 200 with an empty list, Links.Self and Meta, signed', async () => {
      const caller = await newCaller();
      const res = await api(server, caller, 'GET', PATH);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({
        Data: { EventSubscription: [] },
        Links: { Self: `${TEST_PUBLIC_URL}${PATH}` },
        Meta: {},
      });
      expectObieShape('OBEventSubscriptionsResponse1', res.json());
      await expectSignedBy(server, res, caller);
    });

    it('when a client POSTs a subscription, then 201 with our id, absolute Links.Self, Meta {}, normalised EventTypes, signed', async () => {
      const caller = await newCaller();
      const res = await api(server, caller, 'POST', PATH, {
        body: subscription({
          EventTypes: [
            'urn:uk:org:openbanking:events:resource-update',
            'UK.OBIE.Consent-Authorization-Revoked',
            'UK.OBIE.Resource-Update',
          ],
        }),
      });
      expect(res.status).toBe(201);
      const body = res.json<SubscriptionBody>();
      expectObieShape('OBEventSubscriptionResponse1', body);
      expect(body.Data.EventSubscriptionId).toMatch(/^es_[0-9A-Za-z]{24}$/);
      expect(body).toEqual({
        Data: {
          EventSubscriptionId: body.Data.EventSubscriptionId,
          CallbackUrl: CALLBACK,
          Version: '3.1',
          EventTypes: ['UK.OBIE.Resource-Update', 'UK.OBIE.Consent-Authorization-Revoked'],
        },
        Links: { Self: `${TEST_PUBLIC_URL}${PATH}/${body.Data.EventSubscriptionId}` },
        Meta: {},
      });
      await expectSignedBy(server, res, caller);

      const read = await api(server, caller, 'GET', PATH);
      expect(read.json<{ Data: unknown }>().Data).toEqual({ EventSubscription: [body.Data] });
      expectObieShape('OBEventSubscriptionsResponse1', read.json());
    });

    it('when a client POSTs without CallbackUrl and EventTypes, then it is polling-only for every type and the response omits both', async () => {
      const caller = await newCaller();
      const res = await api(server, caller, 'POST', PATH, {
        body: { Data: { Version: '3.1.11' } },
      });
      expect(res.status).toBe(201);
      const data = res.json<SubscriptionBody>().Data;
      expect(data).toEqual({ EventSubscriptionId: data.EventSubscriptionId, Version: '3.1.11' });
      const row = await db
        .knex('event_subscriptions')
        .where({ client_id: caller.tpp.clientId })
        .first();
      expect(row).toMatchObject({ callback_url: null, event_types: null, version: '3.1.11' });
    });

    it('when a client that has a subscription POSTs again, then 409 UK.OBIE.Rules.ResourceAlreadyExists', async () => {
      const caller = await newCaller();
      await created(caller);
      const res = await api(server, caller, 'POST', PATH, { body: subscription() });
      expectError(res, 409, 'UK.OBIE.Rules.ResourceAlreadyExists');
    });

    it('when two POSTs of one client race, then one is 201 and the other 409', async () => {
      const caller = await newCaller();
      const results = await Promise.all(
        [1, 2].map(() => api(server, caller, 'POST', PATH, { body: subscription() })),
      );
      expect(results.map((r) => r.status).sort()).toEqual([201, 409]);
    });

    it('when a client PUTs a full replacement, then 200 signed, and what the body left out is gone', async () => {
      const caller = await newCaller();
      const { Data } = await created(caller, { EventTypes: ['UK.OBIE.Resource-Update'] });
      const id = Data.EventSubscriptionId;
      const res = await api(server, caller, 'PUT', `${PATH}/${id}`, {
        body: { Data: { EventSubscriptionId: id, Version: '3.1.10' } },
      });
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({
        Data: { EventSubscriptionId: id, Version: '3.1.10' },
        Links: { Self: `${TEST_PUBLIC_URL}${PATH}/${id}` },
        Meta: {},
      });
      expectObieShape('OBEventSubscriptionResponse1', res.json());
      await expectSignedBy(server, res, caller);
      const read = await api(server, caller, 'GET', PATH);
      expect(read.json<{ Data: unknown }>().Data).toEqual({
        EventSubscription: [{ EventSubscriptionId: id, Version: '3.1.10' }],
      });
    });

    it('when the PUT body carries Links and Meta (the OBIE request schema allows them), then it is accepted', async () => {
      const caller = await newCaller();
      const first = await created(caller);
      const res = await api(server, caller, 'PUT', `${PATH}/${first.Data.EventSubscriptionId}`, {
        body: { ...first, Data: { ...first.Data, EventTypes: ['UK.OBIE.Consent-Access-Revoked'] } },
      });
      expect(res.status).toBe(200);
      expect(res.json<SubscriptionBody>().Data.EventTypes).toEqual([
        'UK.OBIE.Consent-Access-Revoked',
      ]);
    });

    it('when the PUT body names another EventSubscriptionId than the path, then 400 UK.OBIE.Field.Invalid', async () => {
      const caller = await newCaller();
      const { Data } = await created(caller);
      const res = await api(server, caller, 'PUT', `${PATH}/${Data.EventSubscriptionId}`, {
        body: { Data: { ...Data, EventSubscriptionId: 'es_other' } },
      });
      expectError(res, 400, 'UK.OBIE.Field.Invalid', 'Data.EventSubscriptionId');
    });

    it('when the id does not exist, then PUT and DELETE are 400 UK.OBIE.Resource.NotFound', async () => {
      const caller = shared;
      const put = await api(server, caller, 'PUT', `${PATH}/es_nope`, {
        body: { Data: { EventSubscriptionId: 'es_nope', Version: '3.1' } },
      });
      expectError(put, 400, 'UK.OBIE.Resource.NotFound');
      const del = await api(server, caller, 'DELETE', `${PATH}/es_nope`);
      expectError(del, 400, 'UK.OBIE.Resource.NotFound');
    });

    it("when a client PUTs or DELETEs another client's subscription, then 403 and it is unchanged", async () => {
      const owner = await newCaller();
      const intruder = await newCaller();
      const { Data } = await created(owner);
      const path = `${PATH}/${Data.EventSubscriptionId}`;
      const put = await api(server, intruder, 'PUT', path, {
        body: { Data: { EventSubscriptionId: Data.EventSubscriptionId, Version: '3.1' } },
      });
      expectError(put, 403, 'UK.OBIE.Field.Invalid');
      const del = await api(server, intruder, 'DELETE', path);
      expect(del.status).toBe(403);
      const read = await api(server, owner, 'GET', PATH);
      expect(read.json<{ Data: unknown }>().Data).toEqual({ EventSubscription: [Data] });
      expect((await api(server, intruder, 'GET', PATH)).json<{ Data: unknown }>().Data).toEqual({
        EventSubscription: [],
      });
    });

    it('when a client DELETEs its subscription, then 204 with no body and no signature, and GET is empty again', async () => {
      const caller = await newCaller();
      const { Data } = await created(caller);
      const res = await api(server, caller, 'DELETE', `${PATH}/${Data.EventSubscriptionId}`);
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      expect(res.headers['x-jws-signature']).toBeUndefined();
      expect((await api(server, caller, 'GET', PATH)).json<{ Data: unknown }>().Data).toEqual({
        EventSubscription: [],
      });
      // and it can subscribe again
      await created(caller);
    });
  });

  describe('pending deliveries', () => {
    async function pendingSet(clientId: string, pushState: 'due' | null) {
      const jti = randomUUID();
      await db.knex('events').insert({
        jti,
        client_id: clientId,
        event_types: ['UK.OBIE.Resource-Update'],
        subject_id: 'pmt-1',
        subject_type: 'domestic-payment',
        txn: jti,
        kid: 'kid-1',
        set_jws: 'e30.e30.sig',
      });
      await db.knex('event_deliveries').insert({
        jti,
        client_id: clientId,
        push_state: pushState,
        push_next_at: pushState ? new Date() : null,
      });
      return jti;
    }
    const deliveryOf = (jti: string) => db.knex('event_deliveries').where({ jti }).first();

    it('when a subscription is deleted, then its pending SETs are discarded and other clients keep theirs', async () => {
      const caller = await newCaller();
      const other = await newCaller();
      const { Data } = await created(caller);
      const mine = [
        await pendingSet(caller.tpp.clientId, 'due'),
        await pendingSet(caller.tpp.clientId, null),
      ];
      const theirs = await pendingSet(other.tpp.clientId, null);
      await db.knex('event_deliveries').where({ jti: mine[1] }).update({
        state: 'acknowledged',
        resolved_at: new Date(),
        resolution: 'ack',
      });
      const res = await api(server, caller, 'DELETE', `${PATH}/${Data.EventSubscriptionId}`);
      expect(res.status).toBe(204);
      expect(await deliveryOf(mine[0]!)).toMatchObject({
        state: 'discarded',
        resolution: 'subscription_deleted',
      });
      expect((await deliveryOf(mine[0]!)).resolved_at).toBeInstanceOf(Date);
      expect(await deliveryOf(mine[1]!)).toMatchObject({
        state: 'acknowledged',
        resolution: 'ack',
      });
      expect(await deliveryOf(theirs)).toMatchObject({ state: 'pending', resolution: null });
    });

    it('when a PUT drops the CallbackUrl, then pending SETs due for push stop being pushed but stay pending', async () => {
      const caller = await newCaller();
      const { Data } = await created(caller);
      const jti = await pendingSet(caller.tpp.clientId, 'due');
      const keep = await api(server, caller, 'PUT', `${PATH}/${Data.EventSubscriptionId}`, {
        body: { Data },
      });
      expect(keep.status).toBe(200);
      expect(await deliveryOf(jti)).toMatchObject({ state: 'pending', push_state: 'due' });
      const drop = await api(server, caller, 'PUT', `${PATH}/${Data.EventSubscriptionId}`, {
        body: { Data: { EventSubscriptionId: Data.EventSubscriptionId, Version: '3.1' } },
      });
      expect(drop.status).toBe(200);
      expect(await deliveryOf(jti)).toMatchObject({
        state: 'pending',
        push_state: null,
        push_next_at: null,
      });
    });
  });

  describe('body rules', () => {
    it('when Version is missing, then 400 UK.OBIE.Field.Missing at Data.Version', async () => {
      const caller = shared;
      const res = await api(server, caller, 'POST', PATH, {
        body: { Data: { CallbackUrl: CALLBACK } },
      });
      expectError(res, 400, 'UK.OBIE.Field.Missing', 'Data.Version');
    });

    it.each(['4.0', '3.0', '3.1.12', 'latest', ''])(
      'when Version is %j, then 400 UK.OBIE.Field.Invalid at Data.Version',
      async (version) => {
        const caller = shared;
        const res = await api(server, caller, 'POST', PATH, {
          body: subscription({ Version: version }),
        });
        expectError(res, 400, 'UK.OBIE.Field.Invalid', 'Data.Version');
      },
    );

    it('when Version is a JSON number, then 400 (no type coercion)', async () => {
      const caller = shared;
      const res = await api(server, caller, 'POST', PATH, { body: subscription({ Version: 3.1 }) });
      expectError(res, 400, 'UK.OBIE.Field.Invalid', 'Data.Version');
    });

    it('when an EventType is unknown, then 400 UK.OBIE.Unsupported.EventType with its Path and a Url', async () => {
      const caller = shared;
      const res = await api(server, caller, 'POST', PATH, {
        body: subscription({ EventTypes: ['UK.OBIE.Resource-Update', 'UK.OBIE.Payment-Made'] }),
      });
      const body = expectError(res, 400, 'UK.OBIE.Unsupported.EventType', 'Data.EventTypes[1]');
      expect(body.Errors[0]?.Url).toBe(
        `${TEST_PUBLIC_URL}/open-banking/v3.1/openapi.json#/components/schemas/OBEventType1Code`,
      );
    });

    it('when a Version below 3.1.2 asks for a type newer than resource-update, then 400 UK.OBIE.Unsupported.EventType', async () => {
      const caller = await newCaller();
      const res = await api(server, caller, 'POST', PATH, {
        body: subscription({
          Version: '3.1.1',
          EventTypes: ['UK.OBIE.Consent-Authorization-Revoked'],
        }),
      });
      expectError(res, 400, 'UK.OBIE.Unsupported.EventType', 'Data.EventTypes[0]');
      const ok = await api(server, caller, 'POST', PATH, {
        body: subscription({ Version: '3.1.1', EventTypes: ['UK.OBIE.Resource-Update'] }),
      });
      expect(ok.status).toBe(201);
    });

    it('when the top level has an unknown member, then 400 UK.OBIE.Field.Unexpected', async () => {
      const caller = shared;
      const res = await api(server, caller, 'POST', PATH, {
        body: { ...subscription(), Extra: 1 },
      });
      expectError(res, 400, 'UK.OBIE.Field.Unexpected', 'Extra');
    });

    it('when EventTypes holds a number, then 400 UK.OBIE.Field.Invalid at the item', async () => {
      const caller = shared;
      const res = await api(server, caller, 'POST', PATH, {
        body: subscription({ EventTypes: [7] }),
      });
      expectError(res, 400, 'UK.OBIE.Field.Invalid', 'Data.EventTypes[0]');
    });

    it('when the body is not JSON, then 400 UK.OBIE.Resource.InvalidFormat', async () => {
      const caller = shared;
      const res = await api(server, caller, 'POST', PATH, { body: '{"Data":' });
      expectError(res, 400, 'UK.OBIE.Resource.InvalidFormat');
    });

    it.each([
      ['uses http', 'http://localhost/open-banking/v3.1/event-notifications'],
      [
        'does not end in /<version>/event-notifications',
        'https://localhost/open-banking/v3.1/events',
      ],
      ['carries credentials', 'https://u:p@localhost/open-banking/v3.1/event-notifications'],
      [
        'is over 2,000 characters',
        `https://localhost/${'a'.repeat(1990)}/v3.1/event-notifications`,
      ],
      ['is not a URI', 'not a url'],
      [
        'points at the metadata address',
        'https://169.254.169.254/open-banking/v3.1/event-notifications',
      ],
      ['points at a link-local address', 'https://[fe80::1]/open-banking/v3.1/event-notifications'],
    ])(
      'when the CallbackUrl %s, then 400 UK.OBIE.Field.Invalid at Data.CallbackUrl',
      async (_, url) => {
        const caller = shared;
        const res = await api(server, caller, 'POST', PATH, {
          body: subscription({ CallbackUrl: url }),
        });
        expectError(res, 400, 'UK.OBIE.Field.Invalid', 'Data.CallbackUrl');
      },
    );

    it('when a PUT sets an unacceptable CallbackUrl, then 400 and the subscription is unchanged', async () => {
      const caller = await newCaller();
      const { Data } = await created(caller);
      const res = await api(server, caller, 'PUT', `${PATH}/${Data.EventSubscriptionId}`, {
        body: {
          Data: { ...Data, CallbackUrl: 'https://169.254.169.254/v3.1/event-notifications' },
        },
      });
      expectError(res, 400, 'UK.OBIE.Field.Invalid', 'Data.CallbackUrl');
      const read = await api(server, caller, 'GET', PATH);
      expect(read.json<{ Data: unknown }>().Data).toEqual({ EventSubscription: [Data] });
    });

    it('when CALLBACK_ALLOW_PRIVATE_NETWORKS=true, then loopback literals and localhost are accepted', async () => {
      const caller = await newCaller();
      for (const host of ['127.0.0.1', 'localhost', '[::1]']) {
        const res = await api(server, caller, 'POST', PATH, {
          body: subscription({
            CallbackUrl: `https://${host}:9443/open-banking/v3.1/event-notifications`,
          }),
        });
        expect(res.status, host).toBe(201);
        const id = res.json<SubscriptionBody>().Data.EventSubscriptionId;
        expect((await api(server, caller, 'DELETE', `${PATH}/${id}`)).status).toBe(204);
      }
    });
  });

  describe('request signatures', () => {
    let caller: Caller;
    const body = JSON.stringify(subscription());
    beforeAll(async () => {
      caller = await newCaller();
    });
    const post = (sign: boolean | string, text = body) =>
      api(server, caller, 'POST', PATH, { body: text, sign });
    const now = () => Math.floor(Date.now() / 1000);

    it('when x-jws-signature is missing, then 400 UK.OBIE.Signature.Missing', async () => {
      expectError(await post(false), 400, 'UK.OBIE.Signature.Missing', 'x-jws-signature');
    });

    it.each([
      ['not a JWS', 'garbage'],
      ['a JWS with its payload attached', 'eyJhbGciOiJQUzI1NiJ9.eyJ4IjoxfQ.c2ln'],
      ['a header that is not JSON', `${Buffer.from('{').toString('base64url')}..c2ln`],
    ])('when x-jws-signature is %s, then 400 UK.OBIE.Signature.Malformed', async (_, value) => {
      expectError(await post(value), 400, 'UK.OBIE.Signature.Malformed', 'x-jws-signature');
    });

    it('when the kid is not a key of this client, then 400 UK.OBIE.Signature.Invalid', async () => {
      const other = await newCaller();
      // signed correctly, but by another client's registered key
      const value = detachedJws(body, {
        key: other.tpp.signingKey,
        kid: other.tpp.kid,
        iss: caller.tpp.clientId,
      });
      expectError(await post(value), 400, 'UK.OBIE.Signature.Invalid');
    });

    it('when the body was changed after signing, then 400 UK.OBIE.Signature.Invalid', async () => {
      const value = signFor(caller.tpp, body);
      const tampered = JSON.stringify(subscription({ Version: '3.1.2' }));
      expectError(await post(value, tampered), 400, 'UK.OBIE.Signature.Invalid');
    });

    it('when a critical OB header is missing, then 400 UK.OBIE.Signature.MissingClaim', async () => {
      const value = signFor(caller.tpp, body, { header: { [OB_TAN]: undefined } });
      expectError(await post(value), 400, 'UK.OBIE.Signature.MissingClaim');
    });

    it.each([
      ['the trust anchor is wrong', { tan: 'example.com' }],
      ['the iss is another', { iss: 'someone-else' }],
      ['iat is in the future', { iat: now() + 300 }],
      ['iat is too old', { iat: now() - 3600 }],
      ['alg is RS256', { header: { alg: 'RS256' }, padding: 'pkcs1' as const }],
    ])('when %s, then 400 UK.OBIE.Signature.InvalidClaim', async (_, opts) => {
      expectError(
        await post(signFor(caller.tpp, body, opts)),
        400,
        'UK.OBIE.Signature.InvalidClaim',
      );
    });

    it('when a PUT has no signature, then 400 UK.OBIE.Signature.Missing and nothing changes', async () => {
      const owner = await newCaller();
      const { Data } = await created(owner);
      const res = await api(server, owner, 'PUT', `${PATH}/${Data.EventSubscriptionId}`, {
        body: { Data: { EventSubscriptionId: Data.EventSubscriptionId, Version: '3.1' } },
        sign: false,
      });
      expectError(res, 400, 'UK.OBIE.Signature.Missing');
      expect((await api(server, owner, 'GET', PATH)).json<{ Data: unknown }>().Data).toEqual({
        EventSubscription: [Data],
      });
    });

    it('when the client is registered with its own signing iss, then signatures must carry that iss', async () => {
      const tpp = await createTestTpp(server);
      callers.push(tpp);
      await db
        .knex('clients')
        .where({ client_id: tpp.clientId })
        .update({ signing_iss: 'org-7/ssa-9' });
      await new Promise((r) => setTimeout(r, 1_100)); // client cache
      const c: Caller = { tpp, token: await tpp.accessToken() };
      const wrong = await api(server, c, 'POST', PATH, { body });
      expectError(wrong, 400, 'UK.OBIE.Signature.InvalidClaim');
      const right = await api(server, c, 'POST', PATH, {
        body,
        sign: signFor(tpp, body, { iss: 'org-7/ssa-9' }),
      });
      expect(right.status).toBe(201);
    });
  });

  describe('authentication', () => {
    it('when there is no access token, then 401 with no body', async () => {
      const caller = shared;
      const res = await api(server, caller, 'GET', PATH, { token: null });
      expect(res.status).toBe(401);
      expect(res.text).toBe('');
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    });

    it('when the token has only the eventpolling scope, then 403', async () => {
      const tpp = await createTestTpp(server, { scopes: ['eventpolling'] });
      callers.push(tpp);
      const res = await api(server, { tpp, token: await tpp.accessToken() }, 'GET', PATH);
      expect(res.status).toBe(403);
    });
  });

  describe('HTTP', () => {
    it('when the Content-Type is not JSON, then 415', async () => {
      const caller = shared;
      for (const type of [
        'text/plain',
        'application/jose+jwe',
        'application/x-www-form-urlencoded',
      ]) {
        const res = await api(server, caller, 'POST', PATH, {
          body: JSON.stringify(subscription()),
          headers: { 'content-type': type },
        });
        expect(res.status, type).toBe(415);
      }
    });

    it('when the Content-Type is application/json with charset=utf-8, then it is accepted', async () => {
      const caller = await newCaller();
      const res = await api(server, caller, 'POST', PATH, {
        body: subscription(),
        headers: { 'content-type': 'application/json; charset=utf-8' },
      });
      expect(res.status).toBe(201);
    });

    it('when Accept rules out JSON, then 406; */* and application/json are fine', async () => {
      const caller = shared;
      const res = await api(server, caller, 'GET', PATH, { headers: { accept: 'text/html' } });
      expectError(res, 406, 'UK.OBIE.Header.Invalid', 'Accept');
      for (const accept of ['*/*', 'application/json', 'text/html, application/json;q=0.5']) {
        expect((await api(server, caller, 'GET', PATH, { headers: { accept } })).status).toBe(200);
      }
    });

    it('when the body is over 64 KiB, then 413', async () => {
      const caller = shared;
      const big = JSON.stringify(subscription({ Padding: 'x'.repeat(65 * 1024) }));
      const res = await api(server, caller, 'POST', PATH, { body: big });
      expect(res.status).toBe(413);
    });

    it('when the method is not allowed on a known path, then 405 with Allow', async () => {
      const caller = shared;
      const patch = await api(server, caller, 'PATCH', PATH, { body: '{}', sign: false });
      expect(patch.status).toBe(405);
      expect(patch.headers.allow).toMatch(/GET/);
      expect(patch.headers.allow).toMatch(/POST/);
      const get = await api(server, caller, 'GET', `${PATH}/es_x`);
      expect(get.status).toBe(405);
      expect(get.headers.allow).toMatch(/PUT/);
      expect(get.headers.allow).toMatch(/DELETE/);
    });

    it('when a query parameter is sent, then 400 UK.OBIE.Field.Unexpected', async () => {
      const caller = shared;
      const res = await api(server, caller, 'GET', `${PATH}?page=2`);
      expectError(res, 400, 'UK.OBIE.Field.Unexpected', 'page');
    });

    it('when x-fapi-auth-date is not an RFC 7231 date, then 400 UK.OBIE.Header.Invalid', async () => {
      const caller = shared;
      const res = await api(server, caller, 'GET', PATH, {
        headers: { 'x-fapi-auth-date': 'today' },
      });
      expectError(res, 400, 'UK.OBIE.Header.Invalid', 'x-fapi-auth-date');
    });

    it('when the caller sends x-fapi-interaction-id, then every answer echoes it', async () => {
      const caller = shared;
      const id = randomUUID();
      const res = await api(server, caller, 'GET', PATH, {
        headers: { 'x-fapi-interaction-id': id },
      });
      expect(res.headers['x-fapi-interaction-id']).toBe(id);
      const bad = await api(server, caller, 'POST', PATH, {
        body: '{',
        headers: { 'x-fapi-interaction-id': id },
      });
      expect(bad.headers['x-fapi-interaction-id']).toBe(id);
    });

    it('when the OpenAPI document is fetched, then it is our document as JSON', async () => {
      const caller = shared;
      const res = await api(server, caller, 'GET', '/open-banking/v3.1/openapi.json');
      expect(res.status).toBe(200);
      const doc = res.json<{ paths: Record<string, unknown>; openapi: string }>();
      expect(doc.openapi).toMatch(/^3\./);
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining([
          PATH,
          `${PATH}/{EventSubscriptionId}`,
          '/open-banking/v3.1/events',
          '/token',
          '/jwks',
        ]),
      );
    });
  });
});

describe('event subscriptions with private networks refused and signatures optional', () => {
  let db: TestDatabase;
  let server: TestServer;
  let caller: Caller;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: { CALLBACK_ALLOW_PRIVATE_NETWORKS: 'false', REQUIRE_REQUEST_SIGNATURE: 'false' },
    });
    const tpp = await createTestTpp(server);
    caller = { tpp, token: await tpp.accessToken() };
  });
  afterAll(async () => {
    await caller?.tpp.agent.close();
    await server?.stop();
    await db?.drop();
  });

  it.each(['127.0.0.1', 'localhost', '[::1]', '10.1.2.3', '169.254.169.254'])(
    'when the CallbackUrl host is %s, then 400 UK.OBIE.Field.Invalid naming the rule, not the address',
    async (host) => {
      const res = await api(server, caller, 'POST', PATH, {
        body: subscription({
          CallbackUrl: `https://${host}/open-banking/v3.1/event-notifications`,
        }),
        sign: false,
      });
      const body = expectError(res, 400, 'UK.OBIE.Field.Invalid', 'Data.CallbackUrl');
      expect(body.Errors[0]?.Message).toBe(
        'the CallbackUrl host must resolve to public addresses only',
      );
      expect(res.text).not.toMatch(/127\.0\.0\.1|::1|loopback|private|metadata/);
    },
  );

  it('when a signature is present but wrong, then it is still refused', async () => {
    const res = await api(server, caller, 'POST', PATH, {
      body: subscription({ CallbackUrl: undefined }),
      sign: signFor(caller.tpp, '{}'),
    });
    expectError(res, 400, 'UK.OBIE.Signature.Invalid');
  });

  it('when REQUIRE_REQUEST_SIGNATURE=false and no signature is sent, then the request is accepted', async () => {
    const res = await api(server, caller, 'POST', PATH, {
      body: { Data: { Version: '3.1' } },
      sign: false,
    });
    expect(res.status).toBe(201);
  });
});
