// The fault suite's moving parts: real `ob-events serve` / `worker` processes on the suite's own
// Postgres cluster, a TPP that polls and acknowledges while counting what it sees, and the
// counts every fault test asserts on: SETs lost, SETs returned after their ack was confirmed,
// pushes repeated after a 202, and 5xx answers other than 503.
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Knex } from 'knex';
import { loadConfig, type Config } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { parseEventInput } from '../../src/domain/eventInput.js';
import { signAdminRequest } from '../../src/http/admin/hmacAuth.js';
import { silentLogger } from '../../src/logger.js';
import { buildServices, type Services } from '../../src/main.js';
import {
  CLI,
  cliEnv,
  requireBuild,
  spawnServe,
  waitForLog,
  type ListeningServe,
  type ServeProcess,
} from '../helpers/cli.js';
import type { TestDatabase } from '../helpers/db.js';
import { eventFor, subscribe } from '../helpers/fixtures.js';
import { call } from '../helpers/http.js';
import { pushEnv } from '../helpers/push.js';
import type { Receiver } from '../helpers/receiver.js';
import type { TestServer } from '../helpers/server.js';
import { createTestTpp, type TestTpp } from '../helpers/tpp.js';
import { createDatabase, startCluster, type Cluster } from './cluster.js';

export const ADMIN_SECRET = 'fault-suite-admin-secret-0123';

/** Short leases and schedules, so that a fault longer than a lease takes seconds. */
export const FAST = {
  POLL_LEASE_SECONDS: '2',
  LONG_POLL_SECONDS: '2',
  PUSH_TIMEOUT_MS: '1000', // push lease: 2 × 1 s + 5 s = 7 s
  PUSH_RETRY_BASE_MS: '100',
  PUSH_MAX_ATTEMPTS: '1000',
  // Effectively off: the endpoints of the crash, outage and replica tests always answer 202,
  // so the only failures are time-outs of a loaded machine; an open breaker would just hold
  // their SETs back and blur what they measure (loss, re-sends). breaker.test.ts sets its own.
  PUSH_BREAKER_FAILURES: '1000',
  PUSH_BREAKER_OPEN_SECONDS: '1',
  // A crashed worker's SETs are taken over 3 s after its last heartbeat (every 0.5 s) instead
  // of 30: crash recovery in seconds. 3 rather than the minimum 1 so that a process the loaded
  // machine stalls for a second is not taken for dead (that would be a re-send after a 202).
  PUSH_WORKER_TIMEOUT_SECONDS: '3',
  SHUTDOWN_TIMEOUT_MS: '2000',
  ADMIN_API_SECRET: ADMIN_SECRET,
  LOG_LEVEL: 'info',
  LOG_FORMAT: 'json',
};

export interface Rig {
  cluster: Cluster;
  url: string;
  /** Direct access for set-up and for the final counts. */
  knex: Knex;
  services: Services;
  config: Config;
  env(extra?: Record<string, string>): Record<string, string>;
  serve(extra?: Record<string, string>): Promise<ListeningServe>;
  worker(extra?: Record<string, string>): Promise<ServeProcess>;
  /** A TPP registered on the database, with a subscription (push when `callbackUrl`). */
  tpp(opts?: { callbackUrl?: string }): Promise<TestTpp>;
  /** Publishes n events for the client in-process (straight to the database). */
  publish(clientId: string, n: number): Promise<string[]>;
  /** Stops every process, the database connections and the cluster. */
  close(): Promise<void>;
}

