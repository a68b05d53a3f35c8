// Aggregated polling (POST /open-banking/v3.1/events, RFC 8936) end to end over mTLS.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseEventInput } from '../src/domain/eventInput.js';
import { createTestDatabase, describePostgres, type TestDatabase } from './helpers/db.js';
import { eventFor, subscribe } from './helpers/fixtures.js';
import { call } from './helpers/http.js';
import { expectObieShape } from './helpers/obieSchema.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

interface PollAnswer {
  sets: Record<string, string>;
  moreAvailable: boolean;
}

async function publishFor(server: TestServer, clientId: string, n: number): Promise<string[]> {
  const inputs = Array.from({ length: n }, () => {
    const r = parseEventInput(eventFor(clientId));
    if (!r.ok) throw new Error('bad fixture');
    return r.event;
  });
  const outcomes = await server.server.services.publisher.publish(inputs);
  return outcomes.map((o) => {
    if (o.status !== 'created') throw new Error(`not created: ${JSON.stringify(o)}`);
    return o.jti;
  });
}

function poller(server: TestServer, tpp: TestTpp) {
  let token: string | undefined;
  return async (body: unknown, raw?: { contentType?: string; text?: string }) => {
    token ??= await tpp.accessToken();
    const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/events`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': raw?.contentType ?? 'application/json',
      },
      body: raw?.text ?? JSON.stringify(body),
    });
    return res;
  };
}

async function pollOk(poll: ReturnType<typeof poller>, body: unknown): Promise<PollAnswer> {
  const res = await poll(body);
  expect(res.status, res.text).toBe(200);
  const answer = res.json<PollAnswer>();
  expectObieShape('OBEventPollingResponse1', answer);
  return answer;
}

describe('aggregated polling', () => {
  let db: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: {
        POLL_LEASE_SECONDS: '1',
        POLL_MAX_EVENTS: '5',
        POLL_DEFAULT_MAX_EVENTS: '3',
        LONG_POLL_SECONDS: '1',
        LONG_POLL_MAX_PER_CLIENT: '2',
      },
    });
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  async function newTpp() {
    const tpp = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId);
    return { tpp, poll: poller(server, tpp) };
  }

  it('when a TPP polls with nothing pending and returnImmediately, then sets is {} and moreAvailable false', async () => {
    const { poll } = await newTpp();
    expect(await pollOk(poll, { returnImmediately: true })).toEqual({
      sets: {},
      moreAvailable: false,
    });
  });

  it('when a TPP polls (poll-only), then it gets its SETs in creation order with the stored bytes', async () => {
    const { tpp, poll } = await newTpp();
    const jtis = await publishFor(server, tpp.clientId, 2);
    const answer = await pollOk(poll, { returnImmediately: true });
    expect(Object.keys(answer.sets)).toEqual(jtis);
    for (const jti of jtis) {
      const stored = await db.knex('events').where({ jti }).first('set_jws');
      expect(answer.sets[jti]).toBe(stored.set_jws);
    }
    expect(answer.moreAvailable).toBe(false);
  });

  it('when maxEvents is absent, then the default applies; above the cap, the cap applies with moreAvailable', async () => {
    const { tpp, poll } = await newTpp();
    await publishFor(server, tpp.clientId, 8);
    const first = await pollOk(poll, { returnImmediately: true });
    expect(Object.keys(first.sets)).toHaveLength(3);
    expect(first.moreAvailable).toBe(true);
    const capped = await pollOk(poll, {
      returnImmediately: true,
      maxEvents: 100,
      ack: Object.keys(first.sets),
    });
    expect(Object.keys(capped.sets)).toHaveLength(5);
    expect(capped.moreAvailable).toBe(false);
  });

  it('when a TPP acknowledges only (maxEvents 0), then the acks apply, no SETs come back, and moreAvailable tells what waits', async () => {
    const { tpp, poll } = await newTpp();
    const jtis = await publishFor(server, tpp.clientId, 2);
    const answer = await pollOk(poll, { maxEvents: 0, ack: [jtis[0]], returnImmediately: false });
    expect(answer).toEqual({ sets: {}, moreAvailable: true });
    const state = await db.knex('event_deliveries').where({ jti: jtis[0] }).first();
    expect(state).toMatchObject({ state: 'acknowledged', resolution: 'ack' });
    const rest = await pollOk(poll, { maxEvents: 0, ack: [jtis[1]] });
    expect(rest).toEqual({ sets: {}, moreAvailable: false });
  });

  it('when a TPP polls with acks, then an acknowledged SET is never returned by that call or later ones', async () => {
    const { tpp, poll } = await newTpp();
    const jtis = await publishFor(server, tpp.clientId, 3);
    const first = await pollOk(poll, { returnImmediately: true, maxEvents: 1 });
    expect(Object.keys(first.sets)).toEqual([jtis[0]]);
    // Ack the first and one not yet returned: the latter must not come back in this call.
    const second = await pollOk(poll, {
      returnImmediately: true,
      maxEvents: 10,
      ack: [jtis[0], jtis[1]],
    });
    expect(Object.keys(second.sets)).toEqual([jtis[2]]);
    await new Promise((r) => setTimeout(r, 1_100)); // leases end
    const third = await pollOk(poll, { returnImmediately: true, maxEvents: 10 });
    expect(Object.keys(third.sets)).toEqual([jtis[2]]);
  });

  it('when a TPP sends ack and setErrs, then the errors are recorded and resolved and never delivered again', async () => {
    const { tpp, poll } = await newTpp();
    const jtis = await publishFor(server, tpp.clientId, 3);
    const answer = await pollOk(poll, {
      returnImmediately: true,
      ack: [jtis[0]],
      setErrs: { [jtis[1]!]: { err: 'jwtIss', description: 'Issuer not recognised' } },
    });
    expect(Object.keys(answer.sets)).toEqual([jtis[2]]);
    const errored = await db.knex('event_deliveries').where({ jti: jtis[1] }).first();
    expect(errored).toMatchObject({
      state: 'errored',
      resolution: 'set_err',
      err: 'jwtIss',
      err_description: 'Issuer not recognised',
    });
    await new Promise((r) => setTimeout(r, 1_100));
    const later = await pollOk(poll, { returnImmediately: true });
    expect(Object.keys(later.sets)).toEqual([jtis[2]]);
  });

  it('when a returned SET is not acknowledged, then it comes back after the lease, byte for byte', async () => {
    const { tpp, poll } = await newTpp();
    const [jti] = await publishFor(server, tpp.clientId, 1);
    const first = await pollOk(poll, { returnImmediately: true });
    const during = await pollOk(poll, { returnImmediately: true });
    expect(during.sets).toEqual({}); // leased
    await new Promise((r) => setTimeout(r, 1_100));
    const again = await pollOk(poll, { returnImmediately: true });
    expect(again.sets[jti!]).toBe(first.sets[jti!]);
    const row = await db.knex('event_deliveries').where({ jti }).first();
    expect(row.poll_count).toBe(2);
  });

  it('when acks are repeated or name unknown or foreign jtis, then nothing changes and the call succeeds', async () => {
    const a = await newTpp();
    const b = await newTpp();
    const [ja] = await publishFor(server, a.tpp.clientId, 1);
    const [jb] = await publishFor(server, b.tpp.clientId, 1);
    await pollOk(a.poll, { maxEvents: 0, ack: [ja] });
    await pollOk(a.poll, { maxEvents: 0, ack: [ja, ja] });
    const foreign = await pollOk(a.poll, {
      maxEvents: 0,
      ack: [jb, 'not-a-uuid', '0190b1a4-0000-7000-8000-00000000dead'],
      setErrs: { [jb!]: { err: 'x', description: 'y' } },
    });
    expect(foreign.moreAvailable).toBe(false);
    expect(await db.knex('event_deliveries').where({ jti: jb }).first()).toMatchObject({
      state: 'pending',
    });
    expect(await db.knex('event_deliveries').where({ jti: ja }).first()).toMatchObject({
      state: 'acknowledged',
    });
  });

  it('when two clients have SETs, then each sees only its own', async () => {
    const a = await newTpp();
    const b = await newTpp();
    const ja = await publishFor(server, a.tpp.clientId, 2);
    const jb = await publishFor(server, b.tpp.clientId, 2);
    expect(Object.keys((await pollOk(a.poll, { returnImmediately: true })).sets)).toEqual(ja);
    expect(Object.keys((await pollOk(b.poll, { returnImmediately: true })).sets)).toEqual(jb);
  });

  it('when nothing arrives during a long poll, then it answers empty after LONG_POLL_SECONDS', async () => {
    const { poll } = await newTpp();
    const started = Date.now();
    expect(await pollOk(poll, {})).toEqual({ sets: {}, moreAvailable: false });
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(3_000);
  });

  it('when a SET is published during a long poll, then the poll answers with it at once', async () => {
    const { tpp, poll } = await newTpp();
    const started = Date.now();
    const waiting = pollOk(poll, { returnImmediately: false });
    await new Promise((r) => setTimeout(r, 200));
    const [jti] = await publishFor(server, tpp.clientId, 1);
    const answer = await waiting;
    expect(Object.keys(answer.sets)).toEqual([jti]);
    expect(Date.now() - started).toBeLessThan(900);
  });

  it('when a client already holds its maximum of long polls, then a further one answers at once', async () => {
    // Its own server with long polls far longer than any load could delay an answer, so "at
    // once" is judged by order (answered while the held polls still wait), not by a stopwatch.
    const c = await startTestServer(db, {
      env: { LONG_POLL_SECONDS: '60', LONG_POLL_MAX_PER_CLIENT: '2' },
    });
    try {
      const tpp = await createTestTpp(c);
      await subscribe(db.knex, tpp.clientId);
      const poll = poller(c, tpp);
      let heldAnswered = false;
      const held = Promise.all([pollOk(poll, {}), pollOk(poll, {})]).finally(() => {
        heldAnswered = true;
      });
      await vi.waitFor(() => expect(c.server.services.longPolls.size).toBe(2), {
        timeout: 10_000,
      });
      expect(await pollOk(poll, {})).toEqual({ sets: {}, moreAvailable: false });
      expect(heldAnswered).toBe(false);
      await c.stop(); // answers the held polls
      await held;
    } finally {
      await c.stop();
    }
  });

  describe('bad requests get 400 in OBErrorResponse1 form', () => {
    const cases: [string, unknown, string][] = [
      ['maxEvents negative', { maxEvents: -1 }, 'UK.OBIE.Field.Invalid'],
      ['maxEvents not an integer', { maxEvents: 1.5 }, 'UK.OBIE.Field.Invalid'],
      ['maxEvents a string', { maxEvents: '10' }, 'UK.OBIE.Field.Invalid'],
      ['returnImmediately not a boolean', { returnImmediately: 'yes' }, 'UK.OBIE.Field.Invalid'],
      ['an unknown member', { maxEvents: 1, wait: true }, 'UK.OBIE.Field.Unexpected'],
      ['ack not an array', { ack: 'abc' }, 'UK.OBIE.Field.Invalid'],
      ['ack holding a number', { ack: [1] }, 'UK.OBIE.Field.Invalid'],
      [
        'a setErrs description over 256 characters',
        { setErrs: { a: { err: 'x', description: 'd'.repeat(257) } } },
        'UK.OBIE.Field.Invalid',
      ],
      [
        'a setErrs err over 40 characters',
        { setErrs: { a: { err: 'e'.repeat(41), description: 'd' } } },
        'UK.OBIE.Field.Invalid',
      ],
      [
        'a setErrs entry without description',
        { setErrs: { a: { err: 'x' } } },
        'UK.OBIE.Field.Missing',
      ],
      ['a JSON array', [], 'UK.OBIE.Field.Invalid'],
    ];
    for (const [name, body, code] of cases) {
      it(`when the body has ${name}, then 400 ${code}`, async () => {
        const { poll } = await newTpp();
        const res = await poll(body);
        expect(res.status, res.text).toBe(400);
        const error = res.json<{ Errors: { ErrorCode: string }[] }>();
        expectObieShape('OBErrorResponse1', error);
        expect(error.Errors.map((e) => e.ErrorCode)).toContain(code);
      });
    }

    it('when the body is not JSON, then 400; when it is not application/json, then 415', async () => {
      const { poll } = await newTpp();
      expect((await poll(undefined, { text: '{"maxEvents": ' })).status).toBe(400);
      expect(
        (
          await poll(undefined, {
            text: 'maxEvents=1',
            contentType: 'application/x-www-form-urlencoded',
          })
        ).status,
      ).toBe(415);
    });

    it('when the body is over 64 KiB, then 413', async () => {
      const { poll } = await newTpp();
      const res = await poll({
        ack: Array.from({ length: 2_000 }, () => '0190b1a4-0000-7000-8000-000000000001'),
      });
      expect(res.status).toBe(413);
    });
  });
});

describePostgres('polling across replicas', () => {
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await startTestServer(db, { env: { LONG_POLL_SECONDS: '5', POLL_LEASE_SECONDS: '60' } });
    b = await startTestServer(db, { env: { LONG_POLL_SECONDS: '5', POLL_LEASE_SECONDS: '60' } });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await db?.drop();
  });

  it('when eight pollers of one client each ack what they get, then every SET is received exactly once in total', async () => {
    const tpp = await createTestTpp(a);
    await subscribe(db.knex, tpp.clientId);
    const published = await publishFor(a, tpp.clientId, 400);
    const seen: string[] = [];
    const workers = Array.from({ length: 8 }, async (_, i) => {
      const poll = poller(i % 2 === 0 ? a : b, tpp);
      let ack: string[] = [];
      for (;;) {
        const answer = await pollOk(poll, { returnImmediately: true, maxEvents: 10, ack });
        ack = Object.keys(answer.sets);
        seen.push(...ack);
        if (ack.length === 0) return;
      }
    });
    await Promise.all(workers);
    expect(seen.length).toBe(published.length);
    expect(new Set(seen)).toEqual(new Set(published));
    const pending = await db
      .knex('event_deliveries')
      .where({ client_id: tpp.clientId, state: 'pending' })
      .count<{ count: number }[]>('* as count');
    expect(Number(pending[0]!.count)).toBe(0);
  });

  it('when a SET is published on another replica, then a long poll waiting on this one wakes', async () => {
    const tpp = await createTestTpp(a);
    await subscribe(db.knex, tpp.clientId);
    const poll = poller(a, tpp);
    const started = Date.now();
    const waiting = pollOk(poll, {});
    await new Promise((r) => setTimeout(r, 300));
    const [jti] = await publishFor(b, tpp.clientId, 1);
    const answer = await waiting;
    expect(Object.keys(answer.sets)).toEqual([jti]);
    // Woken, not timed out: well before the 5 s LONG_POLL_SECONDS of these servers (a loaded
    // machine adds seconds, never five).
    expect(Date.now() - started).toBeLessThan(4_500);
  });

  it('when the LISTEN connection is killed mid-wait, then it reconnects and wake-ups still arrive', async () => {
    const tpp = await createTestTpp(a);
    await subscribe(db.knex, tpp.clientId);
    const poll = poller(a, tpp);
    const waiting = pollOk(poll, {});
    await new Promise((r) => setTimeout(r, 300));
    const killed = await db.knex.raw<{ rows: unknown[] }>(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'ob-events-listener'`,
    );
    expect(killed.rows.length).toBeGreaterThanOrEqual(1);
    // The waiting poll re-checks after the reconnection (nothing yet: it keeps waiting or ends empty).
    await waiting;
    await new Promise((r) => setTimeout(r, 500));
    const second = pollOk(poll, {});
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    const [jti] = await publishFor(b, tpp.clientId, 1);
    const answer = await second;
    expect(Object.keys(answer.sets)).toEqual([jti]);
    // Woken, not timed out: before the 5 s LONG_POLL_SECONDS ran out.
    expect(Date.now() - started).toBeLessThan(4_500);
  });

  it('when the server shuts down, then waiting long polls are answered at once', async () => {
    const c = await startTestServer(db, { env: { LONG_POLL_SECONDS: '30' } });
    const tpp = await createTestTpp(c);
    await subscribe(db.knex, tpp.clientId);
    const poll = poller(c, tpp);
    const waiting = pollOk(poll, {});
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await c.stop();
    expect(await waiting).toEqual({ sets: {}, moreAvailable: false });
    // Answered by the shutdown, not by its 30 s LONG_POLL_SECONDS.
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
