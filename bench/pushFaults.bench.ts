// Push to endpoints that misbehave (issue 11), with the default schedule (PUSH_RETRY_BASE_MS
// 1000, PUSH_BREAKER_* defaults), against `ob-events serve` (a child process); all at once, so
// they also show that one TPP's trouble does not hold up the others:
// - flaky: answers 500 twice per SET, then 202; 20 SETs. From the first request to the last
//   SET accepted, against 3x the sum of a SET's back-off delays (1 s + 2 s).
// - overloaded: answers 503 with Retry-After: 2 for 10 s, then 202; 20 SETs. From recovery to
//   the last SET accepted (target within 2 s of recovering, plus a claim).
// - dead: refuses connections; 20 SETs. Requests made to it in the first minute (`--quick`:
//   20 s, scaled to a minute).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  createCertificateAuthority,
  createSigningKeyPair,
  issueCertificate,
} from '../src/crypto/devPki.js';
import { parseEventInput, type EventInput } from '../src/domain/eventInput.js';
import type { Bench, BenchRow } from './lib/report.js';
import { startBenchServer } from './lib/server.js';

const PATH = '/open-banking/v3.1/event-notifications';
const SETS = 20;

type Reply = { status: number; headers?: Record<string, string> };

interface Endpoint {
  url: string;
  requests: number;
  /** jti → performance.now() when it was answered 202. */
  accepted: Map<string, number>;
  firstRequestAt: number | undefined;
  close(): Promise<void>;
}

async function endpoint(
  cert: string,
  key: string,
  script: (nth: number) => Reply,
): Promise<Endpoint> {
  const perJti = new Map<string, number>();
  const state: Endpoint = {
    url: '',
    requests: 0,
    accepted: new Map(),
    firstRequestAt: undefined,
    close: async () => {},
  };
  const server = https.createServer({ cert, key }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const now = performance.now();
      state.firstRequestAt ??= now;
      state.requests += 1;
      const jti = jtiOf(body) ?? '';
      const nth = (perJti.get(jti) ?? 0) + 1;
      perJti.set(jti, nth);
      const reply = script(nth);
      if (reply.status === 202 && !state.accepted.has(jti)) state.accepted.set(jti, now);
      res.writeHead(reply.status, reply.headers ?? {}).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `https://localhost:${(server.address() as net.AddressInfo).port}${PATH}`;
  state.close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return state;
}

function jtiOf(jws: string): string | undefined {
  const payload = jws.split('.')[1];
  if (!payload) return undefined;
  return /"jti":"([^"]+)"/.exec(Buffer.from(payload, 'base64url').toString('utf8'))?.[1];
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function eventFor(clientId: string): EventInput {
  const id = `pmt-${randomBytes(4).toString('hex')}`;
  const parsed = parseEventInput({
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
  });
  if (!parsed.ok) throw new Error('bad bench event');
  return parsed.event;
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const run: Bench = async (ctx) => {
  const deadWindowMs = ctx.quick ? 20_000 : 60_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-push-endpoints-bench-'));
  const ca = createCertificateAuthority('push endpoints bench TPP CA');
  const tls = issueCertificate(ca, {
    commonName: 'localhost',
    organization: 'push endpoints bench TPP',
    country: 'GB',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const caFile = path.join(dir, 'tpp-ca.crt');
  fs.writeFileSync(caFile, ca.certPem);

  let overloaded = true;
  const flaky = await endpoint(tls.certPem, tls.keyPem, (nth) => ({
    status: nth <= 2 ? 500 : 202,
  }));
  const busy = await endpoint(tls.certPem, tls.keyPem, () =>
    overloaded ? { status: 503, headers: { 'retry-after': '2' } } : { status: 202 },
  );
  const deadUrl = `https://localhost:${await closedPort()}${PATH}`;
  const server = await startBenchServer(ctx, {
    env: { PUSH_CA_FILE: caFile, CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' },
  });
  const rows: BenchRow[] = [];
  const row = (metric: string, value: number, unit: string, target?: string, note?: string) =>
    rows.push({
      bench: 'push-faults',
      metric,
      value,
      unit,
      ...(target ? { target } : {}),
      ...(note ? { note } : {}),
    });
  try {
    const urls = { flaky: flaky.url, busy: busy.url, dead: deadUrl };
    await server.withServices(async (s) => {
      for (const [clientId, url] of Object.entries(urls)) {
        await s.clients.register({
          clientId,
          jwks: { keys: [(await createSigningKeyPair()).publicJwk] },
        });
        await s.db.knex('event_subscriptions').insert({
          subscription_id: `es_${clientId}`,
          client_id: clientId,
          version: '3.1',
          callback_url: url,
        });
      }
    });
    ctx.log(`publishing ${SETS} SETs each for a flaky, an overloaded and a dead endpoint`);
    const started = performance.now();
    await server.withServices(async (s) => {
      const inputs: EventInput[] = [];
      for (const clientId of Object.keys(urls))
        for (let i = 0; i < SETS; i++) inputs.push(eventFor(clientId));
      await s.publisher.publish(inputs);
    });

    const overloadEnds = started + 10_000;
    const recovered = (async () => {
      await new Promise((r) => setTimeout(r, Math.max(0, overloadEnds - performance.now())));
      overloaded = false;
      return performance.now();
    })();

    await until(() => flaky.accepted.size >= SETS, 120_000, 'the flaky endpoint');
    const flakyMs = Math.max(...flaky.accepted.values()) - flaky.firstRequestAt!;
    row(
      'flaky endpoint (500, 500, 202 per SET): all 20 SETs',
      flakyMs / 1000,
      's',
      '<= 9 (3 x (1 + 2) s)',
      `${flaky.requests} requests`,
    );

    const recoveredAt = await recovered;
    const busyRequestsWhileDown = busy.requests;
    await until(() => busy.accepted.size >= SETS, 60_000, 'the overloaded endpoint');
    const afterRecovery = Math.max(...busy.accepted.values()) - recoveredAt;
    row(
      '503 + Retry-After: 2 for 10 s: last SET after recovery',
      afterRecovery / 1000,
      's',
      '~2',
      `${busyRequestsWhileDown} requests during the 10 s`,
    );

    await new Promise((r) =>
      setTimeout(r, Math.max(0, started + deadWindowMs - performance.now())),
    );
    const deadAttempts = await server.withServices(async (s) => {
      const [r] = await s.db
        .knex('push_attempts as p')
        .join('event_deliveries as d', 'd.jti', 'p.jti')
        .where('d.client_id', 'dead')
        .count({ n: '*' });
      return Number(r!.n);
    });
    row(
      'dead endpoint (refused): requests in its first minute',
      (deadAttempts * 60_000) / deadWindowMs,
      'reqs',
      'a handful',
      ctx.quick
        ? `${deadAttempts} in ${deadWindowMs / 1000} s, scaled`
        : `${SETS} SETs waiting; then <= 1 per PUSH_BREAKER_OPEN_SECONDS`,
    );
  } finally {
    await server.stop();
    await Promise.all([flaky.close(), busy.close()]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
};
