// Starts ob-events for a benchmark the way it runs in production: `node bin/ob-events.js serve`
// (the compiled dist/, which `npm run bench` builds) as a child process, on a fresh Postgres
// database (ob_bench_<random>, dropped afterwards) or a fresh embedded one, with its own
// development PKI, free ports and LOG_LEVEL=warn.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { writeDevPki, type DevPkiFiles } from '../../src/crypto/devPki.js';
import { openDatabase } from '../../src/db/database.js';
import { silentLogger } from '../../src/logger.js';
import { buildServices, type Services } from '../../src/main.js';
import type { BenchContext } from './report.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'bin/ob-events.js');
// The flags bin/ob-events.js runs with (its first line), so that the bench serves as `ob-events serve` does.
export const SERVE_FLAGS = ['--max-semi-space-size=4', '--heap-growing-percent=50'];

export interface BenchServer {
  /** https://127.0.0.1:<port> (mTLS) */
  url: string;
  /** http://127.0.0.1:<port> */
  adminUrl: string;
  /** PUBLIC_URL as the server sees it (issuer; the token endpoint is `${publicUrl}/token`). */
  publicUrl: string;
  pid: number;
  /** The environment the server runs with (also what `withServices` and CLI runs use). */
  env: Record<string, string>;
  /** Its development PKI: CA, server certificate, demo TPP certificate and keys. */
  pki: DevPkiFiles;
  /** Resident set size of the server process now, in MiB (VmRSS). */
  rssMb(): number;
  /**
   * CPU time the server process has used so far, in ms: its main (event loop) thread and all
   * other threads (libuv pool, workers, GC). Take it before and after a run to see where it went.
   */
  cpuMs(): { mainThread: number; otherThreads: number };
  /**
   * CPU time used so far by the Postgres backends serving this server's database, in ms (0 with
   * the embedded database, whose work is inside the server process). Backends that have exited
   * are not counted, so compare values taken while the pool is open.
   */
  postgresCpuMs(): number;
  /** Runs `fn` with the domain services on the server's database (register clients, publish, ...). */
  withServices<T>(fn: (services: Services) => Promise<T>): Promise<T>;
  /** What the server wrote to stderr (bounded), for error messages. */
  stderr(): string;
  stop(): Promise<void>;
}

export interface BenchServerOptions {
  /** Extra environment (e.g. PUSH_*, POLL_*). */
  env?: Record<string, string>;
  /** Node.js flags for the server process, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  nodeArgs?: string[];
  startTimeoutMs?: number;
}

export async function startBenchServer(
  ctx: BenchContext,
  opts: BenchServerOptions = {},
): Promise<BenchServer> {
  if (!fs.existsSync(path.join(ROOT, 'dist/src/cli/index.js'))) {
    throw new Error('dist/ is missing: run the benchmarks with `npm run bench` (it builds first)');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-bench-'));
  const cleanups: (() => Promise<void>)[] = [
    async () => fs.rmSync(dir, { recursive: true, force: true }),
  ];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    const pki = await writeDevPki(path.join(dir, 'pki'));
    const database = await benchDatabase(ctx, dir);
    cleanups.push(database.drop);
    const [port, adminPort] = await freePorts(2);
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.tmpdir(),
      HOST: '127.0.0.1',
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      TLS_CERT_FILE: pki.serverCert,
      TLS_KEY_FILE: pki.serverKey,
      TLS_CLIENT_CA_FILE: pki.caCert,
      LOG_LEVEL: 'warn',
      // Benchmarks measure throughput: per-client rate limits off (0).
      RATE_LIMIT_TOKENS_PER_MINUTE: '0',
      RATE_LIMIT_API_PER_SECOND: '0',
      // The load generator is one address holding up to 1,100 connections (1,000 idle long
      // polls): no per-address connection cap (HTTP_MAX_CONNECTIONS_PER_ADDRESS, default 256).
      HTTP_MAX_CONNECTIONS_PER_ADDRESS: '0',
      LOG_FORMAT: 'json',
      ...database.env,
      ...opts.env,
    };

    // The same V8 flag `npm start` and the ob-events command use (README: Operations, memory).
    const child = spawn(
      process.execPath,
      [...SERVE_FLAGS, ...(opts.nodeArgs ?? []), CLI, 'serve'],
      {
        env,
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr = (stderr + c).slice(-20_000);
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(killer);
      }
    });

    const adminUrl = `http://127.0.0.1:${adminPort}`;
    await waitUntilReady(adminUrl, exited, () => stderr, opts.startTimeoutMs ?? 60_000);
    const pid = child.pid!;
    return {
      url: `https://127.0.0.1:${port}`,
      adminUrl,
      publicUrl: loadConfig(env, ROOT).http.publicUrl,
      pid,
      env,
      pki,
      rssMb: () => rssMb(pid),
      cpuMs: () => processCpuMs(pid),
      postgresCpuMs: () => (database.name ? postgresCpuMs(database.name) : 0),
      withServices: (fn) => withServices(env, fn),
      stderr: () => stderr,
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function benchDatabase(
  ctx: BenchContext,
  dir: string,
): Promise<{ env: Record<string, string>; name?: string; drop: () => Promise<void> }> {
  if (!ctx.postgresAdminUrl) {
    return { env: { DATA_DIR: path.join(dir, 'data') }, drop: async () => {} };
  }
  const adminUrl = ctx.postgresAdminUrl;
  const name = `ob_bench_${randomBytes(6).toString('hex')}`;
  await withAdmin(adminUrl, (c) => c.query(`create database ${pg.escapeIdentifier(name)}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    env: { DATABASE_URL: url.toString() },
    name,
    drop: () =>
      withAdmin(adminUrl, (c) =>
        c.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`),
      ).then(() => undefined),
  };
}

async function withAdmin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Ports the OS reports free right now (bound on 127.0.0.1:0, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function waitUntilReady(
  adminUrl: string,
  exited: Promise<void>,
  stderr: () => string,
  timeoutMs: number,
): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`ob-events serve exited during start-up:\n${stderr()}`);
    try {
      const res = await fetch(`${adminUrl}/health/ready`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`ob-events serve was not ready within ${timeoutMs} ms:\n${stderr()}`);
}

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

// /proc/<pid>/task/<tid>/stat fields 14 and 15 (utime, stime) are in clock ticks (USER_HZ = 100).
export function processCpuMs(pid: number): { mainThread: number; otherThreads: number } {
  let mainThread = 0;
  let otherThreads = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ms = (Number(fields[11]) + Number(fields[12])) * 10;
    if (tid === String(pid)) mainThread += ms;
    else otherThreads += ms;
  }
  return { mainThread, otherThreads };
}

// Backends name their database in the process title: "postgres: 15/main: user db host(port) ...".
function postgresCpuMs(database: string): number {
  let total = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.startsWith('postgres:') || !cmdline.includes(` ${database} `)) continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) * 10;
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return total;
}

async function withServices<T>(
  env: Record<string, string>,
  fn: (services: Services) => Promise<T>,
): Promise<T> {
  const config = loadConfig(env, ROOT);
  const logger = silentLogger();
  const db = await openDatabase(config.database, logger);
  try {
    return await fn(buildServices(config, db, logger));
  } finally {
    await db.close();
  }
}
