// Soak (issue 11, item 7): an hour's worth of queue churn, compressed, and the poll latency as it
// goes. SETs flow through one TPP in ten rounds: each round inserts its share (SQL, the bytes of
// one real signed SET: the server never looks inside), the TPP drains them with polls that
// acknowledge (maxEvents 100), then 200 empty polls (returnImmediately) time the hot "next
// pending for this client" query over everything the churn left behind. After each round the
// dead tuples of event_deliveries are read from pg_stat_user_tables.
//
// Vacuum: where autovacuum runs, the storage parameters of migrations/20261201111000_autovacuum.ts
// start it after 1% (+1,000) dead rows. This machine's cluster has autovacuum off, so the bench
// does what autovacuum would with those parameters: it runs VACUUM (ANALYZE) when a table crosses
// that threshold, and says so in the table. `SOAK_NO_VACUUM=1` skips that, to show the difference.
//
// Opt-in: `npm run bench -- soak` (or `--soak`). Default 200,000 SETs (--quick: 50,000);
// `SOAK_SETS=720000` is a full hour at 200 SETs/s.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { importJWK, SignJWT, type JWK } from 'jose';
import { request, type Agent } from 'undici';
import { parseEventInput } from '../src/domain/eventInput.js';
import { mtlsAgent } from './lib/load.js';
import { percentile, type Bench, type BenchRow } from './lib/report.js';
import { startBenchServer, type BenchServer } from './lib/server.js';

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ROUNDS = 10;
const PROBES = 200;

