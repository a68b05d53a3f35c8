// The resource server's guard (requireAccessToken): one negative test per rule. The routes under
// test are mounted on an API app built here, so the guard is tested on its own, over real mTLS,
// with the services (keys, clients, tokens) of a running server.
import { randomUUID, X509Certificate } from 'node:crypto';
import { Router } from 'express';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { signAccessToken } from '../src/crypto/accessTokens.js';
import { certificateThumbprint } from '../src/crypto/certificateThumbprint.js';
import {
  POLLING_SCOPES,
  requireAccessToken,
  SUBSCRIPTION_SCOPES,
} from '../src/http/auth/accessToken.js';
import { requestContext } from '../src/http/context.js';
import { createLogger, silentLogger } from '../src/logger.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, type TestResponse } from './helpers/http.js';
import { expectObieShape } from './helpers/obieSchema.js';
import {
  serveApiRouters,
  startTestServer,
  TEST_PUBLIC_URL,
  type TestServer,
} from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

const SUBSCRIPTIONS = '/open-banking/v3.1/test-subscriptions';
const EVENTS = '/open-banking/v3.1/test-events';

/** An API app whose two routes are guarded like the real subscription and polling routes. */
async function startGuardedApp(server: TestServer) {
  const deps = {
    config: server.config,
    services: server.server.services,
    logger: process.env.TEST_LOG_LEVEL
      ? createLogger({ level: process.env.TEST_LOG_LEVEL, format: 'json' })
      : silentLogger(),
  };
  const echo = (_req: unknown, res: Parameters<typeof requestContext>[0]) => {
    const ctx = requestContext(res);
    res.json({ clientId: ctx.clientId, scopes: ctx.scopes });
  };
  const router = Router();
  router.get(SUBSCRIPTIONS, requireAccessToken(deps, { scopes: SUBSCRIPTION_SCOPES }), echo);
  router.post(EVENTS, requireAccessToken(deps, { scopes: POLLING_SCOPES }), echo);
  return serveApiRouters([router], deps.logger);
}

function expectUnauthenticated(res: TestResponse): void {
  expect(res.status).toBe(401);
  expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  expect(res.text).toBe('');
}

