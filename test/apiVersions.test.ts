// OBIE Read/Write v4.0 beside v3.1 on one server: the same APIs under both base paths, each
// version's error model, the release-management rules between them, the bank's event types, and
// the order of checks (no body read before authentication, whatever the spelling of the path).
// Every v4.0 body is checked against the official v4.0 files, every v3.1 body against 3.1.11.
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEventInput } from '../src/domain/eventInput.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, type TestResponse } from './helpers/http.js';
import { detachedJws } from './helpers/jws.js';
import { expectObieShape } from './helpers/obieSchema.js';
import { startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

const V31 = '/open-banking/v3.1';
const V40 = '/open-banking/v4.0';
const V31_FILE = 'v3.1.11/events-openapi.json';
const V40_FILE = 'v4.0/events-openapi.json';
const CALLBACK_31 = 'https://localhost/open-banking/v3.1/event-notifications';
const CALLBACK_40 = 'https://localhost/open-banking/v4.0/event-notifications';
const EXTENSION = 'urn:bank.example:events:card-frozen';

interface Caller {
  tpp: TestTpp;
  token: string;
}

interface V4Error {
  Id?: string;
  Code?: string;
  Message?: string;
  Errors: { ErrorCode: string; Message?: string; Path?: string; Url?: string }[];
}

interface SubscriptionBody {
  Data: {
    EventSubscriptionId: string;
    CallbackUrl?: string;
    Version: string;
    EventTypes?: string[];
  };
  Links: { Self: string };
}

describe('OBIE v4.0 beside v3.1', () => {
  let db: TestDatabase;
  let server: TestServer;
  // Real time, moved forward by the last test (the TPP signs with real time meanwhile).
  const clock = { offsetMs: 0, now: () => Date.now() + clock.offsetMs };
  const tpps: TestTpp[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      clock,
      env: {
        SUPPORTED_EVENT_TYPES: 'UK.OBIE.Resource-Update,UK.OBIE.Consent-Authorization-Revoked',
        EXTENSION_EVENT_TYPES: EXTENSION,
      },
    });
  });
  afterAll(async () => {
    for (const t of tpps) await t.agent.close();
    await server?.stop();
    await db?.drop();
  });

  async function newCaller(): Promise<Caller> {
    const tpp = await createTestTpp(server);
    tpps.push(tpp);
    return { tpp, token: await tpp.accessToken() };
  }

  /** One request; bodies are checked against the official file of the path's version. */
  async function api(
    caller: Caller,
    method: string,
    path: string,
    opts: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {},
  ): Promise<TestResponse> {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? caller.token}`;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['x-jws-signature'] = detachedJws(body, {
        key: caller.tpp.signingKey,
        kid: caller.tpp.kid,
        iss: caller.tpp.clientId,
      });
    }
    const res = await call(caller.tpp.agent, `${server.url}${path}`, { method, headers, body });
    expect(res.status, `${method} ${path}: ${res.text}`).toBeLessThan(500);
    const file = path.startsWith(V40) ? V40_FILE : V31_FILE;
    if (res.status >= 400 && res.text !== '') expectObieShape('OBErrorResponse1', res.json(), file);
    if (res.status === 201 || (res.status === 200 && method === 'PUT'))
      expectObieShape('OBEventSubscriptionResponse1', res.json(), file);
    if (res.status === 200 && method === 'GET' && path.endsWith('/event-subscriptions'))
      expectObieShape('OBEventSubscriptionsResponse1', res.json(), file);
    if (res.status === 200 && path.endsWith('/events'))
      expectObieShape('OBEventPollingResponse1', res.json(), file);
    return res;
  }

  function v4Error(res: TestResponse, status: number, code: string, path?: string): V4Error {
    expect(res.status, res.text).toBe(status);
    const body = res.json<V4Error>();
    expect(body.Code).toBeUndefined();
    expect(body.Message).toBeUndefined();
    expect(body.Errors.map((e) => e.ErrorCode)).toContain(code);
    for (const e of body.Errors) expect(e.ErrorCode).toMatch(/^U\d{3}$/);
    if (path !== undefined) expect(body.Errors.find((e) => e.ErrorCode === code)?.Path).toBe(path);
    expect(body.Id).toBe(res.headers['x-fapi-interaction-id']);
    return body;
  }

  describe('the v4.0 Event Subscription API', () => {
    it('when a TPP creates, reads, replaces and deletes its subscription on v4.0, then every body is OBIE 4.0 and Links point at v4.0', async () => {
      const caller = await newCaller();
      const created = await api(caller, 'POST', `${V40}/event-subscriptions`, {
        body: { Data: { CallbackUrl: CALLBACK_40, Version: '4.0' } },
      });
      expect(created.status, created.text).toBe(201);
      const sub = created.json<SubscriptionBody>();
      expect(sub.Links.Self).toBe(
        `${TEST_PUBLIC_URL}${V40}/event-subscriptions/${sub.Data.EventSubscriptionId}`,
      );
      expect(created.headers['x-jws-signature']).toBeTruthy();

      const read = await api(caller, 'GET', `${V40}/event-subscriptions`);
      expect(read.status).toBe(200);
      expect(
        read.json<{ Data: { EventSubscription: unknown[] } }>().Data.EventSubscription,
      ).toEqual([sub.Data]);

      const item = `${V40}/event-subscriptions/${sub.Data.EventSubscriptionId}`;
      const replaced = await api(caller, 'PUT', item, {
        body: { Data: { EventSubscriptionId: sub.Data.EventSubscriptionId, Version: '4.0' } },
        headers: { 'payload-version': '4.0' },
      });
      expect(replaced.status, replaced.text).toBe(200);
      expect(replaced.json<SubscriptionBody>().Data).toEqual({
        EventSubscriptionId: sub.Data.EventSubscriptionId,
        Version: '4.0',
      });
      expect((await api(caller, 'DELETE', item)).status).toBe(204);
    });

    it('when a v4.0 request is wrong, then the error has U-codes and no Code or Message', async () => {
      const caller = await newCaller();
      v4Error(
        await api(caller, 'POST', `${V40}/event-subscriptions`, {
          body: { Data: { CallbackUrl: CALLBACK_40 } },
        }),
        400,
        'U004',
        'Data.Version',
      );
      v4Error(
        await api(caller, 'POST', `${V40}/event-subscriptions`, {
          body: { Data: { Version: '4.0' }, Extra: 1 },
        }),
        400,
        'U005',
      );
      v4Error(
        await api(caller, 'PUT', `${V40}/event-subscriptions/es_nope`, {
          body: { Data: { EventSubscriptionId: 'es_nope', Version: '4.0' } },
        }),
        400,
        'U011',
      );
      const missingSignature = await call(
        caller.tpp.agent,
        `${server.url}${V40}/event-subscriptions`,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ Data: { Version: '4.0' } }),
        },
      );
      v4Error(missingSignature, 400, 'U019');
      expectObieShape('OBErrorResponse1', missingSignature.json(), V40_FILE);
      expect(
        (
          await api(caller, 'POST', `${V40}/event-subscriptions`, {
            body: { Data: { Version: '4.0' } },
          })
        ).status,
      ).toBe(201);
      v4Error(
        await api(caller, 'POST', `${V40}/event-subscriptions`, {
          body: { Data: { Version: '4.0' } },
        }),
        409,
        'U029',
      );
      v4Error(await api(caller, 'GET', `${V40}/no-such-thing`), 404, 'U011');
    });

    it("when a v4.0 request's Accept rules out JSON, then 406 in the v4.0 error model (U006, Accept), before the token is looked at", async () => {
      const caller = await newCaller();
      const html = { headers: { accept: 'text/html' } };
      // The exact path (direct table), a path with a parameter (the routers), the public document.
      for (const path of [
        `${V40}/event-subscriptions`,
        `${V40}/event-subscriptions/es_any`,
        `${V40}/openapi.json`,
      ]) {
        v4Error(await api(caller, 'GET', path, html), 406, 'U006', 'Accept');
      }
      v4Error(
        await api(caller, 'GET', `${V40}/event-subscriptions`, { ...html, token: null }),
        406,
        'U006',
      );
      // v3.1 keeps its own model.
      const v31 = await api(caller, 'GET', `${V31}/event-subscriptions`, html);
      expect(v31.status).toBe(406);
      expect(v31.json<V4Error>().Errors[0]?.ErrorCode).toBe('UK.OBIE.Header.Invalid');
    });

    it('when a Version 4.0 subscription has a v3.1 CallbackUrl, or Version is newer than the path, then 400 U002', async () => {
      const caller = await newCaller();
      v4Error(
        await api(caller, 'POST', `${V40}/event-subscriptions`, {
          body: { Data: { CallbackUrl: CALLBACK_31, Version: '4.0' } },
        }),
        400,
        'U002',
        'Data.CallbackUrl',
      );
      const v31 = await api(caller, 'POST', `${V31}/event-subscriptions`, {
        body: { Data: { CallbackUrl: CALLBACK_40, Version: '4.0' } },
      });
      expect(v31.status).toBe(400);
      expect(v31.json<V4Error>().Errors[0]).toMatchObject({
        ErrorCode: 'UK.OBIE.Field.Invalid',
        Path: 'Data.Version',
      });
    });
  });

  describe('release management', () => {
    it('when a v3.1 subscription is read, replaced and deleted through v4.0, then its fields (Version too) stay what they were', async () => {
      const caller = await newCaller();
      const data = {
        CallbackUrl: CALLBACK_31,
        Version: '3.1.11',
        EventTypes: ['UK.OBIE.Resource-Update'],
      };
      const created = await api(caller, 'POST', `${V31}/event-subscriptions`, {
        body: { Data: data },
      });
      expect(created.status, created.text).toBe(201);
      const id = created.json<SubscriptionBody>().Data.EventSubscriptionId;

      const read = await api(caller, 'GET', `${V40}/event-subscriptions`);
      expect(
        read.json<{ Data: { EventSubscription: unknown[] } }>().Data.EventSubscription,
      ).toEqual([{ EventSubscriptionId: id, ...data }]);
      const replaced = await api(caller, 'PUT', `${V40}/event-subscriptions/${id}`, {
        body: { Data: { EventSubscriptionId: id, ...data } },
      });
      expect(replaced.status, replaced.text).toBe(200);
      expect(replaced.json<SubscriptionBody>().Data).toEqual({ EventSubscriptionId: id, ...data });
      // Still a v3.1 subscription: v3.1 reaches it after the v4.0 replacement.
      expect((await api(caller, 'GET', `${V31}/event-subscriptions`)).status).toBe(200);
      expect((await api(caller, 'DELETE', `${V40}/event-subscriptions/${id}`)).status).toBe(204);
    });

    it('when a v4.0 subscription is read, replaced or deleted through v3.1, then 403 UK.OBIE.Field.Invalid at Data.Version, and it is unchanged', async () => {
      const caller = await newCaller();
      const created = await api(caller, 'POST', `${V40}/event-subscriptions`, {
        body: { Data: { CallbackUrl: CALLBACK_40, Version: '4.0' } },
      });
      const id = created.json<SubscriptionBody>().Data.EventSubscriptionId;
      const refused = [
        await api(caller, 'GET', `${V31}/event-subscriptions`),
        await api(caller, 'PUT', `${V31}/event-subscriptions/${id}`, {
          body: { Data: { EventSubscriptionId: id, Version: '3.1' } },
        }),
        await api(caller, 'DELETE', `${V31}/event-subscriptions/${id}`),
      ];
      for (const res of refused) {
        expect(res.status, res.text).toBe(403);
        const body = res.json<{
          Code: string;
          Errors: { ErrorCode: string; Path?: string; Message: string }[];
        }>();
        expect(body.Code).toBe('403 Forbidden');
        expect(body.Errors[0]).toMatchObject({
          ErrorCode: 'UK.OBIE.Field.Invalid',
          Path: 'Data.Version',
        });
        expect(body.Errors[0]!.Message).toContain('/open-banking/v4.0');
      }
      // One subscription per TPP across versions.
      const second = await api(caller, 'POST', `${V31}/event-subscriptions`, {
        body: { Data: { Version: '3.1' } },
      });
      expect(second.status).toBe(409);
      expect(second.json<V4Error>().Errors[0]!.ErrorCode).toBe(
        'UK.OBIE.Rules.ResourceAlreadyExists',
      );
      const still = await api(caller, 'GET', `${V40}/event-subscriptions`);
      expect(
        still.json<{ Data: { EventSubscription: unknown[] } }>().Data.EventSubscription,
      ).toEqual([created.json<SubscriptionBody>().Data]);
    });
  });

  describe('event types the bank offers', () => {
    it('when EventTypes holds a type the bank does not offer, then 400 U024 on v4.0 and UK.OBIE.Unsupported.EventType on v3.1, Url to the version document', async () => {
      const caller = await newCaller();
      const body = v4Error(
        await api(caller, 'POST', `${V40}/event-subscriptions`, {
          body: { Data: { Version: '4.0', EventTypes: ['UK.OBIE.Consent-Access-Revoked'] } },
        }),
        400,
        'U024',
        'Data.EventTypes[0]',
      );
      expect(body.Errors[0]!.Url).toBe(
        `${TEST_PUBLIC_URL}${V40}/openapi.json#/components/schemas/OBEventType1Code`,
      );
      const v31 = await api(caller, 'POST', `${V31}/event-subscriptions`, {
        body: { Data: { Version: '3.1', EventTypes: ['UK.OBIE.Consent-Access-Revoked'] } },
      });
      expect(v31.status).toBe(400);
      expect(v31.json<V4Error>().Errors[0]!.ErrorCode).toBe('UK.OBIE.Unsupported.EventType');
    });

    it('when the OpenAPI documents are fetched, then both list exactly the offered types, and v4.0 has its own paths and error model', async () => {
      const caller = await newCaller();
      const docs = await Promise.all(
        [V31, V40].map(async (base) =>
          (await api(caller, 'GET', `${base}/openapi.json`, { token: null })).json<{
            info: { version: string };
            paths: Record<string, unknown>;
            components: { schemas: Record<string, { enum?: string[]; required?: string[] }> };
          }>(),
        ),
      );
      for (const doc of docs) {
        expect(doc.components.schemas.OBEventType1Code!.enum).toEqual([
          'UK.OBIE.Resource-Update',
          'UK.OBIE.Consent-Authorization-Revoked',
          EXTENSION,
        ]);
      }
      const [v31, v40] = docs as [(typeof docs)[0], (typeof docs)[0]];
      expect(v40.info.version).toBe('4.0.0');
      expect(Object.keys(v40.paths).sort()).toEqual(
        [
          `${V40}/event-subscriptions`,
          `${V40}/event-subscriptions/{EventSubscriptionId}`,
          `${V40}/events`,
          `${V40}/openapi.json`,
        ].sort(),
      );
      expect(v40.components.schemas.OBErrorResponse1!.required).toEqual(['Errors']);
      expect(v31.components.schemas.OBErrorResponse1!.required).toEqual([
        'Code',
        'Message',
        'Errors',
      ]);
      expect(Object.keys(v31.paths)).toContain('/token');
    });

    it('when a bank extension type is subscribed and published, then the SET carries its URN, and a type not offered is refused at publishing, not skipped', async () => {
      const caller = await newCaller();
      const created = await api(caller, 'POST', `${V40}/event-subscriptions`, {
        body: { Data: { Version: '4.0', EventTypes: [EXTENSION] } },
      });
      expect(created.status, created.text).toBe(201);
      expect(created.json<SubscriptionBody>().Data.EventTypes).toEqual([EXTENSION]);
      const { publisher } = server.server.services;
      const id = 'card-1';
      const parsed = parseEventInput(
        {
          clientId: caller.tpp.clientId,
          type: EXTENSION,
          subject: {
            id,
            type: 'card',
            links: [
              { version: 'v3.1', link: `https://bank.example/open-banking/v3.1/cards/${id}` },
              { version: 'v4.0', link: `https://bank.example/open-banking/v4.0/cards/${id}` },
            ],
          },
        },
        publisher.eventTypes,
      );
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
      const [outcome] = await publisher.publish([parsed.event]);
      expect(outcome!.status).toBe('created');

      const polled = await api(caller, 'POST', `${V40}/events`, {
        body: { returnImmediately: true },
      });
      const sets = polled.json<{ sets: Record<string, string> }>().sets;
      const claims = decodeJwt(sets[outcome!.jti!]!);
      expect(Object.keys(claims.events as object)).toEqual([EXTENSION]);
      // The subscriber is on 4.0: its default `sub` is the v4.0 link; rlk keeps both.
      expect(claims.sub).toBe(`https://bank.example/open-banking/v4.0/cards/${id}`);
      const subject = (claims.events as Record<string, { subject: Record<string, unknown> }>)[
        EXTENSION
      ]!.subject;
      expect(subject['http://openbanking.org.uk/rlk']).toHaveLength(2);

      const refused = parseEventInput(
        { ...parsed.event, type: 'UK.OBIE.Consent-Access-Revoked', subject: parsed.event.subject },
        publisher.eventTypes,
      );
      expect(refused.ok).toBe(false);
    });
  });

  describe('order of checks', () => {
    it('when an OBIE path is spelled in upper case, then its body is never read: 404, not 400 or 413', async () => {
      const caller = await newCaller();
      for (const path of [
        '/OPEN-BANKING/V3.1/events',
        '/Open-Banking/v4.0/events',
        '/open-banking/V4.0/event-subscriptions',
      ]) {
        const big = await call(caller.tpp.agent, `${server.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: `{"x":"${'a'.repeat(100_000)}"}`,
        });
        expect(big.status, `${path}: ${big.text}`).toBe(404);
        const broken = await call(caller.tpp.agent, `${server.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{not json',
        });
        expect(broken.status, `${path}: ${broken.text}`).toBe(404);
      }
    });

    it('when an unauthenticated request sends an oversized or broken body to a known path, then it is 401, not 413 or 400', async () => {
      const caller = await newCaller();
      for (const base of [V31, V40]) {
        for (const body of [`{"x":"${'a'.repeat(100_000)}"}`, '{not json']) {
          const res = await call(caller.tpp.agent, `${server.url}${base}/events`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
          });
          expect(res.status).toBe(401);
          expect(res.text).toBe('');
        }
      }
    });

    it('when any other path gets a body, then it is never read: 404, not 413', async () => {
      const caller = await newCaller();
      const res = await call(caller.tpp.agent, `${server.url}/anything`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"x":"${'a'.repeat(100_000)}"}`,
      });
      expect(res.status).toBe(404);
    });
  });

  describe('401 per version (runs last: it moves the clock)', () => {
    it('when the access token is missing or invalid, then 401 without a body on both versions', async () => {
      const caller = await newCaller();
      for (const base of [V31, V40]) {
        expect(
          (await api(caller, 'GET', `${base}/event-subscriptions`, { token: null })).text,
        ).toBe('');
        const invalid = await api(caller, 'GET', `${base}/event-subscriptions`, {
          token: 'abc.def.ghi',
        });
        expect(invalid.status).toBe(401);
        expect(invalid.text).toBe('');
      }
    });

    it('when the access token has expired, then v4.0 answers 401 with an error body (U006 at Authorization) and v3.1 without', async () => {
      const caller = await newCaller();
      clock.offsetMs = (server.config.auth.accessTokenTtlSeconds + 60) * 1000;
      const v40 = await api(caller, 'GET', `${V40}/event-subscriptions`);
      expect(v40.status).toBe(401);
      expect(v40.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
      v4Error(v40, 401, 'U006', 'Authorization');
      const v31 = await api(caller, 'GET', `${V31}/event-subscriptions`);
      expect(v31.status).toBe(401);
      expect(v31.text).toBe('');
    });
  });
});
