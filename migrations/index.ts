// Every migration, in order. Listed explicitly (rather than scanned from the folder) so the same
// code runs from TypeScript sources in tests and from the compiled output in production.
import type { Knex } from 'knex';
import * as initial from './20261123000001_initial.js';
import * as outbox from './20261123000002_outbox.js';
import * as push from './20261123000003_push.js';
import * as autovacuum from './20261201111000_autovacuum.js';

export interface Migration {
  name: string;
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

export const migrations: readonly Migration[] = [initial, outbox, push, autovacuum];
