// The TPP SDK's access token: one token request while the token has time left, a new one shortly
// before it expires, and one more after a 401. The server's and the SDK's clocks are moved by
// hand; each token request costs one client assertion, so the server's assertion_jtis rows count
// token requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../src/clock.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { subscribe } from './helpers/fixtures.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { createTestTpp } from './helpers/tpp.js';
import { sdkClient } from './helpers/tppSdk.js';

class OffsetClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

describe('TPP SDK access tokens', () => {
  let db: TestDatabase;
  let server: TestServer;
  const serverClock = new OffsetClock();

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: { ACCESS_TOKEN_TTL_SECONDS: '30' },
      clock: serverClock,
    });
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  const tokenRequests = async (clientId: string) =>
    Number(
      (
        await db
          .knex('assertion_jtis')
          .where({ client_id: clientId })
          .count<{ n: string }[]>('* as n')
      )[0]!.n,
    );

  it('when the token has time left, then it is reused; within the margin before expiry, it is renewed; after a 401, renewed once', async () => {
    const tpp = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId);
    const sdkClock = new OffsetClock();
    const client = sdkClient(server, tpp, { tokenRefreshMarginSeconds: 10, clock: sdkClock });

    await Promise.all([
      client.poll({ returnImmediately: true }),
      client.poll({ returnImmediately: true }),
    ]);
    await client.getSubscription();
    expect(await tokenRequests(tpp.clientId)).toBe(1);
    const first = await client.accessToken();

    sdkClock.offsetMs = serverClock.offsetMs = 15_000; // about 15 s left: outside the 10 s margin
    await client.poll({ returnImmediately: true });
    expect(await client.accessToken()).toBe(first);
    expect(await tokenRequests(tpp.clientId)).toBe(1);

    sdkClock.offsetMs = serverClock.offsetMs = 22_000; // under 8 s left: renewed before use
    await client.poll({ returnImmediately: true });
    const second = await client.accessToken();
    expect(second).not.toBe(first);
    expect(await tokenRequests(tpp.clientId)).toBe(2);

    // The server's time runs ahead of the SDK's: the token it still thinks fresh is refused (401),
    // and the SDK asks for a new one and repeats the call.
    serverClock.offsetMs += 40_000;
    await client.poll({ returnImmediately: true });
    expect(await tokenRequests(tpp.clientId)).toBe(3);
    expect(await client.accessToken()).not.toBe(second);
    await client.close();
  });

  it('when the renewed token is refused too, then the call fails with the 401 instead of looping', async () => {
    const tpp = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId);
    const client = sdkClient(server, tpp);
    await client.accessToken();
    await server.server.services.clients.revoke(tpp.clientId);
    await new Promise((r) => setTimeout(r, 1_100)); // the client cache holds for up to 1 s
    await expect(client.poll({ returnImmediately: true })).rejects.toMatchObject({
      code: 'token_refused',
      status: 401,
    });
    await client.close();
  });
});
