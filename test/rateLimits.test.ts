// Per-client rate limits: at /token per transport certificate, on the API per client; 429 with
// Retry-After in the endpoint's error shape; one client's flood costs another nothing. The
// clock is a manual one, so nothing here depends on how fast the machine is.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { RateLimits, TokenBuckets } from '../src/domain/rateLimits.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call } from './helpers/http.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import {
  createTestTpp,
  JWT_BEARER,
  postToken,
  signClientAssertion,
  type TestTpp,
} from './helpers/tpp.js';

describe('token buckets', () => {
  it('when a key has spent its budget, then it waits for the refill and other keys are unaffected', () => {
    const clock = new ManualClock(0);
    const buckets = new TokenBuckets(0.5, 2, clock); // 2 at once, then one every 2 s
    expect([buckets.take('a'), buckets.take('a'), buckets.take('a')]).toEqual([0, 0, 2]);
    expect(buckets.take('b')).toBe(0);
    clock.advance(2_000);
    expect(buckets.take('a')).toBe(0);
    expect(buckets.take('a')).toBe(2);
  });

  it('when RATE_LIMIT_REPLICAS is 2, then each replica allows half the configured limit', () => {
    const clock = new ManualClock(0);
    const limits = new RateLimits({ tokensPerMinute: 60, apiPerSecond: 4, replicas: 2 }, clock);
    const outcomes = Array.from({ length: 3 }, () => {
      try {
        limits.checkApiRequest('c');
        return 'ok';
      } catch {
        return 'limited';
      }
    });
    expect(outcomes).toEqual(['ok', 'ok', 'limited']);
  });

  it('when a limit is 0, then it is off', () => {
    const limits = new RateLimits(
      { tokensPerMinute: 0, apiPerSecond: 0, replicas: 1 },
      new ManualClock(0),
    );
    for (let i = 0; i < 1_000; i++) limits.checkApiRequest('c');
  });
});

describe('rate limits on the server', () => {
  let db: TestDatabase;
  let server: TestServer;
  let clock: ManualClock;
  let a: TestTpp;
  let b: TestTpp;

  beforeAll(async () => {
    db = await createTestDatabase();
    clock = new ManualClock(Date.now());
    server = await startTestServer(db, {
      clock,
      env: { RATE_LIMIT_TOKENS_PER_MINUTE: '2', RATE_LIMIT_API_PER_SECOND: '3' },
    });
    a = await createTestTpp(server);
    b = await createTestTpp(server);
  });
  afterAll(async () => {
    await a?.agent.close();
    await b?.agent.close();
    await server?.stop();
    await db?.drop();
  });

  const tokenRequest = async (tpp: TestTpp) =>
    postToken(server, tpp.agent, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await signClientAssertion(tpp, server),
    });

  it('when a TPP asks for more tokens than its budget, then 429 slow_down with Retry-After, and another TPP still gets tokens', async () => {
    clock.set(Date.now());
    expect((await tokenRequest(a)).status).toBe(200);
    expect((await tokenRequest(a)).status).toBe(200);
    const limited = await tokenRequest(a);
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('30');
    expect(limited.headers['cache-control']).toBe('no-store');
    expect(limited.json()).toEqual({
      error: 'slow_down',
      error_description: 'too many token requests: retry after the time in Retry-After',
    });
    expect((await tokenRequest(b)).status).toBe(200);
    clock.advance(30_000);
    expect((await tokenRequest(a)).status).toBe(200);
  });

  it('when a client calls the API faster than its budget, then 429 in the OBIE shape with Retry-After, and another client is unaffected', async () => {
    clock.advance(120_000);
    const [tokenA, tokenB] = [await a.accessToken(), await b.accessToken()];
    const get = (tpp: TestTpp, token: string) =>
      call(tpp.agent, `${server.url}/open-banking/v3.1/event-subscriptions`, {
        headers: { authorization: `Bearer ${token}` },
      });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await get(a, tokenA)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const limited = await get(a, tokenA);
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(limited.json()).toMatchObject({
      Code: '429 Too Many Requests',
      Errors: [{ ErrorCode: 'UK.OBIE.UnexpectedError' }],
    });
    expect((await get(b, tokenB)).status).toBe(200);
    clock.advance(1_000);
    expect((await get(a, tokenA)).status).toBe(200);
  });
});
