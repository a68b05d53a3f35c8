// Request logs: every line of a request carries its interaction id, and its client id once the
// caller is authenticated; tokens and assertions never appear.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createLogger, MAX_LOGGED_STRING } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/main.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call } from './helpers/http.js';
import { testEnv, type TestServer } from './helpers/server.js';
import { createTestTpp, signClientAssertion, JWT_BEARER, postToken } from './helpers/tpp.js';

describe('request logging', () => {
  let db: TestDatabase;
  let running: RunningServer;
  let server: TestServer;
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) {
          raw.push(l);
          lines.push(JSON.parse(l) as Record<string, unknown>);
        }
        done();
      },
    });
    const config = loadConfig(testEnv(db, { LOG_LEVEL: 'debug' }));
    // The logger `serve` uses (bounded values, redaction), writing to the test's sink.
    const logger = createLogger({ level: 'debug', format: 'json', destination: sink });
    running = await startServer({ config, logger });
    server = {
      url: `https://127.0.0.1:${running.apiPort}`,
      adminUrl: `http://127.0.0.1:${running.adminPort}`,
      config,
      server: running,
      stop: () => running.stop(),
    };
  });
  afterAll(async () => {
    await running?.stop();
    await db?.drop();
  });

  it('when a TPP gets a token and polls, then each line of those requests has the interaction id and the client id, and no secret', async () => {
    const tpp = await createTestTpp(server);
    const assertion = await signClientAssertion(tpp, server);
    const tokenRes = await postToken(server, tpp.agent, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
    });
    const token = tokenRes.json<{ access_token: string }>().access_token;
    const id = 'b1c6e5a0-7d4e-4a43-9f55-2a3cf2d1c001';
    const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/events`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'x-fapi-interaction-id': id,
      },
      body: JSON.stringify({ returnImmediately: true }),
    });
    expect(res.status).toBe(200);
    await new Promise((r) => setTimeout(r, 50));

    const ofPoll = lines.filter((l) => l.interactionId === id);
    expect(ofPoll.length).toBeGreaterThan(0);
    for (const l of ofPoll) expect(l.clientId).toBe(tpp.clientId);
    const tokenLine = lines.find((l) => l.path === '/token' && l.msg === 'request');
    expect(tokenLine?.clientId).toBe(tpp.clientId);
    const all = raw.join('\n');
    expect(all).not.toContain(token);
    expect(all).not.toContain(assertion);
    expect(all.toLowerCase()).not.toContain('bearer ');
  });

  it('when a 15,000-character client id is sent to /token, then every log line stays bounded', async () => {
    const tpp = await createTestTpp(server);
    const before = raw.length;
    const res = await postToken(server, tpp.agent, {
      grant_type: 'client_credentials',
      client_id: 'x'.repeat(15_000),
    });
    expect(res.status).toBe(401);
    const long = await call(tpp.agent, `${server.url}/${'p'.repeat(8_000)}`);
    expect(long.status).toBeLessThan(500);
    await new Promise((r) => setTimeout(r, 50));
    const written = raw.slice(before);
    expect(written.some((l) => l.includes('token request refused'))).toBe(true);
    for (const line of written) expect(line.length).toBeLessThan(4 * MAX_LOGGED_STRING + 1_024);
  });
});
