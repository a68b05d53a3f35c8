// `npm run bench [-- name ...] [-- --quick]`: runs every bench/*.bench.ts (or the named ones) and
// prints one table, with the machine it ran on. The soak bench runs only when named or with --soak.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { formatTable, type Bench, type BenchRow } from './lib/report.js';

const dir = import.meta.dirname;
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.filter((a) => !a.startsWith('--'));

async function postgresAdminUrl(): Promise<string | null> {
  const url = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    return url;
  } catch {
    return null;
  } finally {
    await client.end().catch(() => {});
  }
}

// Opt-in benches (long): only when named, or with their flag (`--soak`).
const OPT_IN = ['soak'];
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .filter((f) => {
    const name = f.replace('.bench.ts', '');
    return !OPT_IN.includes(name) || only.includes(name) || args.includes(`--${name}`);
  })
  .sort();

const ctx = {
  postgresAdminUrl: await postgresAdminUrl(),
  quick,
  log: (m: string) => process.stderr.write(`  ${m}\n`),
};
const rows: BenchRow[] = [];
for (const f of files) {
  process.stderr.write(`== ${f}\n`);
  const mod = (await import(path.join(dir, f))) as { run: Bench };
  try {
    rows.push(...(await mod.run(ctx)));
  } catch (err) {
    rows.push({
      bench: f.replace('.bench.ts', ''),
      metric: 'error',
      value: (err as Error).message,
      unit: '',
    });
  }
}
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(
  `\nob-events benchmarks — ${new Date().toISOString().slice(0, 10)}, ${os.availableParallelism()} cores (${cpu}), ` +
    `${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, database: ${ctx.postgresAdminUrl ? 'Postgres on the same machine' : 'embedded PGlite'}${quick ? ', --quick' : ''}\n`,
);
console.log(formatTable(rows));
