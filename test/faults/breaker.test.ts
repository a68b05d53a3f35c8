// The push breaker with real processes (issue 11, items 1 and 4): a flaky endpoint gets its SETs
// on each SET's own back-off, an overloaded one (503 + Retry-After) is left alone that long and
// served as soon as it recovers, and a dead one costs the bank a handful of requests however many
// processes push to it, one probe at a time. Times are judged from the receiver's arrival times
// against the configured schedule (no stopwatch on the test); the schedules are shortened.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServeProcess } from '../helpers/cli.js';
import { startReceiver, type Receiver, type Script } from '../helpers/receiver.js';
import { clusterAvailable } from './cluster.js';
import { sleep, startRig, type Rig } from './harness.js';

/** The breaker as shipped (FAST turns it off for the crash and outage tests). */
const BREAKER_DEFAULTS = {
  PUSH_BREAKER_FAILURES: '5',
  PUSH_BREAKER_WINDOW_SECONDS: '60',
  PUSH_BREAKER_FAILURE_RATE: '0.8',
  PUSH_BREAKER_OPEN_SECONDS: '60',
};

describe.skipIf(!clusterAvailable)('the push breaker, with real processes', () => {
  let rig: Rig;
  const receivers: Receiver[] = [];
  beforeAll(async () => {
    rig = await startRig();
  });
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await rig?.close();
  });

  const receiver = async (script: Script) => {
    const r = await startReceiver(script);
    receivers.push(r);
    return r;
  };
  /** Arrivals relative to `t0` (ms), with status and jti, for the failure messages. */
  const timeline = (r: Receiver, t0: number) =>
    r.requests.map((q) => `${Math.round(q.at - t0)} ${q.status} ${q.jti?.slice(-6)}`).join('\n');
  /** The attempts of these SETs as the processes recorded them (time, worker, error). */
  const attempts = async (jtis: string[]) =>
    (
      await rig
        .knex('push_attempts')
        .whereIn('jti', jtis)
        .orderBy('attempted_at')
        .select('jti', 'attempted_at', 'worker', 'error')
    )
      .map(
        (a: { jti: string; attempted_at: Date; worker: string; error: string | null }) =>
          `${a.attempted_at.toISOString()} ${a.worker} ${a.jti.slice(-6)} ${a.error}`,
      )
      .join('\n');
  /** Resolves (performance.now()) once the client's breaker is open. */
  const opened = async (clientId: string) => {
    const deadline = Date.now() + 30_000;
    while (!(await breakerRow(clientId))?.open_until) {
      if (Date.now() > deadline) throw new Error('the breaker never opened');
      await sleep(50);
    }
    return performance.now();
  };
  const breakerRow = (clientId: string) =>
    rig.knex('push_breakers').where({ client_id: clientId }).first() as Promise<
      Record<string, unknown> | undefined
    >;
  /** Each test stops its processes: they would push the next test's SETs with its settings. */
  const stop = async (...procs: ServeProcess[]) => {
    for (const p of procs) p.child.kill('SIGTERM');
    const exits = await Promise.all(procs.map((p) => p.exited));
    expect(exits.map((e) => e.code)).toEqual(procs.map(() => 0));
  };

  it('when an endpoint answers 500 twice per SET and then 202, then all 20 SETs arrive within 3x the sum of their back-off delays and the breaker never opens', async () => {
    const BASE_MS = 1_000; // the default PUSH_RETRY_BASE_MS
    const flaky = await receiver(({ nth }) => ({ status: nth <= 2 ? 500 : 202 }));
    const tpp = await rig.tpp({ callbackUrl: flaky.callbackUrl });
    const serve = await rig.serve({
      ...BREAKER_DEFAULTS,
      PUSH_RETRY_BASE_MS: String(BASE_MS),
      PUSH_MAX_ATTEMPTS: '10',
    });
    const jtis = await rig.publish(tpp.clientId, 20);
    await flaky.waitFor((r) => jtis.every((j) => r.accepted.has(j)), 60_000, 'all 20 SETs');

    for (const jti of jtis) expect(flaky.forJti(jti).map((r) => r.status)).toEqual([500, 500, 202]);
    // The schedule: after the n-th failed attempt a SET waits at most BASE·2^(n-1), so BASE
    // before its second attempt and 2·BASE before its third.
    const sumOfDelays = BASE_MS + 2 * BASE_MS;
    const first = Math.min(...flaky.requests.map((r) => r.at));
    const last = Math.max(...flaky.requests.map((r) => r.at));
    expect(last - first).toBeLessThan(3 * sumOfDelays);
    const row = await breakerRow(tpp.clientId);
    expect(row?.trips ?? 0).toBe(0);
    expect(row?.open_until ?? null).toBeNull();
    await stop(serve);
  });

  it('when an endpoint answers 503 with Retry-After: 2 for a while, then it is left alone that long each time and gets every SET soon after it recovers', async () => {
    const RETRY_AFTER_S = 2;
    const OVERLOAD_MS = 6_000;
    let overloaded = true;
    const busy = await receiver(() =>
      overloaded
        ? { status: 503, headers: { 'retry-after': String(RETRY_AFTER_S) } }
        : { status: 202 },
    );
    const tpp = await rig.tpp({ callbackUrl: busy.callbackUrl });
    const serve = await rig.serve({
      ...BREAKER_DEFAULTS,
      PUSH_PER_ORIGIN_CONCURRENCY: '4',
      PUSH_MAX_ATTEMPTS: '100',
    });
    const jtis = await rig.publish(tpp.clientId, 10);
    const openedAt = await opened(tpp.clientId);
    await sleep(OVERLOAD_MS);
    overloaded = false;
    const recovered = performance.now();
    await busy.waitFor((r) => jtis.every((j) => r.accepted.has(j)), 30_000, 'every SET');

    // While overloaded: once the first 503 is recorded the breaker is open for exactly
    // Retry-After at a time, and lets one probe through each time (the first requests, sent
    // before any answer was recorded, end within half a second).
    const probes = busy.requests.filter((r) => r.at > openedAt + 500 && r.at < recovered);
    const slots = Math.ceil((recovered - openedAt) / (RETRY_AFTER_S * 1_000));
    expect(probes.length, timeline(busy, openedAt)).toBeLessThanOrEqual(slots);
    // After it: the next probe comes within Retry-After, its 202 closes the breaker and wakes
    // the worker, and every SET (each due within Retry-After of its last 503) goes at once.
    // 1.5 s on top for the round trips of a loaded machine.
    const lastAccepted = Math.max(
      ...busy.requests.filter((r) => r.status === 202).map((r) => r.at),
    );
    expect(lastAccepted - recovered, timeline(busy, recovered)).toBeLessThan(
      RETRY_AFTER_S * 1_000 + 1_500,
    );
    expect(await breakerRow(tpp.clientId)).toMatchObject({ open_until: null, trips: 0 });
    await stop(serve);
  });

  it('when two replicas and a worker push to a dead endpoint, then they share one breaker: one probe at a time, a handful of requests, and another TPP is not held up', async () => {
    // Scaled down: the cool-down starts at 1 s and grows to at most 4 s (60 s in production).
    const env = {
      ...BREAKER_DEFAULTS,
      PUSH_RETRY_BASE_MS: '1000',
      PUSH_BREAKER_OPEN_SECONDS: '4',
      PUSH_PER_ORIGIN_CONCURRENCY: '2',
      PUSH_MAX_ATTEMPTS: '1000',
    };
    const REPLY_MS = 300; // each request is in flight this long: overlapping probes would show
    let dead = true;
    const down = await receiver(() =>
      dead ? { status: 503, delayMs: REPLY_MS } : { status: 202 },
    );
    const healthy = await receiver(() => ({ status: 202 }));
    const deadTpp = await rig.tpp({ callbackUrl: down.callbackUrl });
    const okTpp = await rig.tpp({ callbackUrl: healthy.callbackUrl });
    const procs = [await rig.serve(env), await rig.serve(env), await rig.worker(env)];

    const deadJtis = await rig.publish(deadTpp.clientId, 30);
    const openedAt = await opened(deadTpp.clientId);
    const okJtis = await rig.publish(okTpp.clientId, 30);
    await healthy.waitFor((r) => okJtis.every((j) => r.accepted.has(j)), 15_000, 'the other TPP');
    const WATCH_MS = 12_000;
    await sleep(WATCH_MS - (performance.now() - openedAt));
    const why = `${timeline(down, openedAt)}\n${await attempts(deadJtis)}`;

    // Requests claimed before it opened have arrived within the first second (the cool-down
    // starts at 1 s): 2 in flight per process, for a few rounds until 5 failures in a row are
    // recorded (about 15). What comes after is probes, never two at once.
    const probes = down.requests.filter((r) => r.at > openedAt + 1_000);
    for (let i = 1; i < probes.length; i++) {
      expect(probes[i]!.at - probes[i - 1]!.at, `two probes at once\n${why}`).toBeGreaterThan(
        REPLY_MS,
      );
    }
    // Cool-downs 1, 2, 4, 4 s (each after a 0.3 s answer): 3 or 4 probes in 12 s; three
    // breakers of their own would make three times as many. Without a breaker the 30 SETs
    // would each be tried about 5 times in 12 s on their own back-off: 150 requests.
    expect(probes.length, why).toBeGreaterThanOrEqual(2);
    expect(probes.length, why).toBeLessThanOrEqual(5);
    expect(down.requests.length - probes.length, why).toBeLessThanOrEqual(20);

    // Back up: the next probe's 202 closes the breaker for all three; nothing was lost.
    dead = false;
    await down.waitFor((r) => deadJtis.every((j) => r.accepted.has(j)), 30_000, 'the backlog');
    expect(await breakerRow(deadTpp.clientId)).toMatchObject({ open_until: null, trips: 0 });
    await stop(...procs);
  });
});
