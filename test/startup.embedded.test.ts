// Smoke test of `npm start` with nothing configured: `ob-events serve` in an empty directory makes
// its dev PKI and embedded database there, says so, serves mTLS, shares its database with CLI
// commands run beside it, and cleans up on SIGTERM.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../migrations/index.js';
import {
  requireBuild,
  runCli,
  spawnServe,
  waitForLog,
  type ListeningServe,
} from './helpers/cli.js';
import { call, mtlsAgent } from './helpers/http.js';
import { expectObieShape } from './helpers/obieSchema.js';

const LOCK_FILE = 'ob-events.lock.json';

/** Only what `npm start` on a bare machine has, plus port 0 so that runs never collide. */
function bareEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    PORT: '0',
    ADMIN_PORT: '0',
    LOG_LEVEL: 'info',
    LOG_FORMAT: 'json',
    ...extra,
  };
}

async function readyStatus(adminPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/health/ready`);
  await res.body?.cancel();
  return res.status;
}

describe('ob-events serve with nothing configured (embedded database, dev PKI)', () => {
  let cwd: string;
  let serve: ListeningServe;

  beforeAll(async () => {
    requireBuild();
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-start-'));
    serve = await spawnServe(bareEnv(), { cwd });
  });
  afterAll(() => {
    serve?.child.kill('SIGKILL');
    if (cwd) fs.rmSync(cwd, { recursive: true, force: true });
  });

  it('when it starts in an empty directory, then it writes the dev PKI and the database there', () => {
    for (const f of ['ca.crt', 'server.crt', 'server.key', 'tpp.crt', 'tpp.key', 'tpp.jwks.json']) {
      expect(fs.existsSync(path.join(cwd, 'certs/dev', f)), f).toBe(true);
    }
    expect(fs.existsSync(path.join(cwd, '.data', LOCK_FILE))).toBe(true);
  });

  it('when it starts with defaults, then the log says loudly which development defaults are in use', async () => {
    const line = await waitForLog(serve, 'DEVELOPMENT DEFAULTS IN USE');
    const log = serve.stderr();
    expect(log).toContain('created a development PKI');
    const { defaults } = JSON.parse(line) as { defaults: string[] };
    expect(defaults.join('\n')).toContain(`embedded PGlite database in ${path.join(cwd, '.data')}`);
    expect(defaults.join('\n')).toContain(`development PKI in ${path.join(cwd, 'certs/dev')}`);
    expect(log).toContain('"database":"embedded"');
  });

  it('when it is up, then /health/ready answers 200', async () => {
    expect(await readyStatus(serve.adminPort)).toBe(200);
  });

  it('when a TPP presents the generated certs/dev/tpp.crt, then it reaches the app (404 OBErrorResponse1)', async () => {
    const read = (f: string) => fs.readFileSync(path.join(cwd, 'certs/dev', f), 'utf8');
    const tpp = mtlsAgent({ ca: read('ca.crt'), cert: read('tpp.crt'), key: read('tpp.key') });
    try {
      const res = await call(tpp, `https://127.0.0.1:${serve.apiPort}/open-banking/nothing-here`);
      expect(res.status).toBe(404);
      expectObieShape('OBErrorResponse1', res.json());
    } finally {
      await tpp.close();
    }
  });

  it('when a client presents no certificate, then the handshake fails', async () => {
    const ca = fs.readFileSync(path.join(cwd, 'certs/dev/ca.crt'), 'utf8');
    const anonymous = mtlsAgent({ ca });
    try {
      await expect(call(anonymous, `https://127.0.0.1:${serve.apiPort}/x`)).rejects.toThrow();
    } finally {
      await anonymous.close();
    }
  });

  it('when `clients add` and `clients list` run beside it, then they use its embedded database', async () => {
    const env = bareEnv({ LOG_LEVEL: 'warn' });
    const add = await runCli(
      ['clients', 'add', '--client-id', 'demo-tpp', '--jwks', 'certs/dev/tpp.jwks.json'],
      { env, cwd },
    );
    expect(add.code, add.stderr).toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({ client_id: 'demo-tpp', status: 'active' });
    const list = await runCli(['clients', 'list'], { env, cwd });
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { client_id: string }[]).map((c) => c.client_id)).toEqual([
      'demo-tpp',
    ]);
    // The server still owns the database (the CLI did not take it over).
    const lock = JSON.parse(fs.readFileSync(path.join(cwd, '.data', LOCK_FILE), 'utf8')) as {
      pid: number;
    };
    expect(lock.pid).toBe(serve.child.pid);
  });

  it('when it receives SIGTERM, then it exits 0 and removes the lock file', async () => {
    serve.child.kill('SIGTERM');
    const { code } = await serve.exited;
    expect(code, serve.stderr()).toBe(0);
    expect(fs.existsSync(path.join(cwd, '.data', LOCK_FILE))).toBe(false);
    expect(fs.existsSync(path.join(cwd, '.data'))).toBe(true);
  });

  it('when MIGRATE_ON_START=false on an empty database, then /health/ready is 503 until `migrate` runs', async () => {
    const env = bareEnv({ DATA_DIR: '.data-unmigrated', MIGRATE_ON_START: 'false' });
    const pending = await spawnServe(env, { cwd });
    try {
      await waitForLog(pending, 'migrations pending');
      const res = await fetch(`http://127.0.0.1:${pending.adminPort}/health/ready`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { checks: { migrations: { ok: boolean } } };
      expect(body.checks.migrations.ok).toBe(false);

      const migrate = await runCli(['migrate'], { env: { ...env, LOG_LEVEL: 'warn' }, cwd });
      expect(migrate.code, migrate.stderr).toBe(0);
      expect(JSON.parse(migrate.stdout)).toEqual({ applied: migrations.map((m) => m.name) });
      expect(await readyStatus(pending.adminPort)).toBe(200);

      pending.child.kill('SIGTERM');
      expect((await pending.exited).code).toBe(0);
      expect(fs.existsSync(path.join(cwd, '.data-unmigrated', LOCK_FILE))).toBe(false);
    } finally {
      pending.child.kill('SIGKILL');
    }
  });
});
