// The migrations, up and down, from an empty database, on real Postgres and on the embedded
// PGlite: every table and column documented, the named indexes there, rows in every table, and
// a full rollback that leaves nothing behind.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKnex, openDatabase, type Database } from '../src/db/database.js';
import {
  MIGRATIONS_TABLE,
  migrateLatest,
  migrateRollback,
  pendingMigrations,
} from '../src/db/migrate.js';
import { silentLogger } from '../src/logger.js';
import { migrations } from '../migrations/index.js';
import { databaseUrl, describePostgres } from './helpers/db.js';

const TABLES = [
  'clients',
  'signing_keys',
  'assertion_jtis',
  'event_subscriptions',
  'events',
  'event_deliveries',
  'event_outbox',
  'push_attempts',
  'push_breakers',
  'poll_handouts',
  'operator_audit',
  'operator_sessions',
  'push_workers',
  'admin_request_macs',
];

const NAMED_INDEXES: Record<string, string> = {
  event_deliveries_pending_client_idx: 'event_deliveries',
  event_deliveries_push_due_idx: 'event_deliveries',
  event_deliveries_resolved_at_idx: 'event_deliveries',
  assertion_jtis_expires_at_idx: 'assertion_jtis',
  signing_keys_one_active_uidx: 'signing_keys',
  event_subscriptions_client_uidx: 'event_subscriptions',
  events_client_idempotency_key_uidx: 'events',
  event_outbox_new_idx: 'event_outbox',
  push_attempts_pkey: 'push_attempts',
  admin_request_macs_expires_at_idx: 'admin_request_macs',
};

/** Tables of the public schema other than knex's own bookkeeping. */
async function appTables(knex: Knex): Promise<string[]> {
  const { rows } = await knex.raw<{ rows: { relname: string }[] }>(
    `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p')
        and c.relname not in (?, ?)
      order by c.relname`,
    [MIGRATIONS_TABLE, `${MIGRATIONS_TABLE}_lock`],
  );
  return rows.map((r) => r.relname);
}

async function tablesWithoutComment(knex: Knex): Promise<string[]> {
  const tables = await appTables(knex);
  const { rows } = await knex.raw<{ rows: { relname: string }[] }>(
    `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relname = any(?::text[])
        and coalesce(obj_description(c.oid, 'pg_class'), '') = ''`,
    [tables],
  );
  return rows.map((r) => r.relname);
}

async function columnsWithoutComment(knex: Knex): Promise<string[]> {
  const tables = await appTables(knex);
  const { rows } = await knex.raw<{ rows: { col: string }[] }>(
    `select c.relname || '.' || a.attname as col
       from pg_attribute a
       join pg_class c on c.oid = a.attrelid
       join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relname = any(?::text[])
        and a.attnum > 0 and not a.attisdropped
        and coalesce(col_description(c.oid, a.attnum), '') = ''
      order by 1`,
    [tables],
  );
  return rows.map((r) => r.col);
}

async function indexes(knex: Knex): Promise<Map<string, { table: string; def: string }>> {
  const { rows } = await knex.raw<{
    rows: { indexname: string; tablename: string; indexdef: string }[];
  }>(`select indexname, tablename, indexdef from pg_indexes where schemaname = 'public'`);
  return new Map(rows.map((r) => [r.indexname, { table: r.tablename, def: r.indexdef }]));
}

