// POST /token: the client credentials grant with private_key_jwt and tls_client_auth, one
// negative test per rule of the client assertion checks (RFC 7523, FAPI 1 Advanced).
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  importJWK,
  jwtVerify,
  SignJWT,
  type JWK,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, type TestResponse } from './helpers/http.js';
import { startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import {
  createTestTpp,
  JWT_BEARER,
  postToken,
  signClientAssertion,
  thumbprintOf,
  type TestTpp,
} from './helpers/tpp.js';

describe('POST /token', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  const agents: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    tpp = await createTestTpp(server);
    agents.push(tpp.agent);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await server?.stop();
    await db?.drop();
  });

  async function newTpp(opts: Parameters<typeof createTestTpp>[1] = {}): Promise<TestTpp> {
    const t = await createTestTpp(server, opts);
    agents.push(t.agent);
    return t;
  }

  function withAssertion(assertion: string, extra: Record<string, string> = {}) {
    return postToken(server, tpp.agent, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
      ...extra,
    });
  }

  function expectInvalidClient(res: TestResponse): void {
    expect(res.status).toBe(401);
    expect(res.json()).toEqual({
      error: 'invalid_client',
      error_description: 'client authentication failed',
    });
    expect(res.headers['cache-control']).toBe('no-store');
  }

  describe('private_key_jwt', () => {
    it('when a registered TPP sends a valid assertion, then it gets a certificate-bound PS256 access token', async () => {
      const res = await withAssertion(await signClientAssertion(tpp, server));
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      const body = res.json<Record<string, unknown>>();
      expect(body).toEqual({
        access_token: expect.any(String),
        token_type: 'Bearer',
        expires_in: 600,
        scope: 'accounts payments fundsconfirmations',
      });
      const token = body.access_token as string;
      expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'PS256', typ: 'at+jwt' });

      const jwks = (await call(tpp.agent, `${server.url}/jwks`)).json<{ keys: JWK[] }>();
      const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
        algorithms: ['PS256'],
        issuer: TEST_PUBLIC_URL,
        audience: TEST_PUBLIC_URL,
        typ: 'at+jwt',
      });
      expect(payload).toMatchObject({
        sub: tpp.clientId,
        client_id: tpp.clientId,
        scope: 'accounts payments fundsconfirmations',
      });
      expect(payload.exp! - payload.iat!).toBe(600);
      expect(payload.jti).toEqual(expect.any(String));
    });

    it('when a token is issued, then its cnf.x5t#S256 is the SHA-256 of the DER certificate it was requested over', async () => {
      const token = await tpp.accessToken();
      const cnf = decodeJwt(token).cnf as Record<string, string>;
      expect(cnf['x5t#S256']).toBe(thumbprintOf(tpp.certPem));
      // Independently: base64url(SHA-256(DER)) from the PEM body.
      const der = Buffer.from(tpp.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      expect(cnf['x5t#S256']).toBe(createHash('sha256').update(der).digest('base64url'));
    });

    it('when the assertion is an ES256 JWT signed with a registered EC key, then it is accepted', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const kid = 'ec-key-1';
      const clientId = `ec-${randomUUID()}`;
      await server.server.services.clients.register({
        clientId,
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] },
      });
      const now = Math.floor(Date.now() / 1000);
      const assertion = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: 'ES256', kid })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(`${TEST_PUBLIC_URL}/token`)
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(privateKey);
      expect((await withAssertion(assertion)).status).toBe(200);
    });

    it('when aud is the issuer, or an array containing the token endpoint, then it is accepted', async () => {
      const asIssuer = await signClientAssertion(tpp, server, { claims: { aud: TEST_PUBLIC_URL } });
      expect((await withAssertion(asIssuer)).status).toBe(200);
      const asArray = await signClientAssertion(tpp, server, {
        claims: { aud: ['https://elsewhere.example', `${TEST_PUBLIC_URL}/token`] },
      });
      expect((await withAssertion(asArray)).status).toBe(200);
    });

    it('when the same assertion is sent twice, then the second use is refused as a replay', async () => {
      const assertion = await signClientAssertion(tpp, server);
      expect((await withAssertion(assertion)).status).toBe(200);
      expectInvalidClient(await withAssertion(assertion));
    });

    it('when two assertions reuse one jti, then the second is refused even though it is a new JWT', async () => {
      const jti = randomUUID();
      expect(
        (await withAssertion(await signClientAssertion(tpp, server, { claims: { jti } }))).status,
      ).toBe(200);
      expectInvalidClient(
        await withAssertion(
          await signClientAssertion(tpp, server, { claims: { jti, iat: Date.now() / 1000 - 1 } }),
        ),
      );
    });

    it('when many copies of one assertion race, then exactly one gets a token', async () => {
      const assertion = await signClientAssertion(tpp, server);
      const results = await Promise.all(Array.from({ length: 8 }, () => withAssertion(assertion)));
      expect(results.filter((r) => r.status === 200)).toHaveLength(1);
      expect(results.filter((r) => r.status === 401)).toHaveLength(7);
    });

    it('when aud names neither the token endpoint nor the issuer, then it is refused', async () => {
      const assertion = await signClientAssertion(tpp, server, {
        claims: { aud: 'https://other-bank.example/token' },
      });
      expectInvalidClient(await withAssertion(assertion));
    });

    it('when the assertion has expired, then it is refused', async () => {
      const now = Math.floor(Date.now() / 1000);
      const assertion = await signClientAssertion(tpp, server, {
        claims: { iat: now - 600, exp: now - 60 },
      });
      expectInvalidClient(await withAssertion(assertion));
    });

    it('when exp is further ahead than the allowed lifetime, then it is refused', async () => {
      const now = Math.floor(Date.now() / 1000);
      const assertion = await signClientAssertion(tpp, server, { claims: { exp: now + 3600 } });
      expectInvalidClient(await withAssertion(assertion));
    });

    it('when nbf or iat is in the future, then it is refused', async () => {
      const now = Math.floor(Date.now() / 1000);
      expectInvalidClient(
        await withAssertion(await signClientAssertion(tpp, server, { claims: { nbf: now + 120 } })),
      );
      expectInvalidClient(
        await withAssertion(await signClientAssertion(tpp, server, { claims: { iat: now + 120 } })),
      );
    });

    it('when alg is none, then it is refused', async () => {
      const now = Math.floor(Date.now() / 1000);
      const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const unsigned = `${b64({ alg: 'none' })}.${b64({
        iss: tpp.clientId,
        sub: tpp.clientId,
        aud: `${TEST_PUBLIC_URL}/token`,
        jti: randomUUID(),
        exp: now + 60,
      })}.`;
      expectInvalidClient(await withAssertion(unsigned));
    });

    it('when the assertion is HS256 signed with the public key as the secret, then it is refused', async () => {
      const publicJwk = { ...tpp.signingKey };
      for (const k of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) delete publicJwk[k];
      const secret = new TextEncoder().encode(JSON.stringify(publicJwk));
      const now = Math.floor(Date.now() / 1000);
      const forged = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: 'HS256', kid: tpp.kid })
        .setIssuer(tpp.clientId)
        .setSubject(tpp.clientId)
        .setAudience(`${TEST_PUBLIC_URL}/token`)
        .setExpirationTime(now + 60)
        .sign(secret);
      expectInvalidClient(await withAssertion(forged));
    });

    it('when iss differs from sub, then it is refused', async () => {
      const other = await newTpp();
      const assertion = await signClientAssertion(tpp, server, { claims: { sub: other.clientId } });
      expectInvalidClient(await withAssertion(assertion));
    });

    it('when a required claim (jti) is missing, then it is refused', async () => {
      const assertion = await signClientAssertion(tpp, server, { claims: { jti: undefined } });
      expectInvalidClient(await withAssertion(assertion));
    });

    it('when the client is unknown, then it is refused', async () => {
      const assertion = await signClientAssertion(
        { ...tpp, clientId: 'nobody-registered-this' },
        server,
      );
      expectInvalidClient(await withAssertion(assertion));
    });

    it("when the signing key is not in the client's JWKS, then it is refused (with its kid or with the registered kid)", async () => {
      const stranger = await createSigningKeyPair();
      expectInvalidClient(
        await withAssertion(
          await signClientAssertion(
            { ...tpp, kid: stranger.kid, signingKey: stranger.privateJwk },
            server,
          ),
        ),
      );
      expectInvalidClient(
        await withAssertion(await signClientAssertion(tpp, server, { key: stranger.privateJwk })),
      );
    });

    it('when the assertion has no kid, then the registered key that verifies it is used', async () => {
      const key = await importJWK(tpp.signingKey, 'PS256');
      const now = Math.floor(Date.now() / 1000);
      const assertion = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: 'PS256' })
        .setIssuer(tpp.clientId)
        .setSubject(tpp.clientId)
        .setAudience(`${TEST_PUBLIC_URL}/token`)
        .setExpirationTime(now + 60)
        .sign(key);
      expect((await withAssertion(assertion)).status).toBe(200);
    });

    it('when the client has been revoked, then it gets no token', async () => {
      const revoked = await newTpp();
      await server.server.services.clients.revoke(revoked.clientId);
      expectInvalidClient(await withAssertion(await signClientAssertion(revoked, server)));
    });

    it('when the client is revoked right after a successful token request, then the next one is refused (its cached row and keys are not used)', async () => {
      const other = await newTpp();
      const ask = async () =>
        postToken(server, other.agent, {
          grant_type: 'client_credentials',
          client_assertion_type: JWT_BEARER,
          client_assertion: await signClientAssertion(other, server),
        });
      expect((await ask()).status).toBe(200);
      await server.server.services.clients.revoke(other.clientId);
      expectInvalidClient(await ask());
    });

    it('when a tls_client_auth client authenticates with an assertion, then it is refused (wrong auth method)', async () => {
      const tlsClient = await newTpp({ authMethod: 'tls_client_auth' });
      const res = await postToken(server, tlsClient.agent, {
        grant_type: 'client_credentials',
        client_assertion_type: JWT_BEARER,
        client_assertion: await signClientAssertion(tlsClient, server),
      });
      expectInvalidClient(res);
    });

    it('when client_assertion_type is not the jwt-bearer URN, then it is refused', async () => {
      const res = await withAssertion(await signClientAssertion(tpp, server), {
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer',
      });
      expectInvalidClient(res);
    });

    it('when client_id names another client than the assertion, then it is refused', async () => {
      const other = await newTpp();
      const res = await withAssertion(await signClientAssertion(tpp, server), {
        client_id: other.clientId,
      });
      expectInvalidClient(res);
    });
  });

  describe('tls_client_auth', () => {
    it('when the certificate subject matches the registered DN, then a bound token is issued', async () => {
      const tlsClient = await newTpp({ authMethod: 'tls_client_auth', scopes: ['accounts'] });
      const token = await tlsClient.accessToken();
      const claims = decodeJwt(token);
      expect(claims.client_id).toBe(tlsClient.clientId);
      expect(claims.scope).toBe('accounts');
      expect((claims.cnf as Record<string, string>)['x5t#S256']).toBe(
        thumbprintOf(tlsClient.certPem),
      );
    });

    it("when another TPP's certificate is presented, then the DN does not match and it is refused", async () => {
      const tlsClient = await newTpp({ authMethod: 'tls_client_auth' });
      const res = await postToken(server, tpp.agent, {
        grant_type: 'client_credentials',
        client_id: tlsClient.clientId,
      });
      expectInvalidClient(res);
    });

    it('when a private_key_jwt client sends only its client_id, then it is refused (wrong auth method)', async () => {
      const res = await postToken(server, tpp.agent, {
        grant_type: 'client_credentials',
        client_id: tpp.clientId,
      });
      expectInvalidClient(res);
    });
  });

  describe('request and scope rules', () => {
    it('when a subset of the registered scopes is asked for, then exactly that is granted', async () => {
      const res = await withAssertion(await signClientAssertion(tpp, server), {
        scope: 'accounts payments',
      });
      expect(res.status).toBe(200);
      expect(res.json<{ scope: string }>().scope).toBe('accounts payments');
    });

    it('when a scope outside the registered ones is asked for, then invalid_scope', async () => {
      const res = await withAssertion(await signClientAssertion(tpp, server), {
        scope: 'accounts eventpolling',
      });
      expect(res.status).toBe(400);
      expect(res.json<{ error: string }>().error).toBe('invalid_scope');
    });

    it('when grant_type is not client_credentials, then unsupported_grant_type', async () => {
      const res = await withAssertion(await signClientAssertion(tpp, server), {
        grant_type: 'authorization_code',
      });
      expect(res.status).toBe(400);
      expect(res.json<{ error: string }>().error).toBe('unsupported_grant_type');
    });

    it('when grant_type is missing or a parameter is repeated, then invalid_request', async () => {
      const missing = await postToken(server, tpp.agent, { client_id: tpp.clientId });
      expect(missing.status).toBe(400);
      expect(missing.json<{ error: string }>().error).toBe('invalid_request');
      const assertion = await signClientAssertion(tpp, server);
      const repeated = await call(tpp.agent, `${server.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `grant_type=client_credentials&scope=accounts&scope=payments&client_assertion_type=${encodeURIComponent(JWT_BEARER)}&client_assertion=${assertion}`,
      });
      expect(repeated.status).toBe(400);
      expect(repeated.json<{ error: string }>().error).toBe('invalid_request');
    });

    it('when the body is JSON rather than a form, then invalid_request', async () => {
      const res = await call(tpp.agent, `${server.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ grant_type: 'client_credentials' }),
      });
      expect(res.status).toBe(400);
      expect(res.json<{ error: string }>().error).toBe('invalid_request');
    });

    it('when no client authentication is sent, or client_secret is tried, then invalid_client', async () => {
      expectInvalidClient(await postToken(server, tpp.agent, { grant_type: 'client_credentials' }));
      expectInvalidClient(
        await postToken(server, tpp.agent, {
          grant_type: 'client_credentials',
          client_id: tpp.clientId,
          client_secret: 'guess',
        }),
      );
    });

    it('when GET /token is tried, then 405', async () => {
      const res = await call(tpp.agent, `${server.url}/token`);
      expect(res.status).toBe(405);
      expect(res.headers.allow).toBe('POST');
    });
  });
});