describe('requireAccessToken', () => {
  let db: TestDatabase;
  let server: TestServer;
  let app: { url: string; close(): Promise<void> };
  let tpp: TestTpp;
  const agents: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    app = await startGuardedApp(server);
    tpp = await createTestTpp(server);
    agents.push(tpp.agent);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await app?.close();
    await server?.stop();
    await db?.drop();
  });

  const get = (t: TestTpp, token: string | undefined, path = SUBSCRIPTIONS) =>
    call(t.agent, `${app.url}${path}`, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });

  it('when a bound token is presented over its certificate, then the route runs as that client', async () => {
    const res = await get(tpp, await tpp.accessToken());
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({
      clientId: tpp.clientId,
      scopes: ['accounts', 'payments', 'fundsconfirmations'],
    });
  });

  it('when no Authorization header is sent, then 401 invalid_token without a body', async () => {
    expectUnauthenticated(await get(tpp, undefined));
  });

  it('when the token is sent in the query string, then 401 even though it is valid', async () => {
    const token = await tpp.accessToken();
    expectUnauthenticated(
      await call(tpp.agent, `${app.url}${SUBSCRIPTIONS}?access_token=${token}`),
    );
  });

  it('when the scheme is not Bearer, then 401', async () => {
    const token = await tpp.accessToken();
    expectUnauthenticated(
      await call(tpp.agent, `${app.url}${SUBSCRIPTIONS}`, {
        headers: { authorization: `DPoP ${token}` },
      }),
    );
  });

  it("when the token is presented over another TPP's certificate, then 401 (cnf mismatch)", async () => {
    const thief = await createTestTpp(server);
    agents.push(thief.agent);
    const stolen = await tpp.accessToken();
    expectUnauthenticated(await get(thief, stolen));
  });

  it('when the token was signed by our key but for another issuer, then 401', async () => {
    const key = await server.server.services.keys.activeKey();
    const token = await signAccessToken({
      signingKey: key,
      issuer: 'https://another-bank.example',
      audience: TEST_PUBLIC_URL,
      clientId: tpp.clientId,
      scopes: ['accounts'],
      certificateThumbprint: certificateThumbprint(new X509Certificate(tpp.certPem)),
      issuedAt: Math.floor(Date.now() / 1000),
      ttlSeconds: 600,
      jti: randomUUID(),
    });
    expectUnauthenticated(await get(tpp, token));
  });

  async function signedByUs(issuedAt: number, ttlSeconds: number) {
    return signAccessToken({
      signingKey: await server.server.services.keys.activeKey(),
      issuer: TEST_PUBLIC_URL,
      audience: TEST_PUBLIC_URL,
      clientId: tpp.clientId,
      scopes: ['accounts'],
      certificateThumbprint: certificateThumbprint(new X509Certificate(tpp.certPem)),
      issuedAt,
      ttlSeconds,
      jti: randomUUID(),
    });
  }

  it('when a token signed by our key lives longer than ACCESS_TOKEN_TTL_SECONDS (exp - iat of a year), then 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect((await get(tpp, await signedByUs(now, 600))).status).toBe(200);
    expectUnauthenticated(await get(tpp, await signedByUs(now, 365 * 86_400)));
    expectUnauthenticated(await get(tpp, await signedByUs(now, 600 + 60)));
  });

  it('when a token signed by our key has its iat in the future, then 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    expectUnauthenticated(await get(tpp, await signedByUs(now + 300, 600)));
  });

  it('when the token comes from another ob-events deployment (its own keys), then 401', async () => {
    const otherDb = await createTestDatabase();
    const other = await startTestServer(otherDb);
    try {
      const foreign = await createTestTpp(other, { clientId: tpp.clientId });
      // Same client id and the same CA, but the token was issued and signed elsewhere.
      const token = await foreign.accessToken();
      expectUnauthenticated(await get(foreign, token));
      await foreign.agent.close();
    } finally {
      await other.stop();
      await otherDb.drop();
    }
  });

  it('when the token is not an access token (typ) though signed by us, then 401', async () => {
    const key = await server.server.services.keys.activeKey();
    const now = Math.floor(Date.now() / 1000);
    const setLike = await new SignJWT({
      client_id: tpp.clientId,
      scope: 'accounts',
      cnf: { 'x5t#S256': certificateThumbprint(new X509Certificate(tpp.certPem)) },
      jti: randomUUID(),
    })
      .setProtectedHeader({ alg: 'PS256', kid: key.kid, typ: 'JOSE' })
      .setIssuer(TEST_PUBLIC_URL)
      .setAudience(TEST_PUBLIC_URL)
      .setSubject(tpp.clientId)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(key.privateKey);
    expectUnauthenticated(await get(tpp, setLike));
  });

  it('when the token has been tampered with, then 401', async () => {
    const token = await tpp.accessToken();
    const [h, p, s] = token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    claims.scope = 'accounts payments fundsconfirmations eventpolling';
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    expectUnauthenticated(await get(tpp, forged));
  });

  it('when a token verified (and remembered) for its owner is then presented over another certificate, then 401', async () => {
    const thief = await createTestTpp(server);
    agents.push(thief.agent);
    const token = await tpp.accessToken();
    expect((await get(tpp, token)).status).toBe(200);
    expectUnauthenticated(await get(thief, token));
    expect((await get(tpp, token)).status).toBe(200);
  });

  it('when the client is revoked, then its unexpired token stops working at once on this replica', async () => {
    const leaver = await createTestTpp(server);
    agents.push(leaver.agent);
    const token = await leaver.accessToken();
    expect((await get(leaver, token)).status).toBe(200);
    await server.server.services.clients.revoke(leaver.clientId);
    expectUnauthenticated(await get(leaver, token));
  });

  it('when the token holds none of the scopes a route accepts, then 403 with an OBIE error body', async () => {
    const poller = await createTestTpp(server, { scopes: ['eventpolling'] });
    agents.push(poller.agent);
    const token = await poller.accessToken();
    const res = await get(poller, token);
    expect(res.status).toBe(403);
    expectObieShape('OBErrorResponse1', res.json());
    // The same token opens the polling route, which also accepts eventpolling.
    const polled = await call(poller.agent, `${app.url}${EVENTS}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(polled.status).toBe(200);
  });

  it('when the token was granted a narrower scope than registered, then only that scope counts', async () => {
    const token = await tpp.accessToken('payments');
    const res = await get(tpp, token);
    expect(res.json<{ scopes: string[] }>().scopes).toEqual(['payments']);
  });
});

describe('requireAccessToken: expiry', () => {
  let db: TestDatabase;
  let server: TestServer;
  let app: { url: string; close(): Promise<void> };
  let tpp: TestTpp;
  const clock = new ManualClock();

  beforeAll(async () => {
    // The clock was made when the file was collected; the describes before this one may have
    // taken longer than the assertion's iat tolerance on a loaded machine.
    clock.set(Date.now());
    db = await createTestDatabase();
    server = await startTestServer(db, { clock });
    app = await startGuardedApp(server);
    tpp = await createTestTpp(server);
  });
  afterAll(async () => {
    await tpp?.agent.close();
    await app?.close();
    await server?.stop();
    await db?.drop();
  });

  it('when a token verified (and remembered) earlier has expired since, then 401', async () => {
    clock.set(Date.now());
    const token = await tpp.accessToken();
    const get = () =>
      call(tpp.agent, `${app.url}${SUBSCRIPTIONS}`, {
        headers: { authorization: `Bearer ${token}` },
      });
    expect((await get()).status).toBe(200);
    clock.advance(30_000);
    expect((await get()).status).toBe(200);
    clock.advance((600 + 10 + 1) * 1000);
    expectUnauthenticated(await get());
  });

  it('when the token has expired (beyond the clock tolerance), then 401', async () => {
    // The clock was made when the file was collected; the blocks before may have taken longer
    // than the assertion's clock tolerance on a loaded machine ("iat is in the future").
    clock.set(Date.now());
    const token = await tpp.accessToken();
    const get = () =>
      call(tpp.agent, `${app.url}${SUBSCRIPTIONS}`, {
        headers: { authorization: `Bearer ${token}` },
      });
    clock.advance((600 + 10 - 1) * 1000);
    expect((await get()).status).toBe(200);
    clock.advance(2_000);
    expectUnauthenticated(await get());
  });
});