/** One row in every table of the data model, through plain SQL (no store code). */
async function insertOneOfEach(knex: Knex): Promise<void> {
  const jwks = { keys: [{ kty: 'RSA', kid: 'k1', n: 'AQAB', e: 'AQAB' }] };
  await knex('clients').insert({
    client_id: 'tpp-1',
    name: 'TPP one',
    auth_method: 'tls_client_auth',
    jwks: JSON.stringify(jwks),
    tls_subject_dn: 'CN=tpp-1,O=Example',
    scopes: ['accounts', 'eventpolling'],
    signing_iss: 'tpp-1',
  });
  await knex('signing_keys').insert({
    kid: 'kid-1',
    alg: 'PS256',
    public_jwk: JSON.stringify({ kty: 'RSA', kid: 'kid-1', n: 'AQAB', e: 'AQAB' }),
    private_key: '{"kty":"RSA"}',
    source: 'generated',
    status: 'active',
    activated_at: knex.fn.now(),
  });
  await knex('assertion_jtis').insert({
    client_id: 'tpp-1',
    jti: randomUUID(),
    expires_at: new Date(Date.now() + 60_000),
  });
  await knex('event_subscriptions').insert({
    subscription_id: randomUUID(),
    client_id: 'tpp-1',
    callback_url: 'https://tpp.example/3.1/event-notifications',
    version: '3.1.11',
    event_types: ['UK.OBIE.Resource.Update'],
  });
  const jti = randomUUID();
  await knex('events').insert({
    jti,
    client_id: 'tpp-1',
    event_types: ['UK.OBIE.Resource.Update'],
    subject_id: 'acc-1',
    subject_type: 'account',
    txn: jti,
    kid: 'kid-1',
    set_jws: 'eyJ.eyJ.sig',
  });
  await knex('event_deliveries').insert({ jti, client_id: 'tpp-1', push_state: 'due' });
  await knex('push_attempts').insert({
    jti,
    attempt: 1,
    attempted_at: new Date(),
    worker: 'test:1:1',
    callback_url: 'https://tpp.example/3.1/event-notifications',
    interaction_id: randomUUID(),
    status_code: 503,
    latency_ms: 12,
    outcome: 'retry',
  });
  await knex('push_breakers').insert({
    client_id: 'tpp-1',
    callback_url: 'https://tpp.example/3.1/event-notifications',
    open_until: new Date(Date.now() + 30_000),
  });
  await knex('push_workers').insert({
    worker: 'test:1:1',
    seen_at: new Date(),
    connected_since: new Date(),
  });
  await knex('event_outbox').insert({
    event: JSON.stringify({ clientId: 'tpp-1', type: 'UK.OBIE.Resource.Update' }),
  });
  await knex('poll_handouts').insert({
    jti,
    client_id: 'tpp-1',
    lease_until: new Date(Date.now() + 30_000),
    replica: 'test:1',
  });
  await knex('operator_audit').insert({ actor: 'alice', via: 'cli', action: 'replay', jti });
  await knex('operator_sessions').insert({
    token_hash: 'a'.repeat(64),
    operator: 'alice',
    csrf_token: 'b'.repeat(43),
    expires_at: new Date(Date.now() + 3_600_000),
  });
  await knex('event_deliveries').where({ jti }).update({
    state: 'discarded',
    resolved_at: new Date(),
    resolution: 'purged',
  });
  await knex('metric_totals').insert({ metric: 'sets_deleted', label: 'ack', value: 1 });
  await knex('admin_request_macs').insert({
    mac: Buffer.alloc(32, 7),
    expires_at: new Date(Date.now() + 300_000),
  });
}

/** Functions and triggers of our own in the public schema (migrations must drop theirs). */
async function routinesAndTriggers(knex: Knex): Promise<string[]> {
  const { rows } = await knex.raw<{ rows: { name: string }[] }>(
    `select p.proname as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'public'
     union all
     select t.tgname from pg_trigger t where not t.tgisinternal`,
  );
  return rows.map((r) => r.name);
}

