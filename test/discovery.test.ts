// Authorisation server metadata and the JWKS.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call } from './helpers/http.js';
import { startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

describe('discovery', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    tpp = await createTestTpp(server);
  });
  afterAll(async () => {
    await tpp?.agent.close();
    await server?.stop();
    await db?.drop();
  });

  it('when the metadata is fetched at either well-known path, then both say the same and name PUBLIC_URL as issuer', async () => {
    const oidc = await call(tpp.agent, `${server.url}/.well-known/openid-configuration`);
    const oauth = await call(tpp.agent, `${server.url}/.well-known/oauth-authorization-server`);
    expect(oidc.status).toBe(200);
    expect(oauth.json()).toEqual(oidc.json());
    expect(oidc.json()).toEqual({
      issuer: TEST_PUBLIC_URL,
      token_endpoint: `${TEST_PUBLIC_URL}/token`,
      jwks_uri: `${TEST_PUBLIC_URL}/jwks`,
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'tls_client_auth'],
      token_endpoint_auth_signing_alg_values_supported: ['PS256', 'ES256'],
      scopes_supported: ['accounts', 'payments', 'fundsconfirmations', 'eventpolling'],
      tls_client_certificate_bound_access_tokens: true,
    });
  });

  it('when the JWKS is fetched, then it holds the public signing key that signs access tokens, and no private part', async () => {
    const res = await call(tpp.agent, `${server.url}/jwks`);
    expect(res.status).toBe(200);
    const { keys } = res.json<{ keys: Record<string, unknown>[] }>();
    const active = await server.server.services.keys.activeKey();
    expect(keys.map((k) => k.kid)).toContain(active.kid);
    for (const k of keys) {
      expect(k).toMatchObject({ kty: 'RSA', alg: 'PS256', use: 'sig' });
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(k).not.toHaveProperty(secret);
    }
    const token = await tpp.accessToken();
    const kid = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
    expect(keys.map((k) => k.kid)).toContain(kid);
  });

  it('when the metadata is POSTed to, then 405', async () => {
    const res = await call(tpp.agent, `${server.url}/.well-known/openid-configuration`, {
      method: 'POST',
    });
    expect(res.status).toBe(405);
  });
});
