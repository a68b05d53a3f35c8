// What operators see of push and what they can do: the signed admin API
// (GET /admin/v1/deliveries, POST /admin/v1/deliveries/retry) and the CLI
// (`ob-events deliveries list|retry`, the real compiled CLI).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { cliEnv, requireBuild, runCli, type CliResult } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { attempts, deliveryWhen, publish, pushEnv, sleep } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const SECRET = 'operators-test-secret-0123456789';

interface DeliveryView {
  jti: string;
  clientId: string;
  state: string;
  pushState: string | null;
  pushAttempts: number;
  lastAttempt: { statusCode: number | null; outcome: string; attempt: number } | null;
}

function json<T>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

function refused(r: CliResult, reason: RegExp): void {
  expect(r.code).not.toBe(0);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('ob-events: '));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(reason);
}

describe('push operators', () => {
  let db: TestDatabase;
  let server: TestServer;
  let receiver: Receiver;
  let failingClient: string;
  let failedJti: string;
  let deliveredJti: string;
  let cli: Record<string, string>;

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    const env = pushEnv({ PUSH_MAX_ATTEMPTS: '2', ADMIN_API_SECRET: SECRET });
    server = await startTestServer(db, { env });
    cli = cliEnv(db, env);
    receiver = await startReceiver(() => ({ status: 500 }));
    failingClient = await registerClient(server);
    await subscribe(db.knex, failingClient, { callbackUrl: receiver.callbackUrl });
    [failedJti] = (await publish(server, failingClient)) as [string];

    const okReceiver = await startReceiver();
    const okClient = await registerClient(server);
    await subscribe(db.knex, okClient, { callbackUrl: okReceiver.callbackUrl });
    [deliveredJti] = (await publish(server, okClient)) as [string];
    await deliveryWhen(db.knex, deliveredJti, (d) => d.push_state === 'delivered');
    await okReceiver.close();
    await deliveryWhen(db.knex, failedJti, (d) => d.push_state === 'failed');
  });
  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
    await db?.drop();
  });

  function admin(path: string, init: { method?: string; body?: string; sign?: boolean } = {}) {
    const body = init.body ?? '';
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (init.sign !== false) {
      headers['x-ob-events-signature'] = signAdminRequest({
        secret: SECRET,
        method: init.method ?? 'GET',
        path,
        body,
      });
    }
    return fetch(`${server.adminUrl}${path}`, {
      method: init.method ?? 'GET',
      headers,
      ...(init.method === 'POST' ? { body } : {}),
    });
  }

  it('when the deliveries list is requested without a signature, then it is refused with 401', async () => {
    const res = await admin('/admin/v1/deliveries', { sign: false });
    expect(res.status).toBe(401);
  });

  it('when an operator lists deliveries, then failed pushes show with their last attempt', async () => {
    const res = await admin(`/admin/v1/deliveries?client_id=${failingClient}`);
    expect(res.status).toBe(200);
    const { deliveries, next } = (await res.json()) as {
      deliveries: DeliveryView[];
      next: string | null;
    };
    expect(next).toBeNull();
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]).toMatchObject({
      jti: failedJti,
      clientId: failingClient,
      state: 'pending',
      pushState: 'failed',
      pushAttempts: 2,
      lastAttempt: { statusCode: 500, outcome: 'failed', attempt: 2 },
    });

    const delivered = (await (await admin('/admin/v1/deliveries?state=delivered')).json()) as {
      deliveries: DeliveryView[];
    };
    expect(delivered.deliveries.map((d) => d.jti)).toEqual([deliveredJti]);
    // The default view (pending and failed) does not show what was delivered.
    const all = (await (await admin('/admin/v1/deliveries')).json()) as {
      deliveries: DeliveryView[];
    };
    expect(all.deliveries.map((d) => d.jti)).toEqual([failedJti]);
  });

  it('when the list query is wrong, then it is a 400 naming the parameter', async () => {
    expect((await admin('/admin/v1/deliveries?state=lost')).status).toBe(400);
    expect((await admin('/admin/v1/deliveries?limit=0')).status).toBe(400);
    expect((await admin('/admin/v1/deliveries?colour=red')).status).toBe(400);
  });

  it('when an operator lists failed pushes with the CLI, then the failed SET is in the JSON array', async () => {
    const list = json<DeliveryView[]>(
      await runCli(['deliveries', 'list', '--state', 'failed', '--client-id', failingClient], {
        env: cli,
      }),
    );
    expect(list.map((d) => [d.jti, d.pushState])).toEqual([[failedJti, 'failed']]);
    refused(
      await runCli(['deliveries', 'list', '--state', 'lost'], { env: cli }),
      /--state must be one of/,
    );
  });

  it('when an operator retries a failed push with the CLI, then it is pushed again now with a fresh series of attempts', async () => {
    receiver.setScript(() => ({ status: 202 }));
    const out = json<{ jti: string; status: string }>(
      await runCli(['deliveries', 'retry', failedJti], { env: cli }),
    );
    expect(out).toEqual({ jti: failedJti, status: 'due' });
    const row = await deliveryWhen(db.knex, failedJti, (d) => d.state !== 'pending', 5_000);
    expect(row).toMatchObject({ state: 'acknowledged', push_state: 'delivered', push_attempts: 1 });
    expect((await attempts(db.knex, failedJti)).map((a) => [a.attempt, a.outcome])).toEqual([
      [1, 'retry'],
      [2, 'failed'],
      [1, 'accepted'],
    ]);
  });

  it('when the CLI retries a SET that is not pending, unknown, or poll-only, then it exits non-zero with the reason', async () => {
    refused(
      await runCli(['deliveries', 'retry', deliveredJti], { env: cli }),
      /is acknowledged, not pending/,
    );
    refused(
      await runCli(['deliveries', 'retry', '01900000-0000-7000-8000-000000000000'], { env: cli }),
      /no SET with jti/,
    );
    refused(await runCli(['deliveries', 'retry', 'not-a-jti'], { env: cli }), /is not a jti/);
    const pollOnly = await registerClient(server);
    await subscribe(db.knex, pollOnly);
    const [jti] = await publish(server, pollOnly);
    refused(await runCli(['deliveries', 'retry', jti!], { env: cli }), /has no CallbackUrl/);
  });

  it("when a TPP's breaker is open and an operator retries one of its SETs, then the breaker closes and the SET goes out now", async () => {
    receiver.setScript(() => ({ status: 202 }));
    await db.knex('push_breakers').insert({
      client_id: failingClient,
      callback_url: receiver.callbackUrl,
      open_until: new Date(Date.now() + 3_600_000),
    });
    const before = receiver.requests.length;
    const [jti] = await publish(server, failingClient);
    await sleep(500);
    expect(receiver.requests.length).toBe(before); // held back by the open breaker
    const listed = json<(DeliveryView & { breakerOpenUntil: string | null })[]>(
      await runCli(['deliveries', 'list', '--client-id', failingClient], { env: cli }),
    );
    expect(listed.find((d) => d.jti === jti)?.breakerOpenUntil).not.toBeNull();

    json(await runCli(['deliveries', 'retry', jti!], { env: cli }));
    await deliveryWhen(db.knex, jti!, (d) => d.push_state === 'delivered', 5_000);
    expect(
      await db.knex('push_breakers').where({ client_id: failingClient }).first(),
    ).toBeUndefined();
  });

  it('when an operator retries through the admin API, then the SET named in the signed body is pushed again', async () => {
    receiver.setScript(() => ({ status: 500 }));
    const [jti] = await publish(server, failingClient);
    await deliveryWhen(db.knex, jti!, (d) => d.push_state === 'failed');
    receiver.setScript(() => ({ status: 202 }));

    const res = await admin('/admin/v1/deliveries/retry', {
      method: 'POST',
      body: JSON.stringify({ jti }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ jti, status: 'due' });
    await deliveryWhen(db.knex, jti!, (d) => d.push_state === 'delivered', 5_000);

    const unknown = await admin('/admin/v1/deliveries/retry', {
      method: 'POST',
      body: JSON.stringify({ jti: '01900000-0000-7000-8000-000000000000' }),
    });
    expect(unknown.status).toBe(404);
    const done = await admin('/admin/v1/deliveries/retry', {
      method: 'POST',
      body: JSON.stringify({ jti }),
    });
    expect(done.status).toBe(409);
  });

  it('when a retry request carries a signature made for another body, then it is refused', async () => {
    const headers = {
      'content-type': 'application/json',
      'x-ob-events-signature': signAdminRequest({
        secret: SECRET,
        method: 'POST',
        path: '/admin/v1/deliveries/retry',
        body: '',
      }),
    };
    const res = await fetch(`${server.adminUrl}/admin/v1/deliveries/retry`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jti: failedJti }),
    });
    expect(res.status).toBe(401);
  });
});
