// Knex migrations from the explicit list in migrations/index.ts.
import type { Knex } from 'knex';
import { migrations, type Migration } from '../../migrations/index.js';

export const MIGRATIONS_TABLE = 'knex_migrations';

class ListMigrationSource implements Knex.MigrationSource<Migration> {
  getMigrations(): Promise<Migration[]> {
    return Promise.resolve([...migrations]);
  }
  getMigrationName(m: Migration): string {
    return m.name;
  }
  getMigration(m: Migration): Promise<Knex.Migration> {
    return Promise.resolve({ up: m.up, down: m.down });
  }
}

export function migratorConfig(): Knex.MigratorConfig {
  return { migrationSource: new ListMigrationSource(), tableName: MIGRATIONS_TABLE };
}

/** Applies pending migrations; returns the names applied. */
export async function migrateLatest(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest(migratorConfig())) as [number, string[]];
  return applied;
}

/** Reverts the last batch; returns the names reverted. */
export async function migrateRollback(knex: Knex, all = false): Promise<string[]> {
  const [, reverted] = (await knex.migrate.rollback(migratorConfig(), all)) as [number, string[]];
  return reverted;
}

/** Names of migrations not yet applied (empty when the schema is current). */
export async function pendingMigrations(knex: Knex): Promise<string[]> {
  const [, pending] = (await knex.migrate.list(migratorConfig())) as [unknown[], Migration[]];
  return pending.map((m) => m.name);
}