export async function startRig(): Promise<Rig> {
  requireBuild();
  const cluster = await startCluster();
  const url = await createDatabase(cluster, `ob_faults_${randomBytes(4).toString('hex')}`);
  const env = (extra: Record<string, string> = {}) =>
    cliEnv({ env: { DATABASE_URL: url } } as unknown as TestDatabase, {
      ...pushEnv(),
      ...FAST,
      ...extra,
    });
  const config = loadConfig(env());
  const children: ChildProcess[] = [];

  // The first serve migrates; the in-process services come after it.
  const first = await spawnServe(env());
  first.child.kill('SIGTERM');
  await first.exited;
  const db: Database = await openDatabase(config.database, silentLogger(), 'ob-faults');
  const services = buildServices(config, db, silentLogger());
  await services.keys.ensureActiveKey();

  const rig: Rig = {
    cluster,
    url,
    knex: db.knex,
    services,
    config,
    env,
    serve: async (extra) => {
      const s = await spawnServe(env(extra));
      children.push(s.child);
      return s;
    },
    worker: async (extra) => {
      const child = spawn(process.execPath, [CLI, 'worker'], {
        env: env({ ADMIN_PORT: '0', ...extra }),
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err = (err + c).slice(-200_000)));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
        child.once('exit', (code, signal) => r({ code, signal })),
      );
      const proc: ServeProcess = { child, stderr: () => err, exited };
      await waitForLog(proc, '"ob-events worker running"', 30_000);
      return proc;
    },
    tpp: async (opts = {}) => {
      const fake = {
        url: 'https://127.0.0.1:1',
        config,
        server: { services },
      } as unknown as TestServer;
      const tpp = await createTestTpp(fake);
      await subscribe(db.knex, tpp.clientId, { callbackUrl: opts.callbackUrl ?? null });
      return tpp;
    },
    publish: async (clientId, n) => {
      const inputs = Array.from({ length: n }, () => {
        const r = parseEventInput(eventFor(clientId));
        if (!r.ok) throw new Error('bad fixture');
        return r.event;
      });
      const outcomes = await services.publisher.publish(inputs);
      return outcomes.map((o) => {
        if (o.status !== 'created') throw new Error(`not created: ${JSON.stringify(o)}`);
        return o.jti;
      });
    },
    close: async () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await services.signer.close().catch(() => {});
      await db.close().catch(() => {});
      cluster.destroy();
    },
  };
  return rig;
}

/** Answers and failures seen by a client, for "503, never 500". */
export class Statuses {
  readonly counts = new Map<string, number>();
  add(status: number | string): void {
    const k = String(status);
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }
  /** 5xx answers other than 503. */
  get unexpected5xx(): number {
    let n = 0;
    for (const [k, v] of this.counts) if (/^5\d\d$/.test(k) && k !== '503') n += v;
    return n;
  }
  get(status: number): number {
    return this.counts.get(String(status)) ?? 0;
  }
  toString(): string {
    return JSON.stringify(Object.fromEntries(this.counts));
  }
}

/**
 * A TPP polling one or more replicas (round robin), acknowledging what it got in its next poll.
 * An ack counts as confirmed once the poll carrying it was answered 200; a SET returned after
 * its ack was confirmed is a violation.
 */
export class PollingTpp {
  readonly received = new Map<string, number>();
  readonly confirmed = new Set<string>();
  readonly returnedAfterAck: string[] = [];
  readonly statuses = new Statuses();
  private toAck: string[] = [];
  private token: string | undefined;
  private next = 0;

  constructor(
    readonly tpp: TestTpp,
    public urls: string[],
  ) {}

