// The CLI traps of issue 15, each with the test that failed on the old code: run from another
// folder (or without the server's DATABASE_URL / DATA_DIR) a command silently created and used
// an empty database; it never said which database it used; publishing to an unknown client
// printed "skipped" and exited 0; there was no --version. The real compiled CLI, spawned.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cliEnv, requireBuild, runCli, type CliResult } from './helpers/cli.js';
import {
  createTestDatabase,
  databaseUrl,
  describePostgres,
  type TestDatabase,
} from './helpers/db.js';
import { readPki } from './helpers/server.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/** The `database: ...` log line every database-using command writes first. */
function databaseLine(r: CliResult): string | undefined {
  for (const line of r.stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const log = JSON.parse(line) as { database?: unknown };
    if (typeof log.database === 'string') return log.database;
  }
  return undefined;
}

/** The one `ob-events: ...` line of a refused command (besides JSON log lines). */
function refusal(r: CliResult): string {
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^ob-events: /);
  return lines[0]!;
}

describe('CLI guards', () => {
  let db: TestDatabase;
  let tmp: string;
  const pki = readPki();
  const ob = (args: string[], env: Record<string, string> = {}) =>
    runCli(args, { env: cliEnv(db, env), cwd: tmp });

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-cli-guards-'));
  });
  afterAll(async () => {
    await db?.drop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('which database', () => {
    it('when a command opens the database, then stderr names it (and stdout stays JSON)', async () => {
      const r = await ob(['clients', 'list']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual([]);
      const named = databaseLine(r);
      if (db.kind === 'postgres') expect(named).toBe(db.url);
      else expect(named).toBe(`embedded PGlite in ${db.env.DATA_DIR}`);
    });

    it('when LOG_FORMAT=pretty and LOG_LEVEL is unset, then the line is still there, readable', async () => {
      const env = cliEnv(db, { LOG_FORMAT: 'pretty' });
      delete env.LOG_LEVEL;
      const r = await runCli(['keys', 'list'], { env, cwd: tmp });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/INFO.*database: /);
    });

    it('when the database cannot be reached, then stderr has already said which one', async () => {
      const r = await ob(['clients', 'list'], {
        DATABASE_URL: 'postgres://postgres@127.0.0.1:1/elsewhere',
      });
      expect(refusal(r)).toMatch(/ECONNREFUSED/);
      expect(databaseLine(r)).toBe('postgres://postgres@127.0.0.1:1/elsewhere');
    });

    it('when DATABASE_URL carries a password, then the named URL does not', async () => {
      const r = await ob(['clients', 'list'], {
        DATABASE_URL: 'postgres://postgres:s3cret-pw@127.0.0.1:1/elsewhere?password=s3cret-pw',
      });
      expect(r.code).not.toBe(0);
      expect(databaseLine(r)).toBe('postgres://postgres@127.0.0.1:1/elsewhere');
      expect(r.stderr).not.toContain('s3cret-pw');
    });

    it('when `migrate` runs, then it names the database too', async () => {
      const r = await ob(['migrate']);
      expect(r.code, r.stderr).toBe(0);
      expect(databaseLine(r)).toBeDefined();
    });
  });

  describe('no new embedded database, except by serve and migrate', () => {
    const commands: [string, string[]][] = [
      ['clients list', ['clients', 'list']],
      ['clients add', ['clients', 'add', '--client-id', 'x', '--jwks', pki.tppJwksPath]],
      [
        'events publish',
        [
          ...['events', 'publish', '--client-id', 'demo-tpp', '--type', 'UK.OBIE.Resource-Update'],
          ...['--subject-id', 'p1', '--subject-type', 'domestic-payment'],
        ],
      ],
      ['keys rotate', ['keys', 'rotate']],
      ['deliveries list', ['deliveries', 'list']],
      ['worker', ['worker']],
    ];
    for (const [name, args] of commands) {
      it(`when \`${name}\` runs in a folder with no database, then it refuses, names the folder and the way out, and creates nothing`, async () => {
        const cwd = fs.mkdtempSync(path.join(tmp, 'elsewhere-'));
        const env = cliEnv(undefined, { LOG_FORMAT: 'json' }); // no DATABASE_URL, no DATA_DIR
        const r = await runCli(args, { env, cwd });
        const line = refusal(r);
        const dataDir = path.join(fs.realpathSync(cwd), '.data');
        expect(line).toContain(`no database in ${dataDir}`);
        expect(line).toMatch(/DATABASE_URL/);
        expect(line).toMatch(/DATA_DIR/);
        expect(databaseLine(r)).toBe(`embedded PGlite in ${dataDir}`);
        expect(fs.existsSync(path.join(dataDir, 'pgdata'))).toBe(false);
      });
    }

    it('when DATA_DIR names an embedded database that exists, then commands use it', async () => {
      const dir = fs.mkdtempSync(path.join(tmp, 'pglite-'));
      fs.cpSync(inject('embeddedTemplateDir'), dir, { recursive: true });
      fs.rmSync(path.join(dir, 'ob-events.lock.json'), { force: true });
      const env = cliEnv(undefined, { LOG_FORMAT: 'json', DATA_DIR: dir });
      const r = await runCli(['clients', 'list'], { env, cwd: tmp });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual([]);
      expect(databaseLine(r)).toBe(`embedded PGlite in ${dir}`);
    });
  });

  describePostgres('a Postgres database that was never migrated', () => {
    const name = `ob_test_${inject('runPid')}_unmigrated_${process.pid}`;
    let url: string;
    const admin = () => new pg.Client({ connectionString: inject('postgresAdminUrl')! });
    beforeAll(async () => {
      const c = admin();
      await c.connect();
      await c.query(`create database ${pg.escapeIdentifier(name)}`);
      await c.end();
      url = databaseUrl(inject('postgresAdminUrl')!, name);
    });
    afterAll(async () => {
      const c = admin();
      await c.connect();
      await c.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
      await c.end();
    });

    it('when a command other than migrate points at it, then it refuses and leaves it empty', async () => {
      const line = refusal(await ob(['clients', 'list'], { DATABASE_URL: url }));
      expect(line).toContain(`${url} has no ob-events schema`);
      expect(line).toMatch(/ob-events migrate/);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      const { rows } = await c.query(
        `select count(*)::int as n from information_schema.tables where table_schema = 'public'`,
      );
      await c.end();
      expect(rows[0]).toEqual({ n: 0 });
    });
  });

  describe('events publish', () => {
    const publish = (clientId: string, extra: string[] = []) =>
      ob([
        ...['events', 'publish', '--client-id', clientId, '--type', 'UK.OBIE.Resource-Update'],
        ...['--subject-id', 'pmt-1', '--subject-type', 'domestic-payment', ...extra],
      ]);

    it('when the client id is unknown, then it exits non-zero naming it and the database, and stores nothing', async () => {
      const line = refusal(await publish('no-such-tpp'));
      expect(line).toMatch(/no client no-such-tpp in /);
      expect(line).toMatch(/clients list/);
      expect(await db.knex('events').count({ n: '*' })).toEqual([{ n: 0 }]);
    });

    it('when the client exists without a subscription, then the event is skipped and it exits 0', async () => {
      const add = await ob([
        'clients',
        'add',
        '--client-id',
        'unsubscribed',
        '--jwks',
        pki.tppJwksPath,
      ]);
      expect(add.code, add.stderr).toBe(0);
      const r = await publish('unsubscribed');
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({
        jti: null,
        status: 'skipped',
        reason: 'client has no event subscription',
      });
    });

    it('when --version follows the command, then it is the API version of the link, not ours', async () => {
      const r = await publish('unsubscribed', ['--version', 'v3.1.11']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ status: 'skipped' });
    });
  });

  describe('--version', () => {
    it('when asked for --version (or -V), then it prints the package version and nothing else', async () => {
      const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
        version: string;
      };
      for (const flag of ['--version', '-V']) {
        const r = await ob([flag]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toBe(`${version}\n`);
        expect(r.stderr).toBe('');
      }
    });
  });
});
