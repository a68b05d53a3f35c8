// The bank's public JWKS without mTLS (issue 15): GET /jwks on the admin listener serves the
// same public keys as the API listener's /jwks (the OB practice of a public keystore), and what
// the README's TPP guidance says about verifying our signatures with jose holds.
import { createRemoteJWKSet, flattenedVerify, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe, eventFor } from './helpers/fixtures.js';
import { call } from './helpers/http.js';
import { startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';
import { parseEventInput, type EventInput } from '../src/domain/eventInput.js';

const OB_CRIT = {
  'http://openbanking.org.uk/iat': true,
  'http://openbanking.org.uk/iss': true,
  'http://openbanking.org.uk/tan': true,
};

describe('public JWKS on the admin listener', () => {
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

  it('when fetched over plain HTTP without a client certificate, then it is the API listener JWKS, public members only', async () => {
    const res = await fetch(`${server.adminUrl}/jwks`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=60');
    const publicJwks = (await res.json()) as { keys: Record<string, unknown>[] };
    const viaMtls = await call(tpp.agent, `${server.url}/jwks`);
    expect(publicJwks).toEqual(viaMtls.json());
    expect(publicJwks.keys.length).toBeGreaterThan(0);
    for (const k of publicJwks.keys) {
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(k).not.toHaveProperty(secret);
    }
  });

  it('when something other than GET is sent, then 405', async () => {
    const res = await fetch(`${server.adminUrl}/jwks`, { method: 'POST' });
    expect(res.status).toBe(405);
  });

  it('when a TPP verifies a SET with jose and the public JWKS, then it verifies', async () => {
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId);
    const parsed = parseEventInput(eventFor(clientId));
    if (!parsed.ok) throw new Error('bad fixture');
    const [outcome] = await server.server.services.publisher.publish([parsed.event as EventInput]);
    const row = await db.knex('events').where({ jti: outcome!.jti }).first();
    const keys = createRemoteJWKSet(new URL(`${server.adminUrl}/jwks`));
    const { payload } = await jwtVerify(row.set_jws as string, keys, {
      issuer: TEST_PUBLIC_URL,
      audience: clientId,
      algorithms: ['PS256'],
    });
    expect(payload.jti).toBe(outcome!.jti);
  });

  it('when a TPP verifies a response x-jws-signature with jose, then it needs the crit allowance for the three OB headers', async () => {
    const body = '{"Data":{"Version":"3.1"}}';
    const detached = await server.server.services.responseSigner.sign(body);
    const [protectedHeader, , signature] = detached.split('.');
    const jws = {
      protected: protectedHeader!,
      payload: Buffer.from(body).toString('base64url'),
      signature: signature!,
    };
    const keys = createRemoteJWKSet(new URL(`${server.adminUrl}/jwks`));
    await expect(flattenedVerify(jws, keys, { algorithms: ['PS256'] })).rejects.toMatchObject({
      code: 'ERR_JOSE_NOT_SUPPORTED',
    });
    const verified = await flattenedVerify(jws, keys, { algorithms: ['PS256'], crit: OB_CRIT });
    expect(Buffer.from(verified.payload).toString()).toBe(body);
    expect(verified.protectedHeader?.['http://openbanking.org.uk/iss']).toBe(
      server.config.push.financialId,
    );
  });
});

describe('public JWKS switched off', () => {
  let db: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: { ADMIN_PUBLIC_JWKS: 'false' } });
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('when ADMIN_PUBLIC_JWKS=false, then the admin listener has no /jwks', async () => {
    const res = await fetch(`${server.adminUrl}/jwks`);
    expect(res.status).toBe(404);
  });
});
