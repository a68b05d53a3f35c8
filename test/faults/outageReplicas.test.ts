// Issue 11, item 3, with two replicas: the database stopped for longer than a push lease (and
// than PUSH_WORKER_TIMEOUT_SECONDS) while two `serve` processes share a push backlog. A SET the
// TPP accepted with 202 before the outage is pushed again by neither replica after it, no SET is
// lost, and both recover without a restart. (outage.test.ts holds the one-replica case.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { clusterAvailable } from './cluster.js';
import { resentAfter202, sleep, startRig, type Rig } from './harness.js';

const REPLY_DELAY_MS = 150;
const PUSH_LEASE_MS = 7_000; // as in outage.test.ts: 2 × PUSH_TIMEOUT_MS (1 s) + 5 s
// Longer than the lease and than PUSH_WORKER_TIMEOUT_SECONDS (3 s in the harness's FAST
// settings): every lease held at the stop has run out by the clocks when the database returns.
const OUTAGE_MS = PUSH_LEASE_MS + 3_000;

describe.skipIf(!clusterAvailable)('the database stopped mid push under two replicas', () => {
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

  it('when it stops mid push under two replicas, then no SET answered 202 before the outage is pushed again, and every SET arrives', async () => {
    const pushed = await rig.tpp({ callbackUrl: receiver.callbackUrl });
    const a = await rig.serve({ PUSH_PER_ORIGIN_CONCURRENCY: '2' });
    const b = await rig.serve({ PUSH_PER_ORIGIN_CONCURRENCY: '2' });
    const jtis = await rig.publish(pushed.clientId, 300);
    await receiver.waitFor((r) => r.accepted.size >= 30, 30_000, '30 SETs accepted');

    rig.cluster.stop();
    await sleep(OUTAGE_MS);
    rig.cluster.start();

    await receiver.waitFor((r) => jtis.every((j) => r.accepted.has(j)), 90_000, 'every SET');
    expect(jtis.filter((j) => !receiver.accepted.has(j))).toEqual([]);
    expect(resentAfter202(receiver, REPLY_DELAY_MS)).toEqual([]);
    expect(a.child.exitCode).toBeNull();
    expect(b.child.exitCode).toBeNull();
  });
});
