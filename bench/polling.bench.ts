// Aggregated polling (issue 6), over mTLS with keep-alive against `ob-events serve`:
// - drain rate: SETs/s acknowledged with maxEvents 100, one and four pollers (target ≥ 8,000/s);
// - latency of a poll returning 10 SETs with a million pending rows over a thousand clients
//   (target p99 < 20 ms);
// - long-poll wake-up latency, publish committed → response received (target p99 < 50 ms);
// - server RSS while draining a million SETs and while holding 1,000 idle long polls (< 300 MB).
// The million-row table is written with SQL (every row carries the same real signed SET: the
// server never looks inside a SET, it returns the stored bytes); the drain and wake-up SETs are
// published through the real publisher.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { importJWK, SignJWT, type JWK } from 'jose';
import { request, type Agent } from 'undici';
import { DeliveriesStore } from '../src/db/stores/deliveriesStore.js';
import { parseEventInput } from '../src/domain/eventInput.js';
import type { Services } from '../src/main.js';
import { median, spread } from './lib/interleaved.js';
import { closedLoop, mtlsAgent } from './lib/load.js';
import { percentile, type Bench, type BenchRow } from './lib/report.js';
import { startBenchServer, type BenchServer } from './lib/server.js';

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

interface Tpp {
  clientId: string;
  token: string;
}

