// Authentication comes before anything reads or validates a request body.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call } from './helpers/http.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

describe('order of checks on the OBIE API', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    tpp = await createTestTpp(server);
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('when a request without a token has an invalid body, then it is 401 with no body, not 400', async () => {
    const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"maxEvents": "lots", "unknown": true}',
    });
    expect(res.status).toBe(401);
    expect(res.text).toBe('');
    expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  });

  it('when a request without a token asks for an unknown OBIE path, then it is 401', async () => {
    const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/accounts`);
    expect(res.status).toBe(401);
  });

  it('when the OpenAPI document is fetched without a token, then it is served', async () => {
    const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.json<{ openapi: string }>().openapi).toMatch(/^3\./);
  });

  it('when a request with a valid token has an invalid body, then it is 400 from the validator', async () => {
    const token = await tpp.accessToken();
    const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: '{"maxEvents": "lots"}',
    });
    expect(res.status).toBe(400);
  });
});
