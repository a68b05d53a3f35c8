// Plain token requests answered ahead of express (src/http/directToken.ts): the answer is the
// express route's, for a token and for every refusal; a body that is not a plain form goes to
// express with the bytes already read and is answered as before; each request is counted once.
import fs from 'node:fs';
import path from 'node:path';
import { Router } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenFormBody } from '../src/http/bodyPolicy.js';
import { publishTokenIssuer, type TokenIssuer } from '../src/http/routes/token.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { rawHeader, rawRequest, type RawResponse } from './helpers/rawHttps.js';
import {
  apiRequestCount,
  readPki,
  serveApiRouters,
  startTestServer,
  type TestServer,
} from './helpers/server.js';
import { createTestTpp, JWT_BEARER, signClientAssertion, type TestTpp } from './helpers/tpp.js';

// Not a plain Accept: negotiated by express, so the request takes the express route.
const VIA_EXPRESS = { accept: 'application/json;q=0.9' };
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

describe('POST /token ahead of express: the mechanism', () => {
  const pki = readPki();
  const tls = { ca: pki.ca, cert: pki.tppCert, key: pki.tppKey };
  let url: string;
  let close: () => Promise<void>;
  const calls = { direct: 0, express: 0 };
  const forms: unknown[] = [];

  beforeAll(async () => {
    const issue: TokenIssuer = (request) => {
      forms.push(request.form);
      return Promise.resolve({ access_token: 't', token_type: 'Bearer', expires_in: 1 });
    };
    const router = Router();
    router.post('/token', tokenFormBody, async (req, res) => {
      calls.express += 1;
      res.json(
        await issue(
          { form: req.body as unknown, certificate: undefined, hasAuthorizationHeader: false },
          undefined as never,
        ),
      );
    });
    publishTokenIssuer(router, (request, ctx) => {
      calls.direct += 1;
      return issue(request, ctx);
    });
    ({ url, close } = await serveApiRouters([router]));
  });
  afterAll(async () => close?.());

  const send = (body: string, headers: Record<string, string> = {}) =>
    rawRequest(`${url}/token`, tls, { method: 'POST', headers: { ...FORM, ...headers }, body });

  it('when a plain form arrives, then the route’s work runs without express; otherwise express runs it', async () => {
    expect((await send('grant_type=client_credentials&scope=a+b')).status).toBe(200);
    expect(calls).toEqual({ direct: 1, express: 0 });
    expect(forms.at(-1)).toEqual({ grant_type: 'client_credentials', scope: 'a b' });
    expect((await send('grant_type=client_credentials', VIA_EXPRESS)).status).toBe(200);
    expect(calls).toEqual({ direct: 1, express: 1 });
  });

  it('when the body is not a plain form of single values, then express reads it from the bytes already read', async () => {
    expect((await send('a=1&a=2&b%5Bc%5D=3')).status).toBe(200);
    expect(calls).toEqual({ direct: 1, express: 2 });
    expect(forms.at(-1)).toEqual({ a: ['1', '2'], 'b[c]': '3' });
  });
});