export const run: Bench = async (ctx) => {
  if (!ctx.postgresAdminUrl) {
    return [{ bench: 'soak', metric: 'skipped', value: 'needs Postgres', unit: '' }];
  }
  const total = Number(process.env.SOAK_SETS ?? (ctx.quick ? 50_000 : 200_000));
  const vacuumLikeAutovacuum = process.env.SOAK_NO_VACUUM !== '1';
  const server = await startBenchServer(ctx, {
    env: { PUSH_CONCURRENCY: '0', POLL_LEASE_SECONDS: '60', POLL_MAX_EVENTS: '100' },
  });
  const agent = mtlsAgent(
    { caCert: server.pki.caCert, cert: server.pki.tppCert, key: server.pki.tppKey },
    8,
  );
  const jwks = JSON.parse(fs.readFileSync(server.pki.tppJwks, 'utf8')) as unknown;
  const signingKey = JSON.parse(fs.readFileSync(server.pki.tppPrivateJwk, 'utf8')) as JWK;
  const rows: BenchRow[] = [];
  const clientId = 'soak-tpp';
  try {
    const { sample, autovacuum } = await server.withServices(async (s) => {
      await s.clients.register({ clientId, jwks });
      await s.db
        .knex('event_subscriptions')
        .insert({ subscription_id: `es_${clientId}`, client_id: clientId, version: '3.1' });
      const r = parseEventInput({
        clientId,
        type: 'UK.OBIE.Resource-Update',
        subject: {
          id: 'pmt-1',
          type: 'domestic-payment',
          links: [{ version: 'v3.1', link: 'https://bank.example/open-banking/v3.1/pmt-1' }],
        },
      });
      if (!r.ok) throw new Error('bad sample');
      const [outcome] = await s.publisher.publish([r.event]);
      if (outcome?.status !== 'created') throw new Error('sample SET not created');
      const row = (await s.db.knex('events').where({ jti: outcome.jti }).first('set_jws')) as {
        set_jws: string;
      };
      const setting = await s.db.knex.raw<{ rows: { autovacuum: string }[] }>('SHOW autovacuum');
      return { sample: row.set_jws, autovacuum: setting.rows[0]!.autovacuum };
    });
    let token = await tokenFor(server, agent, clientId, signingKey);
    ctx.log(
      `${total} SETs in ${ROUNDS} rounds; autovacuum is ${autovacuum}; ${vacuumLikeAutovacuum ? 'the bench vacuums at the migration thresholds' : 'no vacuum'}`,
    );

    // Warm-up (not measured): the server's first requests compile its hot paths, which would
    // make round 1 look slow and any later round look flat beside it.
    for (let i = 0; i < PROBES; i++) {
      await poll(server, agent, token, { maxEvents: 10, returnImmediately: true });
    }
    const p99s: number[] = [];
    const p50s: number[] = [];
    const started = performance.now();
    for (let round = 1; round <= ROUNDS; round++) {
      const n = Math.round(total / ROUNDS);
      await server.withServices((s) =>
        s.db.knex.raw(
          `WITH e AS (
             INSERT INTO events (jti, client_id, event_types, subject_id, subject_type, txn, kid, set_jws)
             SELECT gen_random_uuid(), :clientId, '{UK.OBIE.Resource-Update}', 'r', 'domestic-payment', 't', 'k', :set
               FROM generate_series(1, ${n}) g
             RETURNING jti, client_id)
           INSERT INTO event_deliveries (jti, client_id) SELECT jti, client_id FROM e`,
          { clientId, set: sample },
        ),
      );
      // Tokens last 10 minutes; a long soak takes a fresh one each round.
      token = await tokenFor(server, agent, clientId, signingKey);
      let ack: string[] = [];
      for (;;) {
        const answer = await poll(server, agent, token, {
          maxEvents: 100,
          returnImmediately: true,
          ack,
        });
        ack = Object.keys(answer.sets);
        if (ack.length === 0) break;
      }
      const latencies: number[] = [];
      for (let i = 0; i < PROBES; i++) {
        const t0 = performance.now();
        await poll(server, agent, token, { maxEvents: 10, returnImmediately: true });
        latencies.push(performance.now() - t0);
      }
      latencies.sort((a, b) => a - b);
      const p99 = percentile(latencies, 99);
      p99s.push(p99);
      p50s.push(percentile(latencies, 50));
      await new Promise((r) => setTimeout(r, 1_100)); // statistics are flushed every second
      const before = await tableStats(server, 'event_deliveries');
      let vacuumed = '';
      if (vacuumLikeAutovacuum && autovacuum === 'off' && before.dead > 1000 + 0.01 * before.live) {
        // Autovacuum analyzes too (its analyze thresholds are crossed first).
        await server.withServices((s) =>
          s.db.knex.raw('VACUUM (ANALYZE) event_deliveries, events'),
        );
        vacuumed = ', then VACUUM (ANALYZE) by the bench';
      }
      rows.push({
        bench: 'soak',
        metric: `round ${round}: ${(round * n).toLocaleString('en')} SETs through`,
        value: Math.round(p99 * 100) / 100,
        unit: 'ms p99 empty poll',
        note: `p50 ${percentile(latencies, 50).toFixed(2)} ms; event_deliveries: ${before.dead} dead tuples (ratio ${before.ratio.toFixed(3)}), ${(before.bytes / 2 ** 20).toFixed(1)} MiB${vacuumed}`,
      });
      ctx.log(
        `round ${round}/${ROUNDS}: p99 ${p99.toFixed(2)} ms, ${before.dead} dead tuples${vacuumed}`,
      );
    }
    const seconds = (performance.now() - started) / 1000;
    rows.push({
      bench: 'soak',
      metric: 'p99 of the last round / the first',
      value: Math.round((p99s.at(-1)! / p99s[0]!) * 100) / 100,
      unit: '×',
      target: '<= 1.5 (flat)',
      note: `${total.toLocaleString('en')} SETs through in ${seconds.toFixed(0)} s (${Math.round(total / seconds)} SETs/s; an hour at 200/s is 720,000); autovacuum ${autovacuum}${vacuumLikeAutovacuum ? '' : ', no vacuum'}`,
    });
    // p99 of 200 probes is their second-worst: one GC pause moves it, so the median is shown too.
    rows.push({
      bench: 'soak',
      metric: 'p50 of the last round / the first',
      value: Math.round((p50s.at(-1)! / p50s[0]!) * 100) / 100,
      unit: '×',
      note: `p99 over the rounds: ${Math.min(...p99s).toFixed(1)}–${Math.max(...p99s).toFixed(1)} ms`,
    });
    return rows;
  } finally {
    await agent.close();
    await server.stop();
  }
};

async function tableStats(server: BenchServer, table: string) {
  return server.withServices(async (s) => {
    const { rows } = await s.db.knex.raw<{
      rows: { live: number; dead: number; bytes: number }[];
    }>(
      `SELECT n_live_tup AS live, n_dead_tup AS dead, pg_total_relation_size(relid) AS bytes
         FROM pg_stat_user_tables WHERE relname = ?`,
      [table],
    );
    const r = rows[0] ?? { live: 0, dead: 0, bytes: 0 };
    return { ...r, ratio: r.dead + r.live === 0 ? 0 : r.dead / (r.dead + r.live) };
  });
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
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`POST /events: ${res.statusCode} ${text}`);
  return JSON.parse(text) as { sets: Record<string, string>; moreAvailable: boolean };
}

async function tokenFor(
  server: BenchServer,
  agent: Agent,
  clientId: string,
  jwk: JWK,
): Promise<string> {
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
  return body.access_token;
}
