// Graceful shutdown: closeGracefully on a bare listener, then `ob-events serve` as a process
// receiving SIGTERM and SIGINT.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeGracefully, listen } from '../src/http/listeners.js';
import { cliEnv, requireBuild, spawnServe, startServe, waitForLog } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/** A plain GET; resolves with the status and body, rejects when the connection fails. */
function get(
  port: number,
  agent: http.Agent | false = false,
): Promise<{ status: number; body: string; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** A listener whose handler answers after `delayMs`; `started` resolves when a request arrives. */
async function slowServer(delayMs: number) {
  let arrived: () => void = () => {};
  const started = new Promise<void>((r) => (arrived = r));
  const server = http.createServer((_req, res) => {
    arrived();
    setTimeout(() => res.end('done'), delayMs);
  });
  server.keepAliveTimeout = 65_000; // as createAdminServer/createApiServer set it
  const { port } = await listen(server, '127.0.0.1', 0);
  return { server, port, started };
}

describe('closeGracefully', () => {
  it('when a request is in flight, then it finishes with 200 while new connections are refused', async () => {
    const { server, port, started } = await slowServer(300);
    const inFlight = get(port);
    await started;
    const closing = closeGracefully(server, 5_000);
    await expect(get(port)).rejects.toThrow(/ECONNREFUSED/);
    await expect(inFlight).resolves.toMatchObject({ status: 200, body: 'done' });
    await closing;
    expect(server.listening).toBe(false);
  });

  it('when the in-flight request came on a keep-alive connection, then shutdown ends as it finishes, not at the timeout', async () => {
    const { server, port, started } = await slowServer(300);
    const agent = new http.Agent({ keepAlive: true });
    const inFlight = get(port, agent);
    await started;
    const t0 = Date.now();
    const closing = closeGracefully(server, 10_000);
    await expect(inFlight).resolves.toMatchObject({ status: 200, body: 'done' });
    await closing;
    expect(Date.now() - t0).toBeLessThan(2_000);
    agent.destroy();
  });

  it('when a request outlives the timeout, then its connection is cut and shutdown completes', async () => {
    const { server, port, started } = await slowServer(60_000);
    const inFlight = get(port);
    inFlight.catch(() => {}); // asserted below
    await started;
    const t0 = Date.now();
    await closeGracefully(server, 200);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await expect(inFlight).rejects.toThrow(/socket hang up|ECONNRESET/);
  });

  it('when the server is not listening, then closeGracefully resolves at once', async () => {
    const server = http.createServer();
    await closeGracefully(server, 1_000);
  });
});

/** Connections of ob-events (pool and LISTEN) to the test database, after a moment to go. */
async function serverConnections(db: TestDatabase): Promise<number> {
  let n = -1;
  for (let i = 0; i < 20 && n !== 0; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 50));
    const { rows } = await db.knex.raw<{ rows: { n: number }[] }>(
      `select count(*)::int as n from pg_stat_activity
        where datname = current_database() and application_name in ('ob-events', 'ob-events-listener')`,
    );
    n = rows[0]?.n ?? -1;
  }
  return n;
}

async function ready(adminPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/health/ready`);
  await res.body?.cancel();
  return res.status;
}

describe('ob-events serve on a signal', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('when SIGTERM arrives while it is still starting, then start-up completes, it stops and exits 0', async () => {
    const serve = startServe(cliEnv(db, { LOG_LEVEL: 'info', LOG_FORMAT: 'json' }));
    try {
      await waitForLog(serve, '"starting ob-events"', 30_000);
      serve.child.kill('SIGTERM');
      const { code, signal } = await serve.exited;
      expect({ code, signal }, serve.stderr()).toEqual({ code: 0, signal: null });
      expect(serve.stderr()).toContain('"msg":"stopped"');
      if (db.kind === 'postgres') expect(await serverConnections(db)).toBe(0);
    } finally {
      serve.child.kill('SIGKILL');
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`when it receives ${signal}, then it stops listening, closes the pool and exits 0`, async () => {
      const serve = await spawnServe(cliEnv(db, { LOG_LEVEL: 'info', LOG_FORMAT: 'json' }));
      try {
        expect(await ready(serve.adminPort)).toBe(200);
        const t0 = Date.now();
        serve.child.kill(signal);
        const { code } = await serve.exited;
        expect(code, serve.stderr()).toBe(0);
        expect(Date.now() - t0).toBeLessThan(5_000);
        // 'stopped' is logged after the pool and the listening connection are closed.
        expect(serve.stderr()).toMatch(new RegExp(`"signal":"${signal}"`));
        expect(serve.stderr()).toContain('"msg":"stopped"');
        await expect(ready(serve.adminPort)).rejects.toThrow();
        if (db.kind === 'postgres') expect(await serverConnections(db)).toBe(0);
      } finally {
        serve.child.kill('SIGKILL');
      }
    });
  }
});