/** The whole round trip, on whatever empty database `knex` points at. */
function migrationSuite(open: () => Promise<{ knex: Knex; close(): Promise<void> }>) {
  let db: { knex: Knex; close(): Promise<void> };

  beforeAll(async () => {
    db = await open();
  });
  afterAll(async () => {
    await db?.close();
  });

  it('when the database is empty, then every migration is pending and there are no tables', async () => {
    expect(await pendingMigrations(db.knex)).toEqual(migrations.map((m) => m.name));
    expect(await appTables(db.knex)).toEqual([]);
    expect(await routinesAndTriggers(db.knex)).toEqual([]);
  });

  it('when migrated to the latest, then every table of the data model exists and nothing is pending', async () => {
    const applied = await migrateLatest(db.knex);
    expect(applied).toEqual(migrations.map((m) => m.name));
    expect(await appTables(db.knex)).toEqual(expect.arrayContaining(TABLES));
    expect(await pendingMigrations(db.knex)).toEqual([]);
  });

  it('when migrated, then every table and every column has a comment', async () => {
    expect(await tablesWithoutComment(db.knex)).toEqual([]);
    expect(await columnsWithoutComment(db.knex)).toEqual([]);
  });

  it('when migrated, then the named indexes exist on their tables', async () => {
    const found = await indexes(db.knex);
    for (const [name, table] of Object.entries(NAMED_INDEXES)) {
      expect(found.get(name)?.table, name).toBe(table);
    }
    // The index behind "next pending SETs of one client in creation order".
    expect(found.get('event_deliveries_pending_client_idx')?.def).toMatch(
      /\(client_id, jti\) WHERE \(state = 'pending'::text\)/,
    );
  });

  it('when a row goes into every table, then the constraints accept it and no table is left empty', async () => {
    await insertOneOfEach(db.knex);
    for (const table of await appTables(db.knex)) {
      const [row] = await db.knex(table).count<{ count: number }[]>({ count: '*' });
      // A new table needs a row in insertOneOfEach (and so a rollback test with data in it).
      expect(Number(row?.count), `rows in ${table}`).toBeGreaterThan(0);
    }
  });

  it('when a delivery points at an event that does not exist, then the foreign key refuses it', async () => {
    await expect(
      db.knex('event_deliveries').insert({ jti: randomUUID(), client_id: 'tpp-1' }),
    ).rejects.toThrow(/foreign key/);
  });

  it('when rolled back entirely with rows present, then every table is gone and migrations are pending again', async () => {
    const reverted = await migrateRollback(db.knex, true);
    expect(reverted.sort()).toEqual(migrations.map((m) => m.name).sort());
    expect(await appTables(db.knex)).toEqual([]);
    expect(await routinesAndTriggers(db.knex)).toEqual([]);
    expect(await pendingMigrations(db.knex)).toEqual(migrations.map((m) => m.name));
  });

  it('when migrated again after the rollback, then the schema comes back complete', async () => {
    expect(await migrateLatest(db.knex)).toEqual(migrations.map((m) => m.name));
    expect(await appTables(db.knex)).toEqual(expect.arrayContaining(TABLES));
    expect(await pendingMigrations(db.knex)).toEqual([]);
    expect(await columnsWithoutComment(db.knex)).toEqual([]);
    await insertOneOfEach(db.knex);
  });
}

describePostgres('migrations on Postgres', () => {
  const adminUrl = inject('postgresAdminUrl') ?? '';
  const name = `ob_test_${inject('runPid')}_migrations_${process.pid}`;

  migrationSuite(async () => {
    // An empty database (not a clone of the migrated template).
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
      await admin.query(`create database ${pg.escapeIdentifier(name)}`);
    } finally {
      await admin.end();
    }
    const knex = createKnex(databaseUrl(adminUrl, name), 2, 'ob-events-test');
    return {
      knex,
      close: async () => {
        await knex.destroy();
        const drop = new pg.Client({ connectionString: adminUrl });
        await drop.connect();
        await drop.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
        await drop.end();
      },
    };
  });
});

describe('migrations on the embedded PGlite', () => {
  migrationSuite(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-migrations-'));
    const db: Database = await openDatabase(
      { url: undefined, dataDir: dir, poolMax: 2, migrateOnStart: false },
      silentLogger(),
    );
    return {
      knex: db.knex,
      close: async () => {
        await db.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  });
});
