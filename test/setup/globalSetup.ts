// Runs once per `vitest run`: a test PKI, a migrated template database on the local Postgres
// (each test file clones it, which takes ~100 ms), and a migrated embedded PGlite directory for
// the suites that run on the embedded database. Without Postgres, says loudly what will not run.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { devPkiComplete, writeDevPki } from '../../src/crypto/devPki.js';
import { openDatabase } from '../../src/db/database.js';
import { createKnex } from '../../src/db/database.js';
import { migrateLatest } from '../../src/db/migrate.js';
import { silentLogger } from '../../src/logger.js';
import { checkObieConformance, skippedSummary } from './obieConformance.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TMP = path.join(ROOT, '.tmp');

declare module 'vitest' {
  export interface ProvidedContext {
    postgresAdminUrl: string | null;
    postgresTemplate: string | null;
    embeddedTemplateDir: string;
    pkiDir: string;
    runPid: number;
  }
}

export default async function setup(project: TestProject) {
  const obie = checkObieConformance(ROOT, process.env.CI === 'true');
  if (obie.error) throw new Error(obie.error);
  fs.mkdirSync(TMP, { recursive: true });
  const pkiDir = path.join(TMP, 'test-pki');
  if (!devPkiComplete(pkiDir)) await writeDevPki(pkiDir);
  project.provide('pkiDir', pkiDir);
  project.provide('runPid', process.pid);

  const hash = migrationsHash();
  project.provide('embeddedTemplateDir', await embeddedTemplate(hash));

  const adminUrl = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  if (await reachable(adminUrl)) {
    project.provide('postgresAdminUrl', adminUrl);
    project.provide('postgresTemplate', await postgresTemplate(adminUrl, hash));
  } else {
    project.provide('postgresAdminUrl', null);
    project.provide('postgresTemplate', null);
    const banner = '='.repeat(78);
    console.warn(
      `\n${banner}\nNO POSTGRES at ${redact(adminUrl)}: running on the embedded PGlite database only.\n` +
        `These suites need a real Postgres server and are SKIPPED:\n${postgresOnlySuites()
          .map((s) => `  - ${s}`)
          .join('\n')}\nStart Postgres (or set TEST_POSTGRES_URL) to run everything.\n${banner}\n`,
    );
  }
  // Teardown, after every test file: the skipped OBIE schema checks end the run's output.
  return () => {
    if (!obie.available) console.warn(skippedSummary(obie));
  };
}

function migrationsHash(): string {
  const h = createHash('sha256');
  const dir = path.join(ROOT, 'migrations');
  for (const f of fs.readdirSync(dir).sort())
    h.update(f).update(fs.readFileSync(path.join(dir, f)));
  return h.digest('hex').slice(0, 12);
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function postgresTemplate(adminUrl: string, hash: string): Promise<string> {
  const name = `ob_events_template_${hash}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    // Leftovers of runs that crashed before dropping their databases (named ob_test_<run pid>_...).
    const stale = await admin.query<{ datname: string }>(
      `select datname from pg_database where datname like 'ob\\_test\\_%'`,
    );
    for (const { datname } of stale.rows) {
      const pid = Number(/^ob_test_(\d+)_/.exec(datname)?.[1] ?? 0);
      if (pid > 0 && isAlive(pid)) continue;
      await admin
        .query(`drop database if exists ${pg.escapeIdentifier(datname)} with (force)`)
        .catch(() => {});
    }
    const exists = await admin.query('select 1 from pg_database where datname = $1', [name]);
    if (exists.rowCount === 0) {
      const building = `${name}_building`;
      await admin.query(`drop database if exists ${pg.escapeIdentifier(building)} with (force)`);
      await admin.query(`create database ${pg.escapeIdentifier(building)}`);
      const knex = createKnex(withDatabase(adminUrl, building), 2, 'ob-events-test-template');
      try {
        await migrateLatest(knex);
      } finally {
        await knex.destroy();
      }
      await admin.query(
        `alter database ${pg.escapeIdentifier(building)} rename to ${pg.escapeIdentifier(name)}`,
      );
      await admin.query(`alter database ${pg.escapeIdentifier(name)} is_template true`);
    }
  } finally {
    await admin.end();
  }
  return name;
}

async function embeddedTemplate(hash: string): Promise<string> {
  const dir = path.join(TMP, `pglite-template-${hash}`);
  if (fs.existsSync(path.join(dir, 'ready'))) return dir;
  fs.rmSync(dir, { recursive: true, force: true });
  const db = await openDatabase(
    { url: undefined, dataDir: dir, poolMax: 2, migrateOnStart: true },
    silentLogger(),
  );
  try {
    await migrateLatest(db.knex);
  } finally {
    await db.close();
  }
  fs.writeFileSync(path.join(dir, 'ready'), '');
  return dir;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

/** Test files that declare suites with `describePostgres` (see test/helpers/db.ts). */
function postgresOnlySuites(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.test.ts')) {
        for (const m of fs.readFileSync(p, 'utf8').matchAll(/describePostgres\(\s*'([^']+)'/g)) {
          found.push(`${path.relative(ROOT, p)}: ${m[1]}`);
        }
      }
    }
  };
  walk(path.join(ROOT, 'test'));
  return found;
}
