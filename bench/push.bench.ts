// Real-time push (issue 7) against `ob-events serve` (a child process) and ten TPPs: ten local
// HTTPS receivers in this process that answer 202 at once.
// - drain rate: a backlog of SETs becomes due at once (the subscriptions get their CallbackUrls
//   after publishing); deliveries per second until every SET was received (target ≥ 1,500/s);
// - publish-to-receipt latency under a steady load through the admin API: from the start of the
//   publishing request (signing and commit included) to the receiver reading the SET
//   (target p99 < 100 ms);
// - the server's RSS over that steady run: median of the first minute against the last minute
//   (target within 10 %). Five minutes; `--quick` runs 30 s and compares the first and last 10 s.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import {
  createCertificateAuthority,
  createSigningKeyPair,
  issueCertificate,
} from '../src/crypto/devPki.js';
import { parseEventInput, type EventInput } from '../src/domain/eventInput.js';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { machineCpu } from './lib/load.js';
import { percentile, type Bench, type BenchRow } from './lib/report.js';
import { startBenchServer } from './lib/server.js';

const SECRET = 'bench-admin-secret-0123456789';
const TPPS = 10;
const PATH = '/open-banking/v3.1/event-notifications';

interface Receivers {
  urls: string[];
  /** jti → performance.now() of its first receipt. */
  received: Map<string, number>;
  duplicates: number;
  requests: number;
  close(): Promise<void>;
}

async function startReceivers(n: number, cert: string, key: string): Promise<Receivers> {
  const received = new Map<string, number>();
  const state = { duplicates: 0, requests: 0 };
  const servers = await Promise.all(
    Array.from({ length: n }, async () => {
      const server = https.createServer({ cert, key }, (req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (c: string) => (body += c));
        req.on('end', () => {
          const at = performance.now();
          state.requests += 1;
          const jti = jtiOf(body);
          if (jti) {
            if (received.has(jti)) state.duplicates += 1;
            else received.set(jti, at);
          }
          res.writeHead(202).end();
        });
      });
      server.keepAliveTimeout = 120_000;
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return server;
    }),
  );
  return {
    urls: servers.map((s) => `https://localhost:${(s.address() as AddressInfo).port}${PATH}`),
    received,
    get duplicates() {
      return state.duplicates;
    },
    get requests() {
      return state.requests;
    },
    close: async () => {
      await Promise.all(
        servers.map((s) => {
          s.closeAllConnections();
          return new Promise((r) => s.close(r));
        }),
      );
    },
  };
}

function jtiOf(jws: string): string | undefined {
  const payload = jws.split('.')[1];
  if (!payload) return undefined;
  // The jti is near the start of the claims; avoid a full JSON parse per request.
  const text = Buffer.from(payload, 'base64url').toString('utf8');
  return /"jti":"([^"]+)"/.exec(text)?.[1];
}

