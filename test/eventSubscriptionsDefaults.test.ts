// The subscription API as production runs it: VALIDATE_RESPONSES=false (the default), so nothing
// wraps res.json and a signed answer's prepared bytes are sent directly (src/http/jsonBytes.ts),
// and an /open-banking/ request goes from the Accept check straight to its version's router
// (src/http/openapi.ts). The other tests run with response validation on.
import { flattenedVerify, importJWK, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, type TestResponse } from './helpers/http.js';
import { detachedJws, OB_CRIT } from './helpers/jws.js';
import { startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

const PATH = '/open-banking/v3.1/event-subscriptions';

describe('event subscriptions with responses not validated (the production default)', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  let token: string;

  const get = (headers: Record<string, string> = {}) =>
    call(tpp.agent, `${server.url}${PATH}`, {
      headers: { authorization: `Bearer ${token}`, ...headers },
    });

  const send = (method: string, path: string, body: unknown) => {
    const text = JSON.stringify(body);
    return call(tpp.agent, `${server.url}${path}`, {
      method,
      body: text,
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'x-jws-signature': detachedJws(text, {
          key: tpp.signingKey,
          kid: tpp.kid,
          iss: tpp.clientId,
        }),
      },
    });
  };

  /** Our x-jws-signature verifies over exactly the bytes received. */
  async function expectSignedBytes(res: TestResponse): Promise<string> {
    const value = res.headers['x-jws-signature'] as string;
    const [h, payload, s] = value.split('.');
    expect(payload).toBe('');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as { kid: string };
    const jwks = (await call(tpp.agent, `${server.url}/jwks`)).json<{ keys: JWK[] }>();
    const jwk = jwks.keys.find((k) => k.kid === header.kid)!;
    await flattenedVerify(
      { protected: h!, payload: Buffer.from(res.text).toString('base64url'), signature: s! },
      await importJWK(jwk, 'PS256'),
      { algorithms: ['PS256'], crit: Object.fromEntries(OB_CRIT.map((c) => [c, true])) },
    );
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength(res.text)));
    return value;
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: { VALIDATE_RESPONSES: 'false' } });
    tpp = await createTestTpp(server);
    token = await tpp.accessToken();
  });
  afterAll(async () => {
    await tpp?.agent.close();
    await server?.stop();
    await db?.drop();
  });

  it('when responses are not validated, then a GET is signed over exactly the bytes sent, with their Content-Length', async () => {
    const res = await get();
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({
      Data: { EventSubscription: [] },
      Links: { Self: `${TEST_PUBLIC_URL}${PATH}` },
      Meta: {},
    });
    await expectSignedBytes(res);
  });

  it('when the subscription changes, then the next GET sends the new bytes with a signature over them', async () => {
    const created = await send('POST', PATH, { Data: { Version: '3.1' } });
    expect(created.status, created.text).toBe(201);
    await expectSignedBytes(created);
    const id = created.json<{ Data: { EventSubscriptionId: string } }>().Data.EventSubscriptionId;

    const before = await get();
    expect(before.json()).toMatchObject({ Data: { EventSubscription: [{ Version: '3.1' }] } });
    const first = await expectSignedBytes(before);
    // Unchanged bytes within the reuse window: the same bytes, the same signature.
    const again = await get();
    expect(again.text).toBe(before.text);
    expect(await expectSignedBytes(again)).toBe(first);

    const replaced = await send('PUT', `${PATH}/${id}`, {
      Data: { EventSubscriptionId: id, Version: '3.1', EventTypes: ['UK.OBIE.Resource-Update'] },
    });
    expect(replaced.status, replaced.text).toBe(200);
    const after = await get();
    expect(after.json()).toMatchObject({
      Data: { EventSubscription: [{ EventTypes: ['UK.OBIE.Resource-Update'] }] },
    });
    expect(await expectSignedBytes(after)).not.toBe(first);
  });

  it('when a GET is conditional (If-None-Match: *), then it is answered as express answers it: 304, no body', async () => {
    const res = await get({ 'if-none-match': '*' });
    expect(res.status).toBe(304);
    expect(res.text).toBe('');
  });

  it('when the token is missing, then 401 before anything else, and Accept is still checked first', async () => {
    const res = await call(tpp.agent, `${server.url}${PATH}`);
    expect(res.status).toBe(401);
    const refused = await call(tpp.agent, `${server.url}${PATH}`, {
      headers: { accept: 'text/html' },
    });
    expect(refused.status).toBe(406);
  });

  it('when a root path breaks its document (an unknown query parameter), then the root validator still refuses it', async () => {
    const res = await call(tpp.agent, `${server.url}/jwks?unknown=1`);
    expect(res.status).toBe(400);
    const fine = await call(tpp.agent, `${server.url}/jwks`);
    expect(fine.status).toBe(200);
  });

  it('when an OBIE path is spelled in capitals, then it is 404 and nothing is read', async () => {
    const res = await call(tpp.agent, `${server.url}/OPEN-BANKING/V3.1/event-subscriptions`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(404);
  });
});