export const run: Bench = async (ctx) => {
  const drainSets = ctx.quick ? 10_000 : 50_000;
  const bigRows = ctx.quick ? 100_000 : 1_000_000;
  const bigClients = 1_000;
  const server = await startBenchServer(ctx, {
    env: {
      PUSH_CONCURRENCY: '0',
      LONG_POLL_SECONDS: '30',
      POLL_LEASE_SECONDS: '60',
      LONG_POLL_MAX_PER_CLIENT: '10',
    },
    ...(process.env.BENCH_NODE_ARGS ? { nodeArgs: process.env.BENCH_NODE_ARGS.split(' ') } : {}),
  });
  const agent = mtlsAgent(
    { caCert: server.pki.caCert, cert: server.pki.tppCert, key: server.pki.tppKey },
    1_100,
  );
  const jwks = JSON.parse(fs.readFileSync(server.pki.tppJwks, 'utf8')) as unknown;
  const signingKey = JSON.parse(fs.readFileSync(server.pki.tppPrivateJwk, 'utf8')) as JWK;
  const rows: BenchRow[] = [];
  const row = (metric: string, value: number, unit: string, target?: string, note?: string) =>
    rows.push({
      bench: 'polling',
      metric,
      value,
      unit,
      ...(target ? { target } : {}),
      ...(note ? { note } : {}),
    });

  try {
    // --- drain rate, one poller, beside its reference ---------------------------------------
    // Ours over HTTP and the pg-only drain (the same lease-and-ack statement straight from the
    // pool, no HTTP) take turns, a slice of SETs each, so that the machine's drift between
    // minutes lands on both; the ratio is the median of the slices' ratios.
    const tpp = await registerTpp(server, agent, 'drain-1', jwks, signingKey);
    const reference = 'drain-pg-only';
    await server.withServices(async (s) => {
      await s.clients.register({ clientId: reference, jwks });
      await s.db
        .knex('event_subscriptions')
        .insert({ subscription_id: `es_${reference}`, client_id: reference, version: '3.1' });
    });
    ctx.log(`publishing ${drainSets} SETs each for ${tpp.clientId} and the pg-only reference`);
    await server.withServices((s) => publishMany(s, tpp.clientId, drainSets));
    await server.withServices((s) => publishMany(s, reference, drainSets));
    const slice = drainSets / 5;
    ctx.log(`draining both with one poller, maxEvents 100, in slices of ${slice} SETs`);
    const ours = httpDrainer(server, agent, tpp.token);
    const ratios: number[] = [];
    const totals = { ours: { sets: 0, ms: 0 }, pgOnly: { sets: 0, ms: 0 } };
    await server.withServices(async (s) => {
      const pgOnly = pgOnlyDrainer(s, reference);
      for (;;) {
        const a = await timed(() => ours(slice));
        const b = await timed(() => pgOnly(slice));
        if (a.sets === 0 || b.sets === 0) break;
        totals.ours.sets += a.sets;
        totals.ours.ms += a.ms;
        totals.pgOnly.sets += b.sets;
        totals.pgOnly.ms += b.ms;
        ratios.push(a.sets / a.ms / (b.sets / b.ms));
      }
    });
    const perSecond = (t: { sets: number; ms: number }) => (t.sets / t.ms) * 1000;
    row(
      'drain, 1 poller',
      perSecond(totals.ours),
      'SETs/s',
      '>= 8000',
      `${totals.ours.sets} SETs acknowledged, maxEvents 100`,
    );
    row(
      'pg-only drain, 1 poller',
      perSecond(totals.pgOnly),
      'SETs/s',
      undefined,
      'reference: the poll SQL alone',
    );
    row(
      'drain ÷ pg-only drain',
      median(ratios),
      '×',
      '>= 0.5',
      `one poller, maxEvents 100; median of alternating slices (${spread(ratios, 'slices')})`,
    );

    // --- drain rate, four pollers ------------------------------------------------------------
    {
      const tpp = await registerTpp(server, agent, 'drain-4', jwks, signingKey);
      ctx.log(`publishing ${drainSets} SETs for ${tpp.clientId}`);
      await server.withServices((s) => publishMany(s, tpp.clientId, drainSets));
      ctx.log('draining with 4 pollers, maxEvents 100');
      const drain = httpDrainer(server, agent, tpp.token);
      const { sets, ms } = await timed(async () => {
        const counts = await Promise.all(Array.from({ length: 4 }, () => drain(Infinity)));
        return counts.reduce((a, b) => a + b, 0);
      });
      row(
        'drain, 4 pollers',
        (sets / ms) * 1000,
        'SETs/s',
        '>= 8000',
        `${sets} SETs acknowledged, maxEvents 100`,
      );
    }

    // --- a million pending rows over a thousand clients --------------------------------------
    ctx.log(`writing ${bigRows} pending SETs over ${bigClients} clients (SQL)`);
    const bigIds = Array.from({ length: bigClients }, (_, i) => `big-${i}`);
    await server.withServices(async (s) => {
      const sample = await publishSample(s, bigIds[0]!, jwks);
      const knex = s.db.knex;
      await knex.raw(
        `INSERT INTO clients (client_id, name, auth_method, jwks, scopes, signing_iss)
         SELECT id, id, 'private_key_jwt', :jwks::jsonb, '{accounts}', id FROM unnest(:ids::text[]) AS id
         ON CONFLICT DO NOTHING`,
        { jwks: JSON.stringify(jwks), ids: bigIds },
      );
      for (let done = 0; done < bigRows; done += 100_000) {
        const n = Math.min(100_000, bigRows - done);
        await knex.raw(
          `WITH e AS (
             INSERT INTO events (jti, client_id, event_types, subject_id, subject_type, txn, kid, set_jws)
             SELECT gen_random_uuid(), 'big-' || (g % ${bigClients}), '{UK.OBIE.Resource-Update}', 'r', 'domestic-payment', 't', 'k', :set
               FROM generate_series(1, ${n}) g
             RETURNING jti, client_id)
           INSERT INTO event_deliveries (jti, client_id) SELECT jti, client_id FROM e`,
          { set: sample },
        );
      }
      await knex.raw('ANALYZE events');
      await knex.raw('ANALYZE event_deliveries');
    });
    ctx.log('tokens for the thousand clients');
    const bigTpps = await Promise.all(bigIds.map((id) => tokenFor(server, agent, id, signingKey)));

    ctx.log('latency of polls returning 10 SETs');
    const acks = new Map<string, string[]>();
    let turn = 0;
    const latency = await closedLoop({
      concurrency: 4,
      durationMs: ctx.quick ? 3_000 : 10_000,
      warmupMs: 1_000,
      request: async () => {
        const tpp = bigTpps[turn++ % bigTpps.length]!;
        const answer = await poll(server, agent, tpp.token, {
          maxEvents: 10,
          returnImmediately: true,
          ack: acks.get(tpp.clientId) ?? [],
        });
        const got = Object.keys(answer.sets);
        if (got.length !== 10) throw new Error(`expected 10 SETs, got ${got.length}`);
        acks.set(tpp.clientId, got);
      },
    });
    row(
      'poll of 10 SETs, p50',
      latency.p50Ms,
      'ms',
      undefined,
      `${bigRows.toLocaleString('en-GB')} pending rows, ${bigClients} clients, 4 in flight, with acks`,
    );
    row(
      'poll of 10 SETs, p99',
      latency.p99Ms,
      'ms',
      '< 20',
      `${Math.round(latency.perSecond)} polls/s${latency.errors ? `, ${latency.errors} errors: ${latency.firstError}` : ''}`,
    );

    ctx.log('draining the big table with 4 pollers, sampling RSS');
    let peakDrain = server.rssMb();
    const sampler = setInterval(() => (peakDrain = Math.max(peakDrain, server.rssMb())), 250);
    const drainStarted = performance.now();
    let drained = 0;
    let nextClient = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (;;) {
          const tpp = bigTpps[nextClient++];
          if (!tpp) return;
          let ack = acks.get(tpp.clientId) ?? [];
          for (;;) {
            const answer = await poll(server, agent, tpp.token, {
              maxEvents: 100,
              returnImmediately: true,
              ack,
            });
            drained += ack.length;
            ack = Object.keys(answer.sets);
            if (ack.length === 0) break;
          }
        }
      }),
    );
    clearInterval(sampler);
    const heap = await heapNote(server);
    const bigRate = drained / ((performance.now() - drainStarted) / 1000);
    row(
      'drain of the big table, 4 pollers',
      bigRate,
      'SETs/s',
      '>= 8000',
      `${drained.toLocaleString('en-GB')} SETs over ${bigClients} clients`,
    );
    row('server peak RSS while draining', peakDrain, 'MiB', '< 300', heap);

    // --- long-poll wake-up latency --------------------------------------------------------------
    const waker = await registerTpp(server, agent, 'wake', jwks, signingKey);
    const wakeups: number[] = [];
    const rounds = ctx.quick ? 20 : 100;
    ctx.log(`wake-up latency, ${rounds} rounds`);
    await server.withServices(async (s) => {
      for (let i = 0; i < rounds; i++) {
        let committedAt = 0;
        const waiting = poll(server, agent, waker.token, { maxEvents: 10, ack: [] }).then(
          (answer) => {
            const at = performance.now();
            if (Object.keys(answer.sets).length !== 1)
              throw new Error('wake-up poll returned no SET');
            return { at, jtis: Object.keys(answer.sets) };
          },
        );
        await new Promise((r) => setTimeout(r, 30)); // the poll is waiting now
        await publishMany(s, waker.clientId, 1);
        committedAt = performance.now();
        const { at, jtis } = await waiting;
        wakeups.push(at - committedAt);
        await poll(server, agent, waker.token, { maxEvents: 0, ack: jtis });
      }
    });
    wakeups.sort((a, b) => a - b);
    row(
      'long-poll wake-up, p50',
      percentile(wakeups, 50),
      'ms',
      undefined,
      'publish committed → response received',
    );
    row('long-poll wake-up, p99', percentile(wakeups, 99), 'ms', '< 50');

    // --- 1,000 idle long polls ----------------------------------------------------------------
    ctx.log('holding 1,000 idle long polls');
    const idleTpps = bigTpps.slice(0, 100);
    const held = idleTpps.flatMap((tpp) =>
      Array.from({ length: 10 }, () =>
        poll(server, agent, tpp.token, { maxEvents: 10 }).catch((err: unknown) => err),
      ),
    );
    await new Promise((r) => setTimeout(r, 3_000));
    const idleRss = server.rssMb();
    const waitingNow = await metricValue(server, 'ob_events_long_polls_waiting');
    await server.withServices(async (s) => {
      for (const tpp of idleTpps) await publishMany(s, tpp.clientId, 1);
    });
    await Promise.all(held);
    row(
      'server RSS holding 1,000 idle long polls',
      idleRss,
      'MiB',
      '< 300',
      `${waitingNow} waiting at the time`,
    );
    return rows;
  } finally {
    await agent.close();
    await server.stop();
  }
};

