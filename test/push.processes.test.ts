// Push across processes: `ob-events serve` killed with SIGKILL mid-delivery and started again
// delivers everything at least once; `ob-events worker` pushes without the API and stops
// cleanly on SIGTERM. The real compiled CLI, on a real Postgres (two processes share it).
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI, cliEnv, requireBuild, spawnServe, type ServeProcess } from './helpers/cli.js';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { eventually, publish, pushEnv } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

describePostgres('push across processes', () => {
  let db: TestDatabase;
  let publisher: TestServer; // in-process, pushes nothing (PUSH_CONCURRENCY=0): only publishes
  const receivers: Receiver[] = [];
  const children: { kill(signal: NodeJS.Signals): unknown; exitCode: number | null }[] = [];

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    publisher = await startTestServer(db, { env: { PUSH_CONCURRENCY: '0' } });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await publisher?.stop();
    await Promise.all(receivers.map((r) => r.close()));
    await db?.drop();
  });

  const serveEnv = (extra: Record<string, string> = {}) =>
    cliEnv(db, { ...pushEnv(extra), LOG_FORMAT: 'json', LOG_LEVEL: 'info' });

  it('when serve is killed with SIGKILL while pushes hang and is started again, then every SET arrives at least once', async () => {
    const receiver = await startReceiver(() => ({ hang: true }));
    receivers.push(receiver);
    const clientId = await registerClient(publisher);
    await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });
    // 1 s time-out: a 7 s lease, so the SETs in flight at the kill come back after that.
    // A worker gone for 2 s counts as crashed: its SETs are taken over once their leases end.
    const env = serveEnv({
      PUSH_TIMEOUT_MS: '1000',
      PUSH_PER_ORIGIN_CONCURRENCY: '8',
      PUSH_WORKER_TIMEOUT_SECONDS: '2',
    });

    let serve: ServeProcess = await spawnServe(env);
    children.push(serve.child);
    const jtis = await publish(publisher, clientId, 30);
    await receiver.waitFor((r) => r.requests.length >= 8, 10_000, '8 hanging requests');
    serve.child.kill('SIGKILL');
    expect((await serve.exited).signal).toBe('SIGKILL');
    const held = await db
      .knex('event_deliveries')
      .whereIn('jti', jtis)
      .whereNotNull('leased_until')
      .count({ n: '*' });
    expect(Number(held[0]!.n)).toBeGreaterThanOrEqual(1); // some were mid-delivery

    receiver.setScript(() => ({ status: 202 }));
    serve = await spawnServe(env);
    children.push(serve.child);
    await receiver.waitFor(
      (r) => jtis.every((j) => r.accepted.has(j)),
      20_000,
      'every SET after the restart',
    );
    // Outcomes are written just after the answers arrive.
    await eventually(
      async () => {
        const states = await db.knex('event_deliveries').whereIn('jti', jtis).select('state');
        return states.every((s: { state: string }) => s.state === 'acknowledged')
          ? true
          : undefined;
      },
      5_000,
      'every SET acknowledged',
    );

    serve.child.kill('SIGTERM');
    expect((await serve.exited).code).toBe(0);
  }, 45_000);

  it('when `ob-events worker` runs beside an API that does not push, then it delivers, reports health, and stops on SIGTERM', async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    const clientId = await registerClient(publisher);
    await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });

    const child = spawn(process.execPath, [CLI, 'worker'], {
      env: serveEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    const running = await new Promise<{ admin: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker did not start:\n${stderr}`)), 30_000);
      const check = () => {
        const line = stderr.split('\n').find((l) => l.includes('"ob-events worker running"'));
        if (!line) return;
        clearTimeout(timer);
        child.stderr.off('data', check);
        resolve(JSON.parse(line) as { admin: string });
      };
      child.stderr.on('data', check);
    });

    const jtis = await publish(publisher, clientId, 10);
    await receiver.waitFor(
      (r) => jtis.every((j) => r.accepted.has(j)),
      10_000,
      'the worker to push',
    );
    const ready = await fetch(`${running.admin}/health/ready`);
    expect(ready.status).toBe(200);
    // The worker has no API listener and no publishing API.
    expect((await fetch(`${running.admin}/admin/v1/events`, { method: 'POST' })).status).toBe(404);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toContain('"stopped"');
  });
});
