// Events published per second (issue 5): through the admin API (batches of 100, HMAC-signed) and
// through the SQL outbox, beside the raw single-core PS256 signing rate measured in the same run.
// Target: at least 3,000 SETs/s on 2 cores with Postgres on the same machine.
import { randomBytes } from 'node:crypto';
import { request, Agent } from 'undici';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { closedLoop } from './lib/load.js';
import type { Bench, BenchRow } from './lib/report.js';
import { startBenchServer } from './lib/server.js';
import { measureRawSigningRate } from './signing.bench.js';

const SECRET = 'bench-admin-secret-0123456789';
const CLIENTS = 10;
const BATCH = 100;

function event(clientId: string, i: number) {
  const id = `pmt-${i}-${randomBytes(3).toString('hex')}`;
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

export const run: Bench = async (ctx) => {
  const durationMs = ctx.quick ? 3_000 : 15_000;
  const outboxRows = ctx.quick ? 5_000 : 30_000;
  ctx.log('raw single-core PS256 signing rate');
  const raw = measureRawSigningRate(ctx.quick ? 1_000 : 3_000);

  const server = await startBenchServer(ctx, {
    env: { ADMIN_API_SECRET: SECRET, PUSH_CONCURRENCY: '0' },
  });
  const agent = new Agent({ connections: 8, keepAliveTimeout: 60_000 });
  const rows: BenchRow[] = [];
  try {
    const clients = Array.from({ length: CLIENTS }, (_, i) => `bench-tpp-${i}`);
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

    ctx.log(`admin API: batches of ${BATCH}, 4 in flight, ${durationMs / 1000} s`);
    let n = 0;
    const result = await closedLoop({
      concurrency: 4,
      durationMs,
      warmupMs: ctx.quick ? 500 : 2_000,
      request: async () => {
        const body = JSON.stringify({
          events: Array.from({ length: BATCH }, () => event(clients[n % CLIENTS]!, n++)),
        });
        const res = await request(`${server.adminUrl}/admin/v1/events`, {
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
        });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${text}`);
      },
    });
    const apiRate = result.perSecond * BATCH;
    rows.push(
      {
        bench: 'publish',
        metric: 'raw PS256 signing, one core',
        value: raw,
        unit: 'sig/s',
        note: 'node:crypto, same run',
      },
      {
        bench: 'publish',
        metric: 'admin API, batches of 100',
        value: apiRate,
        unit: 'SETs/s',
        target: '>= 3000',
        note: `${(apiRate / raw).toFixed(2)}× the raw one-core signing rate; batch p50 ${result.p50Ms.toFixed(0)} ms, p99 ${result.p99Ms.toFixed(0)} ms${result.errors ? `, ${result.errors} errors: ${result.firstError}` : ''}`,
      },
    );

    ctx.log(`outbox: ${outboxRows} rows inserted by a "bank" transaction`);
    await server.withServices(async ({ db: { knex } }) => {
      const started = Date.now();
      await knex.transaction(async (trx) => {
        for (let i = 0; i < outboxRows; i += 1_000) {
          const chunk = Array.from({ length: Math.min(1_000, outboxRows - i) }, (_, j) => ({
            event: JSON.stringify(event(clients[(i + j) % CLIENTS]!, i + j)),
          }));
          await trx('event_outbox').insert(chunk);
        }
      });
      for (;;) {
        const { rows: left } = await knex.raw<{ rows: { n: number }[] }>(
          `SELECT count(*)::int AS n FROM event_outbox WHERE state = 'new'`,
        );
        if (left[0]!.n === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const elapsed = (Date.now() - started) / 1000;
      const { rows: states } = await knex.raw<{ rows: { state: string; n: number }[] }>(
        `SELECT state, count(*)::int AS n FROM event_outbox GROUP BY state`,
      );
      const rate = outboxRows / elapsed;
      rows.push({
        bench: 'publish',
        metric: 'outbox, insert to published',
        value: rate,
        unit: 'SETs/s',
        target: '>= 3000',
        note: `${(rate / raw).toFixed(2)}× raw; ${outboxRows} rows, ${states.map((s) => `${s.state} ${s.n}`).join(', ')}`,
      });
    });
    rows.push({ bench: 'publish', metric: 'server RSS after', value: server.rssMb(), unit: 'MiB' });
    return rows;
  } finally {
    await agent.close();
    await server.stop();
  }
};
