// GET /open-banking/v3.1/event-subscriptions per second, with everything a real call costs:
// mTLS keep-alive with the TPP's certificate, a certificate-bound access token verified on every
// request, request validation against openapi/openapi.yaml, the subscription read from the
// database and a detached x-jws-signature on the response. Against `ob-events serve` on this
// machine. Target (issue 4): at least 2,500 requests/s (a bare Express + pg subscription service
// without authentication does about 1,300/s here).
import { createPrivateKey, type JsonWebKey } from 'node:crypto';
import fs from 'node:fs';
import type { JWK } from 'jose';
import { request, type Agent } from 'undici';
import { signClientAssertion } from '../src/crypto/clientAssertion.js';
import { signDetached } from '../src/crypto/detachedJws.js';
import { interleaved, median, spread, type Interleaved } from './lib/interleaved.js';
import { mtlsAgent } from './lib/load.js';
import { bareReplicaOf } from './lib/references.js';
import type { Bench, BenchRow } from './lib/report.js';
import { startBenchServer, type BenchServer } from './lib/server.js';

const CLIENT_ID = 'bench-tpp';
const CONCURRENCY = 32;
const PATH = '/open-banking/v3.1/event-subscriptions';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export const run: Bench = async (ctx) => {
  const rounds = ctx.quick ? 2 : 5;
  const roundMs = ctx.quick ? 1_000 : 2_000;
  const warmupMs = ctx.quick ? 500 : 2_000;
  const server = await startBenchServer(
    ctx,
    process.env.BENCH_NODE_ARGS ? { nodeArgs: process.env.BENCH_NODE_ARGS.split(' ') } : {},
  );
  const agent = mtlsAgent(
    { caCert: server.pki.caCert, cert: server.pki.tppCert, key: server.pki.tppKey },
    CONCURRENCY,
  );
  try {
    await server.withServices((s) =>
      s.clients.register({
        clientId: CLIENT_ID,
        jwks: JSON.parse(fs.readFileSync(server.pki.tppJwks, 'utf8')) as unknown,
      }),
    );
    const jwk = JSON.parse(fs.readFileSync(server.pki.tppPrivateJwk, 'utf8')) as JWK;
    const token = await accessToken(server, agent, jwk);
    await subscribe(server, agent, jwk, token);

    // The reference: the same status, headers (signature included) and body as a real answer
    // of ours, from a bare node:https server, under the same load.
    const bare = await bareReplicaOf(
      `${server.url}${PATH}`,
      server.pki,
      {
        authorization: `Bearer ${token}`,
      },
      CONCURRENCY,
    );
    // Distinct x-jws-signature values seen: how often ResponseSigner reused one (SIGNATURE_REUSE_MS).
    const signatures = new Set<string>();
    let signed = 0;
    let result: Interleaved;
    try {
      ctx.log(
        `GET ${PATH} and the bare reference, ${CONCURRENCY} workers, ${rounds} alternating rounds of ${roundMs / 1000} s`,
      );
      result = await interleaved({
        rounds,
        roundMs,
        warmupMs,
        concurrency: CONCURRENCY,
        ours: {
          cpuMs: () => server.cpuMs(),
          request: async () => {
            const res = await request(`${server.url}${PATH}`, {
              dispatcher: agent,
              headers: { authorization: `Bearer ${token}` },
            });
            const text = await res.body.text();
            const signature = res.headers['x-jws-signature'];
            if (res.statusCode !== 200 || typeof signature !== 'string') {
              throw new Error(`${res.statusCode} ${text}`);
            }
            signatures.add(signature);
            signed += 1;
          },
        },
        reference: {
          cpuMs: () => bare.server.cpuMs(),
          request: async () => {
            const r = await request(`${bare.server.url}${PATH}`, { dispatcher: bare.agent });
            await r.body.text();
            if (r.statusCode !== 200) throw new Error(`bare server: ${r.statusCode}`);
          },
        },
      });
    } finally {
      await bare.stop();
    }
    const { ours: measured, reference } = result;
    if (measured.firstError) ctx.log(`first error: ${measured.firstError}`);
    const rows: BenchRow[] = [
      {
        bench: 'subscriptions',
        metric: 'GET /event-subscriptions',
        value: measured.perSecond,
        unit: '/s',
        target: '>= 2500',
        note: `mTLS keep-alive + bound token + validation + signed response, ${CONCURRENCY} in flight`,
      },
      { bench: 'subscriptions', metric: 'latency p50', value: measured.p50Ms, unit: 'ms' },
      { bench: 'subscriptions', metric: 'latency p99', value: measured.p99Ms, unit: 'ms' },
      { bench: 'subscriptions', metric: 'errors', value: measured.errors, unit: '' },
      {
        bench: 'subscriptions',
        metric: 'server CPU per request',
        value: measured.mainUs + measured.otherUs,
        unit: 'µs',
        note: `event loop ${Math.round(measured.mainUs)} µs, other threads ${Math.round(measured.otherUs)} µs`,
      },
      {
        bench: 'subscriptions',
        metric: 'response signatures reused',
        value: signed > 0 ? (1 - signatures.size / signed) * 100 : NaN,
        unit: '%',
        note: `${signatures.size} distinct signatures over ${signed} responses (warm-up included)`,
      },
      { bench: 'subscriptions', metric: 'server RSS', value: server.rssMb(), unit: 'MiB' },
      {
        bench: 'subscriptions',
        metric: 'bare node:https GET',
        value: reference.perSecond,
        unit: '/s',
        note: `reference: same TLS settings, bytes, load generator and connections; server CPU ${Math.round(reference.mainUs + reference.otherUs)} µs/request`,
      },
      {
        bench: 'subscriptions',
        metric: 'GET rate ÷ bare rate',
        value: median(result.rateRatios),
        unit: '×',
        target: '>= 0.5',
        note: `median of alternating rounds (${spread(result.rateRatios)})`,
      },
    ];
    return rows;
  } finally {
    await agent.close();
    await server.stop();
  }
};

async function accessToken(server: BenchServer, agent: Agent, jwk: JWK): Promise<string> {
  const assertion = await signClientAssertion({
    clientId: CLIENT_ID,
    audience: `${server.publicUrl}/token`,
    privateJwk: jwk,
    kid: jwk.kid!,
    lifetimeSeconds: 300,
    nowMs: Date.now(),
  });
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
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`POST /token: ${res.statusCode} ${text}`);
  return (JSON.parse(text) as { access_token: string }).access_token;
}

/** The subscription every GET reads: created the way a TPP does, with a signed POST. */
async function subscribe(server: BenchServer, agent: Agent, jwk: JWK, token: string) {
  const body = JSON.stringify({
    Data: {
      // An address literal: no DNS on the bench machine.
      CallbackUrl: 'https://93.184.215.14/open-banking/v3.1/event-notifications',
      Version: '3.1',
      EventTypes: ['UK.OBIE.Resource-Update', 'UK.OBIE.Consent-Authorization-Revoked'],
    },
  });
  const signature = await signDetached(
    Buffer.from(body),
    { kid: jwk.kid!, privateKey: createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' }) },
    { iss: CLIENT_ID, tan: 'openbanking.org.uk', iat: Math.floor(Date.now() / 1000) },
  );
  const res = await request(`${server.url}${PATH}`, {
    dispatcher: agent,
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'x-jws-signature': signature,
    },
    body,
  });
  const text = await res.body.text();
  if (res.statusCode !== 201) throw new Error(`POST ${PATH}: ${res.statusCode} ${text}`);
}
