// A fresh database per test file: a clone of the migrated template on the local Postgres, or,
// without Postgres, a copy of the migrated embedded PGlite directory.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import pg from 'pg';
import { describe, inject } from 'vitest';
import { createKnex, openDatabase, type Database } from '../../src/db/database.js';
import { silentLogger } from '../../src/logger.js';

export const postgresAvailable = inject('postgresAdminUrl') !== null;

/** A suite that needs a real Postgres server; skipped (and listed loudly) without one. */
export function describePostgres(name: string, fn: () => void): void {
  describe.skipIf(!postgresAvailable)(`${name} [needs Postgres]`, fn);
}

export interface TestDatabase {
  kind: 'postgres' | 'embedded';
  /** Environment for loadConfig: DATABASE_URL or DATA_DIR. */
  env: Record<string, string>;
  knex: Knex;
  /** Postgres only: the connection string. */
  url: string | undefined;
  drop(): Promise<void>;
}

/** Postgres when available (unless `embedded` is asked for), else embedded. */
export async function createTestDatabase(opts: { embedded?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = inject('postgresAdminUrl');
  const template = inject('postgresTemplate');
  if (!opts.embedded && adminUrl && template) return createPostgresDatabase(adminUrl, template);
  return createEmbeddedDatabase();
}

async function createPostgresDatabase(adminUrl: string, template: string): Promise<TestDatabase> {
  const name = `ob_test_${inject('runPid')}_${randomBytes(6).toString('hex')}`;
  await withAdmin(adminUrl, async (admin) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(
          `create database ${pg.escapeIdentifier(name)} template ${pg.escapeIdentifier(template)}`,
        );
        return;
      } catch (err) {
        // 55006: the template is momentarily in use by a concurrent CREATE DATABASE.
        if ((err as { code?: string }).code !== '55006' || attempt > 50) throw err;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
      }
    }
  });
  const url = databaseUrl(adminUrl, name);
  const knex = createKnex(url, 5, 'ob-events-test');
  return {
    kind: 'postgres',
    env: { DATABASE_URL: url },
    knex,
    url,
    drop: async () => {
      await knex.destroy();
      await withAdmin(adminUrl, (admin) =>
        admin.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`),
      );
    },
  };
}

async function createEmbeddedDatabase(): Promise<TestDatabase> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-pglite-'));
  fs.cpSync(inject('embeddedTemplateDir'), dir, { recursive: true });
  fs.rmSync(path.join(dir, 'ob-events.lock.json'), { force: true });
  const db: Database = await openDatabase(
    { url: undefined, dataDir: dir, poolMax: 5, migrateOnStart: false },
    silentLogger(),
  );
  return {
    kind: 'embedded',
    env: { DATA_DIR: dir },
    knex: db.knex,
    url: undefined,
    drop: async () => {
      await db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function databaseUrl(adminUrl: string, database: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

async function withAdmin<T>(adminUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}
