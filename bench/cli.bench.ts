// How long an `ob-events` command takes, start to exit (issue 15: "about 2 s each"; target
// under 0.5 s). The compiled CLI is spawned exactly as the `ob-events` bin runs it, against a
// running `ob-events serve` (its database: Postgres, or the embedded one through the server's
// lock file, as the README's walkthrough does), beside `node -e 0` measured in the same run: on a
// busy machine both grow, and the ratio says what is ours. `npx ob-events` adds npm's own
// start-up (resolving the package), measured here too.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { percentile, type Bench, type BenchRow } from './lib/report.js';
import { SERVE_FLAGS, startBenchServer } from './lib/server.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const CLI = path.join(ROOT, 'bin/ob-events.js');

/**
 * One run: wall time, and the CPU time (user + system) of the command, read from the cutime and
 * cstime of the `sh` that waited for it (/proc/<sh>/stat fields 16 and 17, in 10 ms ticks). On a
 * shared, busy machine the wall time includes waiting for a core; the CPU time does not.
 */
function timeOnce(
  command: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ ms: number; cpuMs: number; code: number | null; stderr: string }> {
  const script = '"$@" >/dev/null; rc=$?; cat /proc/$$/stat; exit $rc';
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script, 'sh', command, ...args], {
      env,
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => {
      const fields = stdout.slice(stdout.lastIndexOf(')') + 2).split(' ');
      const cpuMs = (Number(fields[13]) + Number(fields[14])) * 10;
      resolve({ ms: performance.now() - started, cpuMs, code, stderr });
    });
  });
}

interface Timing {
  p50: number;
  p90: number;
  cpuP50: number;
}

/** Median and p90 wall time, median CPU time, of `runs` runs (after one warm-up run). */
async function measure(
  command: string,
  args: string[],
  env: Record<string, string>,
  runs: number,
): Promise<Timing> {
  const first = await timeOnce(command, args, env);
  if (first.code !== 0) throw new Error(`${args.join(' ')} exited ${first.code}: ${first.stderr}`);
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = await timeOnce(command, args, env);
    wall.push(t.ms);
    cpu.push(t.cpuMs);
  }
  wall.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  return { p50: percentile(wall, 50), p90: percentile(wall, 90), cpuP50: percentile(cpu, 50) };
}

export const run: Bench = async (ctx) => {
  const runs = ctx.quick ? 3 : 10;
  const server = await startBenchServer(ctx);
  try {
    await server.withServices(async ({ clients, db }) => {
      const jwks = JSON.parse(fs.readFileSync(server.pki.tppJwks, 'utf8')) as unknown;
      await clients.register({ clientId: 'bench-cli', jwks });
      await db
        .knex('event_subscriptions')
        .insert({ subscription_id: 'es-bench-cli', client_id: 'bench-cli', version: '3.1' });
    });
    const env = { ...server.env, LOG_LEVEL: 'warn' };
    const node = (args: string[]) =>
      measure(process.execPath, [...SERVE_FLAGS, ...args], env, runs);
    const reference = await node(['-e', '0']);
    const rows: BenchRow[] = [
      {
        bench: 'cli',
        metric: 'reference: node -e 0, p50',
        value: reference.p50,
        unit: 'ms',
        note: `p90 ${reference.p90.toFixed(0)} ms, CPU ${reference.cpuP50} ms; ${runs} runs each, same time`,
      },
    ];
    const commands: [string, string[]][] = [
      ['ob-events --version', ['--version']],
      ['ob-events clients list', ['clients', 'list']],
      ['ob-events keys list', ['keys', 'list']],
      [
        'ob-events events publish (1 SET, signed)',
        [
          ...['events', 'publish', '--client-id', 'bench-cli', '--type', 'UK.OBIE.Resource-Update'],
          ...['--subject-id', 'pmt-1', '--subject-type', 'domestic-payment'],
        ],
      ],
    ];
    for (const [name, args] of commands) {
      const t = await node([CLI, ...args]);
      ctx.log(`${name}: p50 ${t.p50.toFixed(0)} ms, CPU ${t.cpuP50} ms`);
      rows.push({
        bench: 'cli',
        metric: `${name}, p50`,
        value: t.p50,
        unit: 'ms',
        target: name.includes('--version') ? undefined : '< 500',
        note:
          `p90 ${t.p90.toFixed(0)} ms; ${(t.p50 / reference.p50).toFixed(1)}× node -e 0; ` +
          `CPU ${t.cpuP50} ms (${(t.cpuP50 / reference.cpuP50).toFixed(1)}× node -e 0)`,
      });
    }
    // The same command from the unbundled dist/ (OB_EVENTS_NO_BUNDLE=1): what the bundle saves.
    const unbundled = await measure(
      process.execPath,
      [...SERVE_FLAGS, CLI, 'clients', 'list'],
      { ...env, OB_EVENTS_NO_BUNDLE: '1' },
      runs,
    );
    ctx.log(
      `clients list, unbundled: p50 ${unbundled.p50.toFixed(0)} ms, CPU ${unbundled.cpuP50} ms`,
    );
    rows.push({
      bench: 'cli',
      metric: 'ob-events clients list, unbundled dist/, p50',
      value: unbundled.p50,
      unit: 'ms',
      note:
        `p90 ${unbundled.p90.toFixed(0)} ms; CPU ${unbundled.cpuP50} ms; OB_EVENTS_NO_BUNDLE=1 ` +
        '(the ~700 files of dist/ and node_modules instead of the bundle)',
    });
    // npx: npm resolves the package (reading node_modules) before it starts the same bin.
    const npx = await measure('npx', ['ob-events', '--version'], env, Math.min(runs, 5));
    rows.push({
      bench: 'cli',
      metric: 'npx ob-events --version, p50',
      value: npx.p50,
      unit: 'ms',
      note: "npm's own start-up on top of the command; `node bin/ob-events.js` (or an installed bin) skips it",
    });
    return rows;
  } finally {
    await server.stop();
  }
};
