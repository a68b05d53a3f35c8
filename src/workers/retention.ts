// Housekeeping on a timer: resolved SETs and finished outbox rows older than
// EVENT_RETENTION_DAYS are deleted in bounded batches (no long locks, no huge transactions), and
// signing keys past their overlap that no pending SET needs leave /jwks.
import type { Knex } from 'knex';
import type { Clock } from '../clock.js';
import { EventsStore } from '../db/stores/eventsStore.js';
import type { KeyRing } from '../domain/signingKeys.js';
import type { Logger } from '../logger.js';

const BATCH = 1_000;
const MAX_BATCHES_PER_RUN = 100;

export interface RetentionDeps {
  knex: Knex;
  keys: KeyRing;
  clock: Clock;
  logger: Logger;
  retentionDays: number;
}

export async function runRetention(
  deps: RetentionDeps,
): Promise<{ events: number; outbox: number; keys: string[] }> {
  const cutoff = new Date(deps.clock.now() - deps.retentionDays * 86_400_000);
  const events = EventsStore.create(deps.knex);
  let deletedEvents = 0;
  for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
    const n = await events.deleteResolvedBefore(cutoff, BATCH);
    deletedEvents += n;
    if (n < BATCH) break;
  }
  let deletedOutbox = 0;
  for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
    const { rowCount } = await deps.knex.raw<{ rowCount: number }>(
      `DELETE FROM event_outbox WHERE id IN (
         SELECT id FROM event_outbox WHERE state IN ('done', 'skipped') AND processed_at < :cutoff
          ORDER BY processed_at LIMIT :limit)`,
      { cutoff, limit: BATCH },
    );
    deletedOutbox += rowCount;
    if (rowCount < BATCH) break;
  }
  const keys = await deps.keys.retireExpired();
  if (deletedEvents + deletedOutbox + keys.length > 0) {
    deps.logger.info(
      { events: deletedEvents, outbox: deletedOutbox, retiredKeys: keys },
      'retention',
    );
  }
  return { events: deletedEvents, outbox: deletedOutbox, keys };
}