async function registerTpp(
  server: BenchServer,
  agent: Agent,
  clientId: string,
  jwks: unknown,
  key: JWK,
): Promise<Tpp> {
  await server.withServices(async (s) => {
    await s.clients.register({ clientId, jwks });
    await s.db
      .knex('event_subscriptions')
      .insert({ subscription_id: `es_${clientId}`, client_id: clientId, version: '3.1' });
  });
  return tokenFor(server, agent, clientId, key);
}

async function tokenFor(
  server: BenchServer,
  agent: Agent,
  clientId: string,
  jwk: JWK,
): Promise<Tpp> {
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'PS256', kid: jwk.kid! })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(`${server.publicUrl}/token`)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(await importJWK(jwk, 'PS256'));
  const res = await request(`${server.url}/token`, {
    dispatcher: agent,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
    }).toString(),
  });
  const body = (await res.body.json()) as { access_token?: string };
  if (res.statusCode !== 200 || !body.access_token)
    throw new Error(`token for ${clientId}: ${res.statusCode} ${JSON.stringify(body)}`);
  return { clientId, token: body.access_token };
}

async function poll(
  server: BenchServer,
  agent: Agent,
  token: string,
  body: Record<string, unknown>,
): Promise<{ sets: Record<string, string>; moreAvailable: boolean }> {
  const res = await request(`${server.url}/open-banking/v3.1/events`, {
    dispatcher: agent,
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`POST /events: ${res.statusCode} ${text}`);
  return JSON.parse(text) as { sets: Record<string, string>; moreAvailable: boolean };
}

function inputFor(clientId: string, i: number) {
  const r = parseEventInput({
    clientId,
    type: 'UK.OBIE.Resource-Update',
    subject: {
      id: `pmt-${i}`,
      type: 'domestic-payment',
      links: [
        {
          version: 'v3.1',
          link: `https://bank.example/open-banking/v3.1/pisp/domestic-payments/pmt-${i}`,
        },
      ],
    },
  });
  if (!r.ok) throw new Error('bad bench event');
  return r.event;
}

async function publishMany(s: Services, clientId: string, n: number): Promise<void> {
  for (let done = 0; done < n; done += 500) {
    const batch = Array.from({ length: Math.min(500, n - done) }, (_, i) =>
      inputFor(clientId, done + i),
    );
    await s.publisher.publish(batch);
  }
}

/** One real signed SET (its bytes are reused for the synthetic rows). */
async function publishSample(s: Services, clientId: string, jwks: unknown): Promise<string> {
  await s.clients.register({ clientId, jwks });
  await s.db
    .knex('event_subscriptions')
    .insert({ subscription_id: `es_${clientId}`, client_id: clientId, version: '3.1' });
  const [outcome] = await s.publisher.publish([inputFor(clientId, 0)]);
  if (outcome?.status !== 'created') throw new Error('sample SET not created');
  const row = await s.db.knex('events').where({ jti: outcome.jti }).first('set_jws');
  return (row as { set_jws: string }).set_jws;
}

async function metricValue(server: BenchServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

/** The server's V8 heap and external memory, from its own /metrics. */
async function heapNote(server: BenchServer): Promise<string> {
  const mb = async (name: string) => Math.round((await metricValue(server, name)) / 2 ** 20);
  return `heap used ${await mb('ob_events_nodejs_heap_size_used_bytes')} of ${await mb('ob_events_nodejs_heap_size_total_bytes')} MiB, external ${await mb('ob_events_nodejs_external_memory_bytes')} MiB`;
}

/** Runs `work` (which returns how many SETs it acknowledged) and times it. */
async function timed(work: () => Promise<number>): Promise<{ sets: number; ms: number }> {
  const started = performance.now();
  const sets = await work();
  return { sets, ms: performance.now() - started };
}

/**
 * A poller in slices: each call polls (`pollOnce`: acknowledge these, lease up to 100) until it
 * has acknowledged `atLeast` SETs or none are left, and returns how many it acknowledged; what it
 * leased last is acknowledged by the next call. Several calls at once are several pollers, each
 * with its own acknowledgements.
 */
function drainer(pollOnce: (acks: string[]) => Promise<string[]>) {
  let carried: string[] = [];
  return async (atLeast: number): Promise<number> => {
    let acks = carried;
    carried = [];
    let acked = 0;
    for (;;) {
      const leased = await pollOnce(acks);
      acked += acks.length;
      acks = leased;
      if (acks.length === 0) return acked;
      if (acked >= atLeast) {
        carried = acks;
        return acked;
      }
    }
  };
}

/** One poller of ours, over HTTP (maxEvents 100, returnImmediately). */
function httpDrainer(server: BenchServer, agent: Agent, token: string) {
  return drainer(async (ack) => {
    const answer = await poll(server, agent, token, {
      maxEvents: 100,
      returnImmediately: true,
      ack,
    });
    return Object.keys(answer.sets);
  });
}

/**
 * The reference drain: the poll statement the server runs (lease the next 100, ack the previous
 * ones), called in a loop straight from the pool, as fast as Postgres answers it.
 */
function pgOnlyDrainer(s: Services, clientId: string) {
  const store = DeliveriesStore.create(s.db.knex);
  return drainer(async (acks) => {
    const answer = await store.poll({ clientId, acks, setErrs: [], limit: 100, leaseSeconds: 60 });
    return answer.sets.map((x) => x.jti);
  });
}
