// Two `serve` replicas and an `ob-events worker` on one database: a TPP polls both replicas in
// turn, another receives pushes; one replica is killed with SIGKILL midway and started again.
// Nothing is lost, nothing comes back after a confirmed ack, a push is repeated after its 202
// only when in flight at the crash, and no answer is a 5xx other than 503.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { clusterAvailable } from './cluster.js';
import { PollingTpp, resentAfter202, sleep, startRig, type Rig } from './harness.js';

const REPLY_DELAY_MS = 100;

describe.skipIf(!clusterAvailable)('two replicas and a worker', () => {
  let rig: Rig;
  let receiver: Receiver;
  beforeAll(async () => {
    rig = await startRig();
    receiver = await startReceiver(() => ({ status: 202, delayMs: REPLY_DELAY_MS }));
  });
  afterAll(async () => {
    await receiver?.close();
    await rig?.close();
  });

  it('when one replica is killed mid traffic and started again, then nothing is lost or returned after an ack, and no answer is a 5xx other than 503', async () => {
    const pushed = await rig.tpp({ callbackUrl: receiver.callbackUrl });
    const polled = await rig.tpp();
    // Every process pushes (and publishes from the outbox): three engines share the work.
    const a = await rig.serve({ PUSH_PER_ORIGIN_CONCURRENCY: '2' });
    let b = await rig.serve({ PUSH_PER_ORIGIN_CONCURRENCY: '2' });
    const worker = await rig.worker({ PUSH_PER_ORIGIN_CONCURRENCY: '2' });
    const url = (s: { apiPort: number }) => `https://127.0.0.1:${s.apiPort}`;
    const poller = new PollingTpp(polled, [url(a), url(b)]);

    const pushJtis = await rig.publish(pushed.clientId, 150);
    const pollJtis = await rig.publish(polled.clientId, 150);
    const polling = (async () => {
      for (let i = 0; i < 15; i++) await poller.pollOnce();
    })();
    await receiver.waitFor((r) => r.accepted.size >= 30, 30_000, '30 pushes accepted');
    const killedAt = performance.now();
    b.child.kill('SIGKILL');
    await b.exited;
    await polling;

    b = await rig.serve({ PUSH_PER_ORIGIN_CONCURRENCY: '2' });
    poller.urls = [url(a), url(b)];
    const more = await rig.publish(pushed.clientId, 30);
    await receiver.waitFor(
      (r) => [...pushJtis, ...more].every((j) => r.accepted.has(j)),
      60_000,
      'every push',
    );
    await poller.drain(pollJtis, 60_000);

    expect([...pushJtis, ...more].filter((j) => !receiver.accepted.has(j))).toEqual([]);
    expect(pollJtis.filter((j) => !poller.received.has(j))).toEqual([]);
    expect(poller.returnedAfterAck).toEqual([]);
    expect(poller.statuses.unexpected5xx, poller.statuses.toString()).toBe(0);
    expect(
      resentAfter202(receiver, REPLY_DELAY_MS, [[killedAt - 2_000, killedAt + 2_000]]),
    ).toEqual([]);

    await sleep(200);
    for (const p of [a, b, worker]) p.child.kill('SIGTERM');
    const exits = await Promise.all([a.exited, b.exited, worker.exited]);
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0]);
  });
});