function eventFor(clientId: string): Record<string, unknown> {
  const id = `pmt-${randomBytes(4).toString('hex')}`;
  return {
    clientId,
    type: 'UK.OBIE.Resource-Update',
    subject: {
      id,
      type: 'domestic-payment',
      links: [
        {
          version: 'v3.1',
          link: `https://bank.example/open-banking/v3.1/pisp/domestic-payments/${id}`,
        },
      ],
    },
  };
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const run: Bench = async (ctx) => {
  const backlog = ctx.quick ? 6_000 : 30_000;
  const steadySeconds = ctx.quick ? 30 : 300;
  const windowSeconds = ctx.quick ? 10 : 60;
  const steadyRate = 400; // events/s during the latency and memory run
  const batch = 10;

  // The TPPs' server certificate (localhost) from a CA the server trusts through PUSH_CA_FILE.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-push-bench-'));
  const ca = createCertificateAuthority('push bench TPP CA');
  const tls = issueCertificate(ca, {
    commonName: 'localhost',
    organization: 'push bench TPP',
    country: 'GB',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const caFile = path.join(dir, 'tpp-ca.crt');
  fs.writeFileSync(caFile, ca.certPem);
  const receivers = await startReceivers(TPPS, tls.certPem, tls.keyPem);

  const server = await startBenchServer(ctx, {
    env: {
      PUSH_CA_FILE: caFile,
      CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
      ADMIN_API_SECRET: SECRET,
    },
  });
  const agent = new Agent({ connections: 16, keepAliveTimeout: 60_000 });
  const rows: BenchRow[] = [];
  const row = (metric: string, value: number, unit: string, target?: string, note?: string) =>
    rows.push({
      bench: 'push',
      metric,
      value,
      unit,
      ...(target ? { target } : {}),
      ...(note ? { note } : {}),
    });

  try {
    const clients = Array.from({ length: TPPS }, (_, i) => `push-tpp-${i}`);
    await server.withServices(async (s) => {
      for (const clientId of clients) {
        await s.clients.register({
          clientId,
          jwks: { keys: [(await createSigningKeyPair()).publicJwk] },
        });
        await s.db
          .knex('event_subscriptions')
          .insert({ subscription_id: `es_${clientId}`, client_id: clientId, version: '3.1' });
      }
    });

    // --- drain rate -------------------------------------------------------------------------
    ctx.log(`publishing a backlog of ${backlog} SETs for ${TPPS} poll-only TPPs`);
    await server.withServices(async (s) => {
      const inputs: EventInput[] = [];
      for (let i = 0; i < backlog; i++) {
        const parsed = parseEventInput(eventFor(clients[i % TPPS]!));
        if (!parsed.ok) throw new Error('bad bench event');
        inputs.push(parsed.event);
      }
      for (let i = 0; i < inputs.length; i += 500)
        await s.publisher.publish(inputs.slice(i, i + 500));
    });
    ctx.log('giving the TPPs their CallbackUrls: the whole backlog is due for push at once');
    const cpuBefore = server.cpuMs();
    const pgBefore = server.postgresCpuMs();
    const selfBefore = process.cpuUsage();
    const machineBefore = machineCpu();
    const started = performance.now();
    await server.withServices(async (s) => {
      await s.db.knex.transaction(async (trx) => {
        for (const [i, clientId] of clients.entries()) {
          await trx('event_subscriptions')
            .where({ client_id: clientId })
            .update({ callback_url: receivers.urls[i] });
        }
        await trx.raw(
          `UPDATE event_deliveries SET push_state = 'due', push_next_at = now() WHERE state = 'pending'`,
        );
        await trx.raw(`SELECT pg_notify('ob_events_published', '')`);
      });
    });
    await waitFor(() => receivers.received.size >= backlog, 300_000, 'the backlog to arrive');
    const drainMs = performance.now() - started;
    const cpuAfter = server.cpuMs();
    const pgAfter = server.postgresCpuMs();
    const self = process.cpuUsage(selfBefore);
    const machineAfter = machineCpu();
    const machineBusy = (machineAfter.busyMs - machineBefore.busyMs) / drainMs;
    const rate = (backlog / drainMs) * 1000;
    row(
      'deliveries/s, 10 TPPs, backlog',
      rate,
      'SETs/s',
      '>= 1500',
      `${backlog} SETs in ${(drainMs / 1000).toFixed(1)} s; duplicates ${receivers.duplicates}; server CPU ${(
        (cpuAfter.mainThread -
          cpuBefore.mainThread +
          cpuAfter.otherThreads -
          cpuBefore.otherThreads) /
        drainMs
      ).toFixed(
        2,
      )} cores, Postgres ${((pgAfter - pgBefore) / drainMs).toFixed(2)} cores, receivers ${(
        (self.user + self.system) /
        1000 /
        drainMs
      ).toFixed(
        2,
      )} cores; whole machine busy ${machineBusy.toFixed(2)} of ${os.availableParallelism()} cores`,
    );

    // --- steady load: latency and memory ---------------------------------------------------
    ctx.log(`steady load: ${steadyRate} events/s through the admin API for ${steadySeconds} s`);
    const publishedAt = new Map<string, number>();
    const rss: { at: number; mb: number }[] = [];
    const steadyStart = performance.now();
    const steadyMachine = machineCpu();
    const sampler = setInterval(
      () => rss.push({ at: performance.now() - steadyStart, mb: server.rssMb() }),
      1_000,
    );
    let sent = 0;
    let errors = 0;
    const inFlight = new Set<Promise<void>>();
    const tick = 1000 / (steadyRate / batch);
    for (let i = 0; performance.now() - steadyStart < steadySeconds * 1000; i++) {
      const due = steadyStart + i * tick;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (inFlight.size > 50) {
        errors += 1; // the server is not keeping up: skip this tick rather than pile up
        continue;
      }
      const body = JSON.stringify({
        events: Array.from({ length: batch }, (_, j) => eventFor(clients[(sent + j) % TPPS]!)),
      });
      sent += batch;
      const t0 = performance.now();
      const p = request(`${server.adminUrl}/admin/v1/events`, {
        dispatcher: agent,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-ob-events-signature': signAdminRequest({
            secret: SECRET,
            method: 'POST',
            path: '/admin/v1/events',
            body,
          }),
        },
        body,
      })
        .then(async (res) => {
          const answer = (await res.body.json()) as { results?: { jti: string | null }[] };
          if (res.statusCode !== 200) throw new Error(`publish: ${res.statusCode}`);
          for (const r of answer.results ?? []) if (r.jti) publishedAt.set(r.jti, t0);
        })
        .catch(() => {
          errors += 1;
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    clearInterval(sampler);
    const steadyBusy =
      (machineCpu().busyMs - steadyMachine.busyMs) / (performance.now() - steadyStart);
    await waitFor(
      () => [...publishedAt.keys()].every((j) => receivers.received.has(j)),
      60_000,
      'the steady-run SETs',
    );

    const latencies = [...publishedAt]
      .map(([jti, t0]) => receivers.received.get(jti)! - t0)
      .sort((a, b) => a - b);
    row(
      'publish-to-receipt p50',
      percentile(latencies, 50),
      'ms',
      undefined,
      `${latencies.length} SETs at ${steadyRate}/s in batches of ${batch}; from the publishing request's start (signing included)`,
    );
    row(
      'publish-to-receipt p99',
      percentile(latencies, 99),
      'ms',
      '< 100',
      `whole machine busy ${steadyBusy.toFixed(2)} of ${os.availableParallelism()} cores${errors ? `; ${errors} publishing errors or skipped ticks` : ''}`,
    );

    const median = (xs: number[]) =>
      percentile(
        [...xs].sort((a, b) => a - b),
        50,
      );
    const first = median(rss.filter((s) => s.at < windowSeconds * 1000).map((s) => s.mb));
    const last = median(
      rss.filter((s) => s.at >= (steadySeconds - windowSeconds) * 1000).map((s) => s.mb),
    );
    const change = ((last - first) / first) * 100;
    row(`server RSS, first ${windowSeconds} s`, first, 'MiB');
    row(`server RSS, last ${windowSeconds} s`, last, 'MiB', undefined, `${steadySeconds} s run`);
    row('server RSS change', change, '%', 'within ±10');
    row(
      'duplicate deliveries',
      receivers.duplicates,
      'SETs',
      '0',
      `${receivers.requests} requests for ${receivers.received.size} SETs`,
    );
    return rows;
  } finally {
    await agent.close();
    await server.stop();
    await receivers.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
};
