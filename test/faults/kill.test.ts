// kill -9 of `ob-events serve` in the middle of pushing and in the middle of polling, then a
// restart: nothing is lost, nothing comes back after a confirmed ack, and a push is repeated
// after its 202 only when that 202 was in flight at the crash.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { clusterAvailable } from './cluster.js';
import {
  deliveryStates,
  PollingTpp,
  resentAfter202,
  sleep,
  startRig,
  type Rig,
} from './harness.js';

const REPLY_DELAY_MS = 150;

describe.skipIf(!clusterAvailable)('kill -9 of serve', () => {
  let rig: Rig;
  const receivers: Receiver[] = [];
  beforeAll(async () => {
    rig = await startRig();
  });
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await rig?.close();
  });

  it('when serve is killed mid push and started again, then every SET is delivered and only those in flight at the crash are sent again after a 202', async () => {
    const receiver = await startReceiver(() => ({ status: 202, delayMs: REPLY_DELAY_MS }));
    receivers.push(receiver);
    const tpp = await rig.tpp({ callbackUrl: receiver.callbackUrl });
    let serve = await rig.serve({ PUSH_PER_ORIGIN_CONCURRENCY: '4' });
    const jtis = await rig.publish(tpp.clientId, 200);
    await receiver.waitFor((r) => r.accepted.size >= 40, 30_000, '40 SETs accepted');
    const killedAt = performance.now();
    serve.child.kill('SIGKILL');
    await serve.exited;

    serve = await rig.serve({ PUSH_PER_ORIGIN_CONCURRENCY: '4' });
    await receiver.waitFor((r) => jtis.every((j) => r.accepted.has(j)), 60_000, 'every SET');
    await sleep(1_000); // outcomes are written just after the answers
    const states = await deliveryStates(rig.knex, jtis);
    const lost = jtis.filter((j) => !receiver.accepted.has(j));
    // In flight at the crash: a 202 answered in the 2 s before the kill (its outcome may not be
    // written yet) or after it (the requests the dead process had sent, answered to nobody).
    const resent = resentAfter202(receiver, REPLY_DELAY_MS, [[killedAt - 2_000, killedAt + 2_000]]);
    expect(lost).toEqual([]);
    expect(resent).toEqual([]);
    expect([...states.values()].every((s) => s === 'acknowledged')).toBe(true);
    serve.child.kill('SIGTERM');
    await serve.exited;
  });

  it('when serve is killed mid poll and started again, then every SET is received and none comes back after its confirmed ack', async () => {
    const tpp = await rig.tpp();
    let serve = await rig.serve({ PUSH_CONCURRENCY: '0' });
    const poller = new PollingTpp(tpp, [`https://127.0.0.1:${serve.apiPort}`]);
    const jtis = await rig.publish(tpp.clientId, 300);

    // Polls in flight when the process dies: several at once, some mid-response.
    const pollers = Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 5; i++) await poller.pollOnce();
    });
    await sleep(150);
    serve.child.kill('SIGKILL');
    await Promise.all(pollers);
    await serve.exited;

    serve = await rig.serve({ PUSH_CONCURRENCY: '0' });
    poller.urls = [`https://127.0.0.1:${serve.apiPort}`];
    await poller.drain(jtis, 60_000);
    const lost = jtis.filter((j) => !poller.received.has(j));
    expect(lost).toEqual([]);
    expect(poller.returnedAfterAck).toEqual([]);
    expect(poller.statuses.unexpected5xx, poller.statuses.toString()).toBe(0);
    serve.child.kill('SIGTERM');
    await serve.exited;
  });
});
