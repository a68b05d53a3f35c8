// Runs the real CLI (`node bin/ob-events.js`, i.e. the compiled dist/) as a child process.
// `npm test` builds first; a bare `npx vitest` needs `npm run build` after changing src/.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestDatabase } from './db.js';
import { testEnv } from './server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'bin/ob-events.js');

export function requireBuild(): void {
  if (!fs.existsSync(path.join(ROOT, 'dist/src/cli/index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first (`npm test` does it)');
  }
}

/** A clean environment (nothing inherited but PATH and HOME) for the test database and PKI. */
export function cliEnv(
  db: TestDatabase | undefined,
  env: Record<string, string> = {},
): Record<string, string> {
  const base: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
  };
  const server = db ? testEnv(db) : {};
  return { ...base, ...server, LOG_LEVEL: 'warn', ...env };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `ob-events ...args` to completion (async: an embedded database in this process keeps serving). */
export function runCli(
  args: string[],
  opts: { env: Record<string, string>; cwd?: string; timeoutMs?: number },
): Promise<CliResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: opts.env,
      cwd: opts.cwd ?? ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ob-events ${args.join(' ')} timed out\n${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}

export interface ServeProcess {
  child: ChildProcess;
  /** Everything written to stderr so far (the JSON log lines with LOG_FORMAT=json). */
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface ListeningServe extends ServeProcess {
  apiPort: number;
  adminPort: number;
}

/** Spawns `ob-events serve` without waiting for anything. */
export function startServe(env: Record<string, string>, opts: { cwd?: string } = {}): ServeProcess {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env,
    cwd: opts.cwd ?? ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stdout.resume();
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stderr: () => err, exited };
}

/**
 * Spawns `ob-events serve` (give it LOG_FORMAT=json and LOG_LEVEL=info) and resolves once its
 * 'ob-events listening' log line names the bound ports (PORT=0 and ADMIN_PORT=0 work).
 */
export async function spawnServe(
  env: Record<string, string>,
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<ListeningServe> {
  const serve = startServe(env, opts);
  let exitedEarly = false;
  void serve.exited.then(() => (exitedEarly = true));
  try {
    const line = await waitForLog(
      serve,
      '"ob-events listening"',
      opts.timeoutMs ?? 60_000,
      () => exitedEarly,
    );
    const { api, admin } = JSON.parse(line) as { api: string; admin: string };
    return { ...serve, apiPort: Number(new URL(api).port), adminPort: Number(new URL(admin).port) };
  } catch (err) {
    serve.child.kill('SIGKILL');
    throw err;
  }
}

/** Waits until a stderr line of `serve` contains `text`; returns that line. */
export async function waitForLog(
  serve: ServeProcess,
  text: string,
  timeoutMs = 5_000,
  gaveUp: () => boolean = () => false,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = serve
      .stderr()
      .split('\n')
      .find((l) => l.includes(text));
    if (line) return line;
    if (gaveUp() || Date.now() > deadline) {
      throw new Error(`serve logged no line with ${text}:\n${serve.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
