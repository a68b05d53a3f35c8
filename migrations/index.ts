// Every migration, in order. Listed explicitly (rather than scanned from the folder) so the same
// code runs from TypeScript sources in tests and from the compiled output in production.
import type { Knex } from 'knex';
import * as initial from './20261123000001_initial.js';
import * as outbox from './20261123000002_outbox.js';
import * as push from './20261123000003_push.js';
import * as pushReliability from './20261201110000_push_reliability.js';
import * as autovacuum from './20261201111000_autovacuum.js';
import * as clientTransportIdentity from './20261201120000_client_transport_identity.js';
import * as adminReplayAndRetiredKeys from './20261201122000_admin_replay_and_retired_keys.js';
import * as clientLifecycle from './20261201140000_client_lifecycle.js';
import * as operations from './20261201151000_operations.js';
import * as subscriptionApiVersion from './20261201130000_subscription_api_version.js';
import * as metricTotals from './20261201150000_metric_totals.js';
import * as pollCandidates from './20261202100000_poll_candidates.js';

export interface Migration {
  name: string;
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

export const migrations: readonly Migration[] = [
  initial,
  outbox,
  push,
  pushReliability,
  autovacuum,
  clientTransportIdentity,
  adminReplayAndRetiredKeys,
  subscriptionApiVersion,
  clientLifecycle,
  metricTotals,
  operations,
  pollCandidates,
];
