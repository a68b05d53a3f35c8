// Endpoints that fail for long (issue 15): after PUSH_DISABLE_AFTER_SECONDS without a success a
// TPP's push is disabled (its SETs stay pending for polling, nothing is dropped), the metric
// says so, and an operator enables it again through the CLI (`push enable`) or the signed
// admin API (POST /admin/v1/push/enable).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { cliEnv, requireBuild, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { eventually, publish, pushEnv, sleep } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const SECRET = 'disable-test-secret-0123456789ab';

describe('push disabled after failing for long', () => {
  let db: TestDatabase;
  let server: TestServer;
  let receiver: Receiver;
  let clientId: string;
  let cli: Record<string, string>;

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    const env = pushEnv({
      PUSH_DISABLE_AFTER_SECONDS: '1',
      PUSH_MAX_ATTEMPTS: '1000',
      PUSH_BREAKER_OPEN_SECONDS: '1',
      ADMIN_API_SECRET: SECRET,
    });
    server = await startTestServer(db, { env });
    cli = cliEnv(db, env);
    receiver = await startReceiver(() => ({ status: 500 }));
    clientId = await registerClient(server);
    await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });
  });
  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
    await db?.drop();
  });

  function admin(path: string, init: { method?: string; body?: string; sign?: boolean } = {}) {
    const body = init.body ?? '';
    const method = init.method ?? 'GET';
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (init.sign !== false)
      headers['x-ob-events-signature'] = signAdminRequest({ secret: SECRET, method, path, body });
    return fetch(`${server.adminUrl}${path}`, {
      method,
      headers,
      ...(method === 'POST' ? { body } : {}),
    });
  }

  const disabled = () =>
    eventually(
      async () => {
        const b = await db.knex('push_breakers').where({ client_id: clientId }).first();
        return b?.disabled_at ? b : undefined;
      },
      10_000,
      'push to be disabled',
    );

  it('when a TPP endpoint fails for longer than PUSH_DISABLE_AFTER_SECONDS, then its push is disabled, its SETs stay pollable and the metric and CLI say so', async () => {
    const jtis = await publish(server, clientId, 3);
    const row = await disabled();
    expect(row.failing_since).not.toBeNull();
    await sleep(600); // requests in flight at that moment end
    const sent = receiver.requests.length;
    await sleep(1_500);
    expect(receiver.requests.length).toBe(sent); // nothing pushed while disabled

    const pending = await db.knex('event_deliveries').whereIn('jti', jtis);
    expect(
      pending.map((d: { state: string; push_state: string }) => [d.state, d.push_state]),
    ).toEqual(jtis.map(() => ['pending', 'due']));

    const metrics = await (await fetch(`${server.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/^ob_events_push_disabled_clients 1$/m);

    const listed = await runCli(['push', 'endpoints', '--client-id', clientId], { env: cli });
    expect(listed.code, listed.stderr).toBe(0);
    const endpoints = JSON.parse(listed.stdout) as { clientId: string; state: string }[];
    expect(endpoints).toEqual([expect.objectContaining({ clientId, state: 'disabled' })]);

    // A retry of one SET does not silently turn it back on.
    const retry = await runCli(['deliveries', 'retry', jtis[0]!], { env: cli });
    expect(retry.code).not.toBe(0);
    expect(retry.stderr).toMatch(/is disabled after failing for long: enable it first/);
  });

  it('when an operator enables it with the CLI, then push resumes and the waiting SETs arrive', async () => {
    receiver.setScript(() => ({ status: 202 }));
    const pendingJtis: string[] = (
      await db.knex('event_deliveries').where({ client_id: clientId, state: 'pending' })
    ).map((d: { jti: string }) => d.jti);
    const out = await runCli(['push', 'enable', clientId], { env: cli });
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ clientId, enabled: true, wasDisabled: true });
    await receiver.waitFor(
      (r) => pendingJtis.every((j) => r.accepted.has(j)),
      10_000,
      'the waiting SETs',
    );
    expect(await db.knex('push_breakers').where({ client_id: clientId }).first()).toBeUndefined();

    const unknown = await runCli(['push', 'enable', 'no-such-client'], { env: cli });
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no client no-such-client/);
  });

  it('when an operator enables it through the admin API, then only a signed request for a known client does it', async () => {
    receiver.setScript(() => ({ status: 500 }));
    const [jti] = await publish(server, clientId, 1);
    await disabled();
    receiver.setScript(() => ({ status: 202 }));
    const body = JSON.stringify({ client_id: clientId });

    const unsigned = await admin('/admin/v1/push/enable', { method: 'POST', body, sign: false });
    expect(unsigned.status).toBe(401);
    const listed = await admin(`/admin/v1/push/endpoints?client_id=${clientId}`);
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { endpoints: { state: string }[] }).endpoints[0]!.state).toBe(
      'disabled',
    );
    const bad = await admin('/admin/v1/push/enable', { method: 'POST', body: '{"client":1}' });
    expect(bad.status).toBe(400);
    const unknown = await admin('/admin/v1/push/enable', {
      method: 'POST',
      body: JSON.stringify({ client_id: 'no-such-client' }),
    });
    expect(unknown.status).toBe(404);

    const res = await admin('/admin/v1/push/enable', { method: 'POST', body });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ client_id: clientId, enabled: true, was_disabled: true });
    await receiver.waitFor((r) => r.accepted.has(jti!), 10_000, 'the SET after enabling');
  });
});
