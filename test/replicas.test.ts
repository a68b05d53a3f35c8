// Two ob-events instances on one Postgres: what one knows about assertions and revocations, the
// other knows too.
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import {
  createTestTpp,
  JWT_BEARER,
  postToken,
  signClientAssertion,
  type TestTpp,
} from './helpers/tpp.js';

describePostgres('two replicas on one database', () => {
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let tpp: TestTpp;

  beforeAll(async () => {
    db = await createTestDatabase();
    [a, b] = await Promise.all([startTestServer(db), startTestServer(db)]);
    tpp = await createTestTpp(a);
  });
  afterAll(async () => {
    await tpp?.agent.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await db?.drop();
  });

  const form = (assertion: string) => ({
    grant_type: 'client_credentials',
    client_assertion_type: JWT_BEARER,
    client_assertion: assertion,
  });

  it('when an assertion used on one replica is replayed on the other, then the other refuses it', async () => {
    const assertion = await signClientAssertion(tpp, a);
    expect((await postToken(a, tpp.agent, form(assertion))).status).toBe(200);
    const replay = await postToken(b, tpp.agent, form(assertion));
    expect(replay.status).toBe(401);
    expect(replay.json<{ error: string }>().error).toBe('invalid_client');
  });

  it('when one assertion is sent to both replicas at once, then exactly one token is issued', async () => {
    const assertion = await signClientAssertion(tpp, a);
    const results = await Promise.all(
      [a, b, a, b].map((s) => postToken(s, tpp.agent, form(assertion))),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 401, 401, 401]);
  });

  it('when a client is revoked on one replica, then its token stops working on the other within 2 s', async () => {
    const leaver = await createTestTpp(a);
    try {
      const token = await leaver.accessToken();
      const cert = new X509Certificate(leaver.certPem);
      // What requireAccessToken runs on every protected request, on replica b.
      const checkOnB = () => b.server.services.tokens.authenticateAccessToken(token, cert);
      await expect(checkOnB()).resolves.toMatchObject({ clientId: leaver.clientId });

      await a.server.services.clients.revoke(leaver.clientId);
      const started = Date.now();
      let rejected = false;
      while (!rejected && Date.now() - started < 2_000) {
        rejected = await checkOnB().then(
          () => false,
          () => true,
        );
        if (!rejected) await new Promise((r) => setTimeout(r, 50));
      }
      expect(rejected).toBe(true);
      const tokenOnB = await postToken(b, leaver.agent, form(await signClientAssertion(leaver, b)));
      expect(tokenOnB.status).toBe(401);
    } finally {
      await leaver.agent.close();
    }
  });
});
