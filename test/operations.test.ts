// Delivery history, replay and dead letters, through the signed admin API and the real CLI:
// a replay of an acknowledged SET reaches the TPP's push endpoint with the same bytes and is
// pollable again; replay since T is bounded and idempotent; dead letters are listed, retried
// and purged; every action lands in the audit trail.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { cliEnv, requireBuild, runCli, type CliResult } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { delivery, deliveryWhen, publish, pushEnv } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const SECRET = 'operations-test-secret-0123456789';

function json<T>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

describe('delivery history, replay and dead letters', () => {
  let db: TestDatabase;
  let server: TestServer;
  let receiver: Receiver;
  let cli: Record<string, string>;

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    const env = pushEnv({
      PUSH_MAX_ATTEMPTS: '2',
      ADMIN_API_SECRET: SECRET,
      HISTORY_MAX_PER_SET: '3',
      REPLAY_MAX_SETS: '50',
    });
    server = await startTestServer(db, { env });
    cli = cliEnv(db, env);
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
    await db?.drop();
  });

  function admin(path: string, body?: unknown, sign = true) {
    const method = body === undefined ? 'GET' : 'POST';
    const raw = body === undefined ? '' : JSON.stringify(body);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (sign) {
      headers['x-ob-events-signature'] = signAdminRequest({
        secret: SECRET,
        method,
        path,
        body: raw,
      });
    }
    return fetch(`${server.adminUrl}${path}`, {
      method,
      headers,
      ...(method === 'POST' ? { body: raw } : {}),
    });
  }

  const poll = (clientId: string, body: Record<string, unknown> = {}) =>
    server.server.services.polling.poll(clientId, { returnImmediately: true, ...body });

  it('when an acknowledged SET is replayed, then the TPP receives the same bytes by push again', async () => {
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId, { callbackUrl: receiver.callbackUrl });
    const [jti] = (await publish(server, clientId)) as [string];
    await deliveryWhen(db.knex, jti, (d) => d.state === 'acknowledged');
    const first = receiver.forJti(jti);
    expect(first).toHaveLength(1);

    const res = await admin('/admin/v1/deliveries/replay', { jti, actor: 'alice@bank' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ jti, clientId, outcome: 'replayed', push: true });

    await receiver.waitFor((r) => r.forJti(jti).length === 2, 10_000, 'the replayed push');
    const [a, b] = receiver.forJti(jti);
    expect(b!.body).toBe(a!.body); // same jti, same signed bytes
    const row = await deliveryWhen(db.knex, jti, (d) => d.state === 'acknowledged');
    expect(row.resolution).toBe('push_accepted');

    // Its history: two accepted attempts, with the replica that made them.
    const history = (await (await admin(`/admin/v1/deliveries/${jti}/history`)).json()) as {
      replays: number;
      pushes: { outcome: string; statusCode: number; worker: string; latencyMs: number }[];
    };
    expect(history.replays).toBe(1);
    expect(history.pushes.map((p) => [p.outcome, p.statusCode])).toEqual([
      ['accepted', 202],
      ['accepted', 202],
    ]);
    expect(history.pushes[0]!.worker).toMatch(/:\d+:/);
  });

  it('when an acknowledged SET of a polling TPP is replayed, then the next poll returns its stored bytes', async () => {
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId);
    const [jti] = (await publish(server, clientId)) as [string];
    const firstPoll = await poll(clientId);
    const bytes = firstPoll.sets[jti];
    expect(bytes).toBeDefined();
    await poll(clientId, { ack: [jti], maxEvents: 0 });
    expect((await delivery(db.knex, jti)).state).toBe('acknowledged');
    expect((await poll(clientId)).sets).toEqual({});

    const replayed = json<{ outcome: string; push: boolean }>(
      await runCli(['deliveries', 'replay', jti], { env: cli }),
    );
    expect(replayed).toMatchObject({ outcome: 'replayed', push: false });
    // Replaying a pending SET again changes nothing (idempotent).
    const again = (await (await admin('/admin/v1/deliveries/replay', { jti })).json()) as {
      outcome: string;
    };
    expect(again.outcome).toBe('already_pending');

    expect((await poll(clientId)).sets).toEqual({ [jti]: bytes });

    // The hand-outs are in the history, per SET and per TPP.
    const perTpp = json<{ jti: string; polls: { replica: string }[] }[]>(
      await runCli(['deliveries', 'history', '--client', clientId], { env: cli }),
    );
    expect(perTpp.map((s) => s.jti)).toEqual([jti]);
    expect(perTpp[0]!.polls).toHaveLength(2);
    expect(perTpp[0]!.polls[0]!.replica).toMatch(/:\d+$/);
  });

  it('when a SET is handed out more often than HISTORY_MAX_PER_SET, then only that many hand-outs are kept', async () => {
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId);
    const [jti] = (await publish(server, clientId)) as [string];
    for (let i = 0; i < 5; i++) {
      expect(Object.keys((await poll(clientId)).sets)).toEqual([jti]);
      await db.knex('event_deliveries').where({ jti }).update({ leased_until: null }); // lease over
    }
    expect((await delivery(db.knex, jti)).state).toBe('pending');
    const [{ n }] = (await db.knex('poll_handouts').where({ jti }).count({ n: '*' })) as [
      { n: string },
    ];
    expect(Number(n)).toBe(3);
  });

  it('when a TPP lost its database, then replay since T makes its SETs pending again, bounded and idempotent', async () => {
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId);
    const older = await publish(server, clientId, 2);
    await new Promise((r) => setTimeout(r, 5));
    const since = new Date();
    await new Promise((r) => setTimeout(r, 5));
    const jtis = await publish(server, clientId, 5);
    await poll(clientId, { maxEvents: 100 });
    await poll(clientId, { ack: [...older, ...jtis], maxEvents: 0 });

    const body = { clientId, since: since.toISOString(), limit: 3 };
    const first = (await (await admin('/admin/v1/deliveries/replay-since', body)).json()) as {
      replayed: number;
      more: boolean;
    };
    expect(first).toMatchObject({ replayed: 3, more: true });
    const second = json<{ replayed: number; more: boolean }>(
      await runCli(['deliveries', 'replay', '--client', clientId, '--since', since.toISOString()], {
        env: cli,
      }),
    );
    expect(second).toMatchObject({ replayed: 2, more: false });
    const third = (await (await admin('/admin/v1/deliveries/replay-since', body)).json()) as {
      replayed: number;
    };
    expect(third.replayed).toBe(0);

    // Each SET since T once, none from before T.
    const answer = await poll(clientId, { maxEvents: 100 });
    expect(Object.keys(answer.sets)).toEqual(jtis);
    expect(answer.moreAvailable).toBe(false);
  });

  it('when replay since T asks for more than REPLAY_MAX_SETS or a time in the future, then it is a 400', async () => {
    const clientId = await registerClient(server);
    const since = new Date(Date.now() - 60_000).toISOString();
    expect(
      (await admin('/admin/v1/deliveries/replay-since', { clientId, since, limit: 51 })).status,
    ).toBe(400);
    expect(
      (
        await admin('/admin/v1/deliveries/replay-since', {
          clientId,
          since: new Date(Date.now() + 3_600_000).toISOString(),
        })
      ).status,
    ).toBe(400);
    expect(
      (await admin('/admin/v1/deliveries/replay-since', { clientId, since: 'yesterday' })).status,
    ).toBe(400);
    expect((await admin('/admin/v1/deliveries/replay-since', { clientId })).status).toBe(400);
  });

  it('when a replay request is not signed, names an unknown SET or has extra members, then it is refused', async () => {
    const jti = '01930000-0000-7000-8000-000000000000';
    expect((await admin('/admin/v1/deliveries/replay', { jti }, false)).status).toBe(401);
    expect((await admin('/admin/v1/deliveries/replay', { jti })).status).toBe(404);
    expect((await admin('/admin/v1/deliveries/replay', { jti, colour: 'red' })).status).toBe(400);
    expect((await admin('/admin/v1/deliveries/replay', { jti: 'nope' })).status).toBe(400);
    expect((await admin(`/admin/v1/deliveries/${jti}/history`)).status).toBe(404);
    expect((await admin('/admin/v1/deliveries/history?client_id=x&colour=red')).status).toBe(400);
  });

  it('when the TPP is revoked, then its SETs are not replayed (409)', async () => {
    const clientId = await registerClient(server);
    await subscribe(db.knex, clientId);
    const [jti] = (await publish(server, clientId)) as [string];
    await poll(clientId);
    await poll(clientId, { ack: [jti], maxEvents: 0 });
    await server.server.services.clients.revoke(clientId);
    expect((await admin('/admin/v1/deliveries/replay', { jti })).status).toBe(409);
    expect((await delivery(db.knex, jti)).state).toBe('acknowledged');
  });

  it('when pushes give up or the TPP rejects a SET, then they are dead letters that can be retried and purged, and each action is audited', async () => {
    const failing = await startReceiver(() => ({ status: 500 }));
    const rejecting = await startReceiver(() => ({
      status: 400,
      body: '{"err":"invalid_key","description":"cannot verify"}',
    }));
    try {
      const failingClient = await registerClient(server);
      await subscribe(db.knex, failingClient, { callbackUrl: failing.callbackUrl });
      const rejectingClient = await registerClient(server);
      await subscribe(db.knex, rejectingClient, { callbackUrl: rejecting.callbackUrl });
      const [failedJti] = (await publish(server, failingClient)) as [string];
      const [rejectedJti] = (await publish(server, rejectingClient)) as [string];
      await deliveryWhen(db.knex, failedJti, (d) => d.push_state === 'failed');
      await deliveryWhen(db.knex, rejectedJti, (d) => d.state === 'errored');

      const list = (await (await admin('/admin/v1/dead-letters')).json()) as {
        deadLetters: { jti: string; kind: string; lastError: string | null }[];
      };
      const mine = list.deadLetters.filter((d) => [failedJti, rejectedJti].includes(d.jti));
      expect(mine.map((d) => [d.jti, d.kind])).toEqual(
        [
          [failedJti, 'push_failed'],
          [rejectedJti, 'rejected'],
        ].sort((x, y) => x[0]!.localeCompare(y[0]!)),
      );
      expect(mine.find((d) => d.jti === failedJti)!.lastError).toMatch(/http 500/);

      // The TPP fixed its key: retry the rejected SET; it is pushed and accepted.
      rejecting.setScript(() => ({ status: 202 }));
      const retried = (await (
        await admin('/admin/v1/dead-letters/retry', { jti: rejectedJti, actor: 'bob' })
      ).json()) as { outcome: string };
      expect(retried.outcome).toBe('replayed');
      await deliveryWhen(db.knex, rejectedJti, (d) => d.state === 'acknowledged');
      expect(rejecting.forJti(rejectedJti)).toHaveLength(2);

      // The failing endpoint is gone for good: purge (CLI).
      const purged = json<{ status: string }>(
        await runCli(['dead-letters', 'purge', failedJti], { env: cli }),
      );
      expect(purged.status).toBe('purged');
      expect(await delivery(db.knex, failedJti)).toMatchObject({
        state: 'discarded',
        resolution: 'purged',
      });
      const after = (await (
        await admin(`/admin/v1/dead-letters?client_id=${failingClient}`)
      ).json()) as { deadLetters: unknown[] };
      expect(after.deadLetters).toEqual([]);
      // Not a dead letter (any more): 409; the purged SET stays out of polling.
      expect((await admin('/admin/v1/dead-letters/retry', { jti: failedJti })).status).toBe(409);
      expect((await admin('/admin/v1/dead-letters/purge', { jti: rejectedJti })).status).toBe(409);
      expect((await poll(failingClient)).sets).toEqual({});

      const audit = (await (await admin('/admin/v1/audit?limit=100')).json()) as {
        entries: { actor: string; via: string; action: string; jti: string | null }[];
      };
      const byJti = (jti: string) =>
        audit.entries.filter((e) => e.jti === jti).map((e) => [e.action, e.via, e.actor]);
      expect(byJti(rejectedJti)).toEqual([['dead_letter_retry', 'admin_api', 'bob']]);
      expect(byJti(failedJti)).toEqual([['dead_letter_purge', 'cli', expect.any(String)]]);
      expect(audit.entries.some((e) => e.action === 'replay_since')).toBe(true);
    } finally {
      await failing.close();
      await rejecting.close();
    }
  });
});