  async pollOnce(opts: { returnImmediately?: boolean } = {}): Promise<number> {
    const base = this.urls[this.next++ % this.urls.length]!;
    try {
      this.token ??= await this.tokenFrom(base);
      const acks = this.toAck;
      const res = await call(this.tpp.agent, `${base}/open-banking/v3.1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          maxEvents: 20,
          returnImmediately: opts.returnImmediately ?? true,
          ...(acks.length > 0 ? { ack: acks } : {}),
        }),
      });
      this.statuses.add(res.status);
      if (res.status === 401) this.token = undefined;
      if (res.status !== 200) return 0;
      for (const jti of acks) this.confirmed.add(jti);
      const sets = Object.keys(res.json<{ sets: Record<string, string> }>().sets);
      for (const jti of sets) {
        if (this.confirmed.has(jti)) this.returnedAfterAck.push(jti);
        this.received.set(jti, (this.received.get(jti) ?? 0) + 1);
      }
      this.toAck = sets;
      return sets.length;
    } catch {
      this.statuses.add('connection-error');
      return 0;
    }
  }

  private async tokenFrom(base: string): Promise<string> {
    const res = await requestToken(this.tpp, base);
    this.statuses.add(res.status);
    if (res.status !== 200) throw new Error(`token: ${res.status}`);
    return res.json<{ access_token: string }>().access_token;
  }

  /** Polls until every jti was received and acknowledged (confirmed), or the time is up. */
  async drain(jtis: string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (jtis.every((j) => this.confirmed.has(j))) return;
      const n = await this.pollOnce();
      if (n === 0 && !jtis.every((j) => this.received.has(j))) await sleep(200);
    }
  }
}

/** POST /token with a fresh client assertion at the API listener `base`. */
export async function requestToken(tpp: TestTpp, base: string) {
  const { signClientAssertion, JWT_BEARER, postToken } = await import('../helpers/tpp.js');
  const fake = { url: base, config: { http: { publicUrl: FAKE_PUBLIC_URL } } };
  return postToken(fake as unknown as TestServer, tpp.agent, {
    grant_type: 'client_credentials',
    client_assertion_type: JWT_BEARER,
    client_assertion: await signClientAssertion(tpp, fake as unknown as TestServer),
  });
}

/** An access token from the API listener `base` (throws unless 200). */
export async function accessToken(tpp: TestTpp, base: string): Promise<string> {
  const res = await requestToken(tpp, base);
  if (res.status !== 200) throw new Error(`token: ${res.status} ${res.text}`);
  return res.json<{ access_token: string }>().access_token;
}

/** PUBLIC_URL of every process of the suite (from the test environment). */
export const FAKE_PUBLIC_URL = 'https://ob-events.test';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Pushes of a SET that arrived after a 202 for it had been answered. `allowedWindows` are
 * [from, to] ranges of performance.now() (a crash and the moments before it: a 202 answered then
 * may not have been recorded yet); a 202 answered inside one is "in flight at the crash".
 */
export function resentAfter202(
  receiver: Receiver,
  replyDelayMs: number,
  allowedWindows: [number, number][] = [],
): { jti: string; acceptedAt: number; resentAt: number }[] {
  const out: { jti: string; acceptedAt: number; resentAt: number }[] = [];
  const byJti = new Map<string, typeof receiver.requests>();
  for (const r of receiver.requests) {
    if (!r.jti) continue;
    byJti.set(r.jti, [...(byJti.get(r.jti) ?? []), r]);
  }
  for (const [jti, reqs] of byJti) {
    const first202 = reqs.find((r) => r.status === 202);
    if (!first202) continue;
    const acceptedAt = first202.at + replyDelayMs;
    const again = reqs.find((r) => r.at > acceptedAt);
    if (!again) continue;
    if (allowedWindows.some(([from, to]) => acceptedAt >= from && acceptedAt <= to)) continue;
    out.push({ jti, acceptedAt, resentAt: again.at });
  }
  return out;
}

/** Hits every kind of endpoint of a serve process until stopped; records the statuses. */
export function probeEndpoints(
  serve: { apiPort: number; adminPort: number },
  tpp: TestTpp,
  token: string,
): { statuses: Statuses; stop(): Promise<void> } {
  const statuses = new Statuses();
  let running = true;
  const api = `https://127.0.0.1:${serve.apiPort}`;
  const admin = `http://127.0.0.1:${serve.adminPort}`;
  const loop = (async () => {
    while (running) {
      const calls: Promise<number>[] = [
        call(tpp.agent, `${api}/open-banking/v3.1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ maxEvents: 0 }),
        }).then((r) => r.status),
        call(tpp.agent, `${api}/open-banking/v3.1/event-subscriptions`, {
          headers: { authorization: `Bearer ${token}` },
        }).then((r) => r.status),
        requestToken(tpp, api).then((r) => r.status),
        adminPublish(admin, tpp.clientId).then((r) => r.status),
      ];
      for (const s of await Promise.allSettled(calls))
        statuses.add(s.status === 'fulfilled' ? s.value : 'connection-error');
      await sleep(250);
    }
  })();
  return {
    statuses,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** POST /admin/v1/events with one event for the client; `jti` when created. */
export async function adminPublish(
  adminUrl: string,
  clientId: string,
): Promise<{ status: number; jti: string | null }> {
  const body = JSON.stringify({ events: [eventFor(clientId)] });
  const res = await fetch(`${adminUrl}/admin/v1/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-ob-events-signature': signAdminRequest({
        secret: ADMIN_SECRET,
        method: 'POST',
        path: '/admin/v1/events',
        body,
      }),
    },
    body,
  });
  const json = (await res.json().catch(() => null)) as {
    results?: { status: string; jti: string | null }[];
  } | null;
  const first = json?.results?.[0];
  return { status: res.status, jti: first?.status === 'created' ? first.jti : null };
}

/** Rows of the deliveries of these jtis by state. */
export async function deliveryStates(knex: Knex, jtis: string[]): Promise<Map<string, string>> {
  const rows = await knex('event_deliveries').whereIn('jti', jtis).select('jti', 'state');
  return new Map(rows.map((r: { jti: string; state: string }) => [r.jti, r.state]));
}
