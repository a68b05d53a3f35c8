// Autovacuum tuned for queue-like churn. The defaults (vacuum at 20% dead rows, cost limit 200)
// suit slowly changing tables; event_deliveries has every row updated twice or more (lease, ack,
// push state) within seconds of its insert, and the outbox and assertion jtis are insert-then-
// delete queues: at the default 20% a million-row table carries 200,000 dead tuples before a
// vacuum starts, and the scans of the hot claim and poll queries slow down with them. These
// per-table storage parameters start vacuums early and let them run faster; they take effect
// wherever autovacuum is on (banks run it on; a cluster with autovacuum off ignores them).
// `IF EXISTS`: a table another migration renames or drops does not break this one.
import type { Knex } from 'knex';

export const name = '20261201111000_autovacuum';

/** Storage parameters per table; `down` resets exactly these names. */
const SETTINGS: Record<string, Record<string, number>> = {
  // Updated in place on every lease/ack/push outcome: vacuum after 1% (+1,000) dead rows, room
  // on each page for HOT updates (narrow rows, so 85% fill loses little).
  event_deliveries: {
    fillfactor: 85,
    autovacuum_vacuum_scale_factor: 0.01,
    autovacuum_vacuum_threshold: 1000,
    autovacuum_vacuum_insert_scale_factor: 0.02,
    autovacuum_analyze_scale_factor: 0.02,
    autovacuum_vacuum_cost_limit: 2000,
    autovacuum_vacuum_cost_delay: 1,
  },
  // Written once, deleted by retention in batches: vacuum the deletions and keep the visibility
  // map current for index-only scans.
  events: {
    autovacuum_vacuum_scale_factor: 0.02,
    autovacuum_vacuum_threshold: 1000,
    autovacuum_vacuum_insert_scale_factor: 0.05,
    autovacuum_analyze_scale_factor: 0.05,
    autovacuum_vacuum_cost_limit: 2000,
  },
  // Insert, then delete: a queue.
  event_outbox: {
    autovacuum_vacuum_scale_factor: 0.01,
    autovacuum_vacuum_threshold: 500,
    autovacuum_vacuum_cost_limit: 2000,
    autovacuum_vacuum_cost_delay: 1,
  },
  push_attempts: {
    autovacuum_vacuum_scale_factor: 0.02,
    autovacuum_vacuum_threshold: 1000,
    autovacuum_vacuum_insert_scale_factor: 0.05,
    autovacuum_vacuum_cost_limit: 2000,
  },
  // A handful of rows updated on every breaker change: vacuum after a few dozen dead versions.
  push_breakers: {
    autovacuum_vacuum_scale_factor: 0,
    autovacuum_vacuum_threshold: 50,
    autovacuum_analyze_threshold: 50,
  },
  // Insert on every token request, deleted after expiry by the purge task.
  assertion_jtis: {
    autovacuum_vacuum_scale_factor: 0.02,
    autovacuum_vacuum_threshold: 1000,
    autovacuum_vacuum_insert_scale_factor: 0.05,
    autovacuum_vacuum_cost_limit: 2000,
  },
};

export async function up(knex: Knex): Promise<void> {
  for (const [table, params] of Object.entries(SETTINGS)) {
    const list = Object.entries(params)
      .map(([k, v]) => `${k} = ${v}`)
      .join(', ');
    await knex.raw(`ALTER TABLE IF EXISTS ${table} SET (${list})`);
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const [table, params] of Object.entries(SETTINGS)) {
    await knex.raw(`ALTER TABLE IF EXISTS ${table} RESET (${Object.keys(params).join(', ')})`);
  }
}