describe('POST /token ahead of express', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  let tls: { ca: string; cert: string; key: string };

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    tpp = await createTestTpp(server);
    tls = { ca: readPki().ca, cert: tpp.certPem, key: tpp.keyPem };
  });
  afterAll(async () => {
    await tpp?.agent.close();
    await server?.stop();
    await db?.drop();
  });

  const assertion = () => signClientAssertion(tpp, server);
  const form = (params: Record<string, string>) => new URLSearchParams(params).toString();
  const grant = async (extra: Record<string, string> = {}) =>
    form({
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await assertion(),
      ...extra,
    });
  const post = (body: string, headers: Record<string, string> = {}) =>
    rawRequest(`${server.url}/token`, tls, {
      method: 'POST',
      headers: { ...FORM, ...headers },
      body,
    });

  /** Header names in order and spelling, values but for those that differ per response. */
  function head(res: RawResponse): string[] {
    const perResponse = new Set(['x-fapi-interaction-id', 'content-length']);
    return res.headers.map((v, i) =>
      i % 2 === 1 && perResponse.has(res.headers[i - 1]!.toLowerCase()) ? '*' : v,
    );
  }

  function expectSameAnswer(fast: RawResponse, slow: RawResponse): void {
    expect(fast.status, fast.body).toBe(slow.status);
    expect(head(fast)).toEqual(head(slow));
    if (fast.status === 200) {
      const [a, b] = [fast, slow].map((r) => JSON.parse(r.body) as Record<string, unknown>);
      expect(Object.keys(a!)).toEqual(Object.keys(b!));
      expect({ ...a, access_token: 'x' }).toEqual({ ...b, access_token: 'x' });
    } else {
      expect(fast.body).toBe(slow.body);
    }
  }

  it('when a TPP asks for a token with a plain form, then status, headers (order and spelling) and body are the express route’s', async () => {
    const fast = await post(await grant());
    const slow = await post(await grant(), VIA_EXPRESS);
    expect(fast.status, fast.body).toBe(200);
    expectSameAnswer(fast, slow);
    expect(rawHeader(fast.headers, 'cache-control')).toBe('no-store');
    expect(rawHeader(fast.headers, 'strict-transport-security')).toBeDefined();
    // The interaction id: echoed when usable.
    const echoed = await post(await grant(), { 'x-fapi-interaction-id': 'token-id-1' });
    expect(rawHeader(echoed.headers, 'x-fapi-interaction-id')).toBe('token-id-1');
  });

  it('when a request is refused (bad or replayed assertion, missing or unknown grant, a secret, a NUL, an Authorization header), then the answer is the express route’s', async () => {
    const replayed = await grant();
    await post(replayed);
    const bodies: [string, string, Record<string, string>?][] = [
      ['bad assertion', await grant({ client_assertion: 'a.b.c' })],
      ['replayed', replayed],
      ['no grant_type', form({ client_id: tpp.clientId })],
      ['unknown grant', form({ grant_type: 'password', client_id: tpp.clientId })],
      ['client secret', await grant({ client_secret: 's3cret' })],
      ['NUL in a value', form({ grant_type: 'client_credentials', client_id: '\u0000' })],
      ['Authorization header', await grant(), { authorization: 'Basic YTpi' }],
      ['empty body', ''],
    ];
    for (const [what, body, headers] of bodies) {
      const fast = await post(body, headers);
      // Replayed once more through express: still the replay answer.
      const slow = await post(body, { ...headers, ...VIA_EXPRESS });
      expect(fast.status, what).toBeGreaterThanOrEqual(400);
      expect(fast.status, what).toBeLessThan(500);
      expectSameAnswer(fast, slow);
    }
  });

  it('when a parameter is repeated or a name is not a plain word, then express answers from the bytes already read, as before', async () => {
    const repeated = `${await grant()}&grant_type=client_credentials`;
    const fast = await post(repeated);
    expect(fast.status).toBe(400);
    expect(JSON.parse(fast.body)).toMatchObject({ error: 'invalid_request' });
    expectSameAnswer(fast, await post(repeated, VIA_EXPRESS));
    // body-parser reads `extra[x]` as it always did; the rest of the form is a good grant.
    const bracketed = await post(`${await grant()}&extra%5Bx%5D=1`);
    expect(bracketed.status, bracketed.body).toBe(200);
  });

  it('when tokens are answered ahead of express, handed over or answered by express, then each request is counted once in the /token series', async () => {
    const count = () =>
      apiRequestCount(server.adminUrl, { route: '/token', method: 'POST', status: 200 });
    const before = await count();
    expect((await post(await grant())).status).toBe(200);
    expect((await post(await grant(), VIA_EXPRESS)).status).toBe(200);
    expect((await post(`${await grant()}&extra%5Bx%5D=1`)).status).toBe(200);
    expect(await count()).toBe(before + 3);
  });

  it('when the document’s TokenRequest is read, then it accepts every form of single string values (what lets a plain form skip the validator)', () => {
    const document = JSON.parse(
      fs.readFileSync(path.resolve(import.meta.dirname, '../openapi/openapi.json'), 'utf8'),
    ) as {
      components: { schemas: Record<string, Record<string, unknown>> };
      paths: Record<string, Record<string, unknown>>;
    };
    const schema = document.components.schemas.TokenRequest!;
    expect(schema.type).toBe('object');
    expect(schema.additionalProperties).toBe(true);
    expect(schema.required).toBeUndefined();
    for (const property of Object.values(schema.properties as Record<string, unknown>)) {
      expect(property).toEqual({ type: 'string' });
    }
    // Its only parameter is the interaction id, any string.
    const post = document.paths['/token']!.post as { parameters: { $ref: string }[] };
    expect(post.parameters).toEqual([{ $ref: '#/components/parameters/x-fapi-interaction-id' }]);
  });
});
