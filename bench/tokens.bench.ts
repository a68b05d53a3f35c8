// Tokens issued per second: POST /token with private_key_jwt over HTTPS keep-alive with the TPP's
// client certificate, against `ob-events serve` on this machine. Every request carries its own
// assertion (own jti), signed before the timed loop so the load generator's signing does not
// compete with the server's. Target (issue 3): at least 1,500 tokens/s on 2 cores.
// 64 requests in flight by default (BENCH_TOKENS_CONCURRENCY): at 32 the closed loop is bound by
// latency, not CPU (the machine stays ~20% idle).
//
// Its ratios come from alternating rounds of ours, a bare token server (bench/lib/bareTokenServer.ts:
// TLS, verify the assertion, sign the token, nothing else) and raw PS256 on one core: the bare
// server's ratio to raw PS256 is the ceiling of ours on the machine.
//
// Beside the rate it reports where the CPU went: the server's CPU per token (event loop and
// other threads), the same for a request that does no token work (GET of the discovery document,
// which crosses the same middleware), and how busy the whole machine was, since the load
// generator and Postgres share the two cores (and anything else running then does too).
import { constants, createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type { JWK } from 'jose';
import { request, type Dispatcher } from 'undici';
import { interleaved, median, spread, type Interleaved } from './lib/interleaved.js';
import { closedLoop, machineCpu, mtlsAgent, type LoadResult } from './lib/load.js';
import { startBareTokenServer } from './lib/bareTokenServer.js';
import { bareReplicaOf, rawPs256Meter } from './lib/references.js';
import type { Bench, BenchRow } from './lib/report.js';
import { startBenchServer } from './lib/server.js';

const CLIENT_ID = 'bench-tpp';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const CONCURRENCY = Number(process.env.BENCH_TOKENS_CONCURRENCY ?? 64);
// Enough assertions for this rate over warm-up and measurement.
const MAX_RATE = 4_000;

export const run: Bench = async (ctx) => {
  const durationMs = ctx.quick ? 2_000 : 10_000;
  const warmupMs = ctx.quick ? 500 : 2_000;
  // Reference: one core signing PS256 with nothing else to do, measured before the load starts.
  ctx.log('raw PS256 signing on one core (reference)');
  const rawMeter = rawPs256Meter();
  const rawPs256 = rawMeter(ctx.quick ? 1_000 : 3_000);
  const server = await startBenchServer(ctx, {
    // Knobs for profiling runs: BENCH_NODE_ARGS="--cpu-prof ...", BENCH_UV_THREADPOOL_SIZE=2.
    ...(process.env.BENCH_NODE_ARGS ? { nodeArgs: process.env.BENCH_NODE_ARGS.split(' ') } : {}),
    ...(process.env.BENCH_UV_THREADPOOL_SIZE
      ? { env: { UV_THREADPOOL_SIZE: process.env.BENCH_UV_THREADPOOL_SIZE } }
      : {}),
  });
  const agent = mtlsAgent(
    { caCert: server.pki.caCert, cert: server.pki.tppCert, key: server.pki.tppKey },
    CONCURRENCY,
  );
  try {
    const clientJwks = JSON.parse(fs.readFileSync(server.pki.tppJwks, 'utf8')) as { keys: JWK[] };
    await server.withServices((s) => s.clients.register({ clientId: CLIENT_ID, jwks: clientJwks }));
    const jwk = JSON.parse(fs.readFileSync(server.pki.tppPrivateJwk, 'utf8')) as JWK;
    const rounds = ctx.quick ? 2 : 5;
    const tokenRoundMs = ctx.quick ? 500 : 1_500;
    // Fresh assertions for every request of ours: the long run, then our side of both sets of
    // rounds.
    const count = Math.ceil(
      ((durationMs + 3 * warmupMs + 2 * rounds * tokenRoundMs) / 1000) * MAX_RATE,
    );
    ctx.log(`signing ${count} client assertions`);
    const assertions = await signAssertions(count, jwk, `${server.publicUrl}/token`);

    // The request with no token work first, on a server that has not just issued thousands of
    // tokens: measured after the token run it also paid that run's garbage collection (2.0–2.2×
    // instead of about 1.5×, 2026-12-02). Reference: a bare node:https server, same TLS settings,
    // answering the same bytes (status, headers, body of a real discovery response), loaded by the
    // same generator with the same connection count, in rounds alternating with ours
    // (bench/lib/interleaved.ts).
    const bare = await bareReplicaOf(
      `${server.url}/.well-known/openid-configuration`,
      server.pki,
      {},
      CONCURRENCY,
    );
    let versus: Interleaved;
    try {
      ctx.log(
        `GET /.well-known/openid-configuration (baseline) and the same bytes from a bare node:https server (reference): ${CONCURRENCY} workers, ${rounds} alternating rounds`,
      );
      versus = await interleaved({
        rounds,
        roundMs: ctx.quick ? 500 : 1_000,
        warmupMs,
        concurrency: CONCURRENCY,
        ours: {
          cpuMs: () => server.cpuMs(),
          request: () =>
            expect200(
              request(`${server.url}/.well-known/openid-configuration`, { dispatcher: agent }),
            ),
        },
        reference: {
          cpuMs: () => bare.server.cpuMs(),
          request: () => expect200(request(`${bare.server.url}/`, { dispatcher: bare.agent })),
        },
      });
    } finally {
      await bare.stop();
    }
    const { ours: baseline, reference } = versus;
    ctx.log(`POST /token: ${CONCURRENCY} workers, ${durationMs / 1000} s`);
    let next = 0;
    const tokens = await measured(server, { durationMs, warmupMs }, async () => {
      const assertion = assertions[next++];
      if (assertion === undefined) return false;
      await expect200(tokenRequest(`${server.url}/token`, assertion, agent));
      return true;
    });

    // The same POST /token in alternating rounds: ours, then a bare token server, then raw PS256
    // on one core, so that the ratios compare figures taken within seconds of each other. A bare
    // server is given assertions again, in its own pass: without the replay write it checks no
    // replay, with it its jtis are recorded under its own client id.
    const versusBareServer = async (
      what: string,
      replayWrite?: { databaseUrl: string },
    ): Promise<{ versus: Interleaved; rawSlices: number[] }> => {
      const bare = await startBareTokenServer(
        server.pki,
        clientJwks.keys[0]!,
        server.publicUrl,
        replayWrite,
      );
      const bareAgent = mtlsAgent(
        { caCert: server.pki.caCert, cert: server.pki.tppCert, key: server.pki.tppKey },
        CONCURRENCY,
      );
      const rawSlices: number[] = [];
      let own = 0;
      try {
        ctx.log(`POST /token and ${what}: ${rounds} alternating rounds, raw PS256 after each`);
        const versus = await interleaved({
          rounds,
          roundMs: tokenRoundMs,
          warmupMs,
          concurrency: CONCURRENCY,
          ours: {
            cpuMs: () => server.cpuMs(),
            request: async () => {
              const assertion = assertions[next++];
              if (assertion === undefined) throw new Error('ran out of assertions');
              await expect200(tokenRequest(`${server.url}/token`, assertion, agent));
            },
          },
          reference: {
            cpuMs: () => bare.cpuMs(),
            request: () =>
              expect200(
                tokenRequest(
                  `${bare.url}/token`,
                  assertions[own++ % assertions.length]!,
                  bareAgent,
                ),
              ),
          },
          afterRound: () => rawSlices.push(rawMeter(ctx.quick ? 300 : 600)),
        });
        return { versus, rawSlices };
      } finally {
        await bareAgent.close();
        await bare.stop();
      }
    };
    const { versus: versusBare, rawSlices } = await versusBareServer('the bare token server');
    // The bare server that also records each jti in our database (Postgres only): what remains
    // between it and ours is ours, not durable replay protection.
    const databaseUrl = server.env.DATABASE_URL;
    const withReplay =
      databaseUrl === undefined
        ? undefined
        : await versusBareServer('the bare token server with the replay write', { databaseUrl });
    const versusReplay = withReplay?.versus;
    const replayRawSlices = withReplay?.rawSlices ?? [];

    // Each round's rate over the raw PS256 slice measured right after it.
    const overRaw = (rates: number[]) => rates.map((r, i) => r / rawSlices[i]!);
    const oursOverRaw = overRaw(versusBare.rates.ours);
    const bareOverRaw = overRaw(versusBare.rates.reference);
    const bareTokenUs = versusBare.reference.mainUs + versusBare.reference.otherUs;

    if (tokens.load.firstError) ctx.log(`first error: ${tokens.load.firstError}`);
    for (const [who, side] of [
      ['ours, rounds', versusBare.ours],
      ['bare token server', versusBare.reference],
    ] as const) {
      if (side.firstError) ctx.log(`first error (${who}): ${side.firstError}`);
    }
    const bareUs = reference.mainUs + reference.otherUs;

    const rows: BenchRow[] = [
      {
        bench: 'tokens',
        metric: 'tokens issued',
        value: tokens.load.perSecond,
        unit: '/s',
        target: '>= 1500',
        note: `private_key_jwt, HTTPS keep-alive, ${CONCURRENCY} in flight${tokens.load.exhausted ? ', ran out of assertions' : ''}`,
      },
      { bench: 'tokens', metric: 'latency p50', value: tokens.load.p50Ms, unit: 'ms' },
      { bench: 'tokens', metric: 'latency p99', value: tokens.load.p99Ms, unit: 'ms' },
      { bench: 'tokens', metric: 'errors', value: tokens.load.errors, unit: '' },
      {
        bench: 'tokens',
        metric: 'server CPU per token',
        value: tokens.mainUs + tokens.otherUs,
        unit: 'µs',
        note: `event loop ${Math.round(tokens.mainUs)}, other threads (RSA signing, GC) ${Math.round(tokens.otherUs)}`,
      },
      {
        bench: 'tokens',
        metric: 'machine CPU busy',
        value: tokens.machineBusy * 100,
        unit: '%',
        note: `of all cores: server ${pct(tokens.share.server)}, Postgres ${pct(tokens.share.postgres)}, load generator ${pct(tokens.share.loadGenerator)}, anything else ${pct(tokens.share.other)}`,
      },
      {
        bench: 'tokens',
        metric: 'Postgres CPU per token',
        value: tokens.postgresUs,
        unit: 'µs',
        note: 'backends of the bench database',
      },
      {
        bench: 'tokens',
        metric: 'load generator CPU per token',
        value: tokens.loadGeneratorUs,
        unit: 'µs',
      },
      {
        bench: 'tokens',
        metric: 'baseline GET (discovery)',
        value: baseline.perSecond,
        unit: '/s',
        note: `same middleware, no token work: server CPU ${Math.round(baseline.mainUs + baseline.otherUs)} µs/request`,
      },
      {
        bench: 'tokens',
        metric: 'raw PS256 signing, one core',
        value: median(rawSlices),
        unit: '/s',
        note: `reference: node:crypto, RSA 2048, this thread; median of slices after each round (${rawSlices.map((r) => Math.round(r)).join(', ')}), ${Math.round(rawPs256)} before the runs`,
      },
      {
        bench: 'tokens',
        metric: 'bare token server',
        value: versusBare.reference.perSecond,
        unit: '/s',
        note: `reference: node:https, verify the assertion, sign the token, no framework or database; server CPU ${Math.round(bareTokenUs)} µs/token; errors ${versusBare.reference.errors}`,
      },
      {
        bench: 'tokens',
        metric: 'bare token server ÷ raw PS256/s',
        value: median(bareOverRaw),
        unit: '×',
        note: `the ceiling of the next row on this machine: median of rounds (${spread(bareOverRaw)})`,
      },
      {
        bench: 'tokens',
        metric: 'tokens/s ÷ raw PS256/s',
        value: median(oursOverRaw),
        unit: '×',
        target: '>= 0.8',
        note: `median of rounds (${spread(oursOverRaw)}); the long run above ÷ the first raw figure: ${(tokens.load.perSecond / rawPs256).toFixed(2)}`,
      },
      {
        bench: 'tokens',
        metric: 'tokens/s ÷ bare token server',
        value: median(versusBare.rateRatios),
        unit: '×',
        note: `median of rounds (${spread(versusBare.rateRatios)}); server CPU per token: event loop ${Math.round(versusBare.ours.mainUs)} vs ${Math.round(versusBare.reference.mainUs)} µs, other threads ${Math.round(versusBare.ours.otherUs)} vs ${Math.round(versusBare.reference.otherUs)} µs; machine busy ${pct(versusBare.ours.machineBusy)} vs ${pct(versusBare.reference.machineBusy)}`,
      },
      ...(versusReplay
        ? [
            {
              bench: 'tokens',
              metric: 'bare token server + replay write',
              value: versusReplay.reference.perSecond,
              unit: '/s',
              note: `reference: the bare token server recording each jti in Postgres as ours does; server CPU ${Math.round(versusReplay.reference.mainUs + versusReplay.reference.otherUs)} µs/token; errors ${versusReplay.reference.errors}`,
            },
            {
              bench: 'tokens',
              metric: 'bare + replay write ÷ raw PS256/s',
              value: median(versusReplay.rates.reference.map((r, i) => r / replayRawSlices[i]!)),
              unit: '×',
              note: `what a token server with durable replay protection reaches here: median of rounds, raw PS256 measured after each (${replayRawSlices.map((r) => Math.round(r)).join(', ')})`,
            },
            {
              bench: 'tokens',
              metric: 'tokens/s ÷ bare + replay write',
              value: median(versusReplay.rateRatios),
              unit: '×',
              note: `median of rounds (${spread(versusReplay.rateRatios)}); event loop ${Math.round(versusReplay.ours.mainUs)} vs ${Math.round(versusReplay.reference.mainUs)} µs, other threads ${Math.round(versusReplay.ours.otherUs)} vs ${Math.round(versusReplay.reference.otherUs)} µs; machine busy ${pct(versusReplay.ours.machineBusy)} vs ${pct(versusReplay.reference.machineBusy)}`,
            },
          ]
        : []),
      {
        bench: 'tokens',
        metric: 'bare node:https GET',
        value: reference.perSecond,
        unit: '/s',
        note: `reference: same TLS settings and bytes, server CPU ${Math.round(bareUs)} µs/request`,
      },
      {
        bench: 'tokens',
        metric: 'discovery CPU ÷ bare CPU',
        value: median(versus.cpuRatios),
        unit: '×',
        target: '<= 1.5',
        note: `server CPU per request, discovery GET vs the bare server: median of alternating rounds (${spread(versus.cpuRatios)})`,
      },
      { bench: 'tokens', metric: 'server RSS', value: server.rssMb(), unit: 'MiB' },
    ];
    return rows;
  } finally {
    await agent.close();
    await server.stop();
  }
};

interface Measured {
  load: LoadResult;
  /** Server CPU per successful request, µs. */
  mainUs: number;
  otherUs: number;
  postgresUs: number;
  loadGeneratorUs: number;
  /** Fraction of all cores busy during the measurement, and who used them. */
  machineBusy: number;
  share: { server: number; postgres: number; loadGenerator: number; other: number };
}

function pct(fraction: number): string {
  return `${Math.round(fraction * 100)}%`;
}

function loadGeneratorCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** What `measured` reads CPU from: ob-events or the bare reference server. */
interface Measurable {
  cpuMs(): { mainThread: number; otherThreads: number };
  postgresCpuMs?: () => number;
}

async function measured(
  server: Measurable,
  times: { durationMs: number; warmupMs: number },
  request: () => Promise<boolean>,
): Promise<Measured> {
  let cpuBefore = server.cpuMs();
  let machineBefore = machineCpu();
  let pgBefore = server.postgresCpuMs?.() ?? 0;
  let ownBefore = loadGeneratorCpuMs();
  const load = await closedLoop({
    concurrency: CONCURRENCY,
    ...times,
    onMeasureStart: () => {
      cpuBefore = server.cpuMs();
      machineBefore = machineCpu();
      pgBefore = server.postgresCpuMs?.() ?? 0;
      ownBefore = loadGeneratorCpuMs();
    },
    request,
  });
  const cpuAfter = server.cpuMs();
  const machineAfter = machineCpu();
  const pgMs = (server.postgresCpuMs?.() ?? 0) - pgBefore;
  const ownMs = loadGeneratorCpuMs() - ownBefore;
  const per = (ms: number) => (load.count > 0 ? (ms / load.count) * 1000 : NaN);
  const mainMs = cpuAfter.mainThread - cpuBefore.mainThread;
  const otherMs = cpuAfter.otherThreads - cpuBefore.otherThreads;
  const totalMs = machineAfter.totalMs - machineBefore.totalMs;
  const busyMs = machineAfter.busyMs - machineBefore.busyMs;
  return {
    load,
    mainUs: per(mainMs),
    otherUs: per(otherMs),
    postgresUs: per(pgMs),
    loadGeneratorUs: per(ownMs),
    machineBusy: busyMs / totalMs,
    share: {
      server: (mainMs + otherMs) / totalMs,
      postgres: pgMs / totalMs,
      loadGenerator: ownMs / totalMs,
      other: Math.max(0, busyMs - mainMs - otherMs - pgMs - ownMs) / totalMs,
    },
  };
}

function tokenRequest(
  url: string,
  assertion: string,
  dispatcher: Dispatcher,
): Promise<Dispatcher.ResponseData> {
  return request(url, {
    dispatcher,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&client_assertion_type=${encodeURIComponent(JWT_BEARER)}&client_assertion=${assertion}`,
  });
}

async function expect200(pending: Promise<Dispatcher.ResponseData>): Promise<void> {
  const res = await pending;
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${text}`);
}

/** PS256 assertions, each with its own jti, signed on the thread pool (all cores). */
async function signAssertions(count: number, jwk: JWK, audience: string): Promise<string[]> {
  const key: KeyObject = createPrivateKey({ key: jwk as never, format: 'jwk' });
  const header = b64({ alg: 'PS256', kid: jwk.kid });
  const now = Math.floor(Date.now() / 1000);
  const one = (): Promise<string> => {
    const claims = { iss: CLIENT_ID, sub: CLIENT_ID, aud: audience, jti: randomUUID(), iat: now };
    const input = `${header}.${b64({ ...claims, exp: now + 300 })}`;
    return new Promise((resolve, reject) =>
      sign(
        'sha256',
        Buffer.from(input),
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
        (err, sig) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`)),
      ),
    );
  };
  const out: string[] = [];
  while (out.length < count) {
    const batch = Math.min(256, count - out.length);
    out.push(...(await Promise.all(Array.from({ length: batch }, one))));
  }
  return out;
}

function b64(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}
