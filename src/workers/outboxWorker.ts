// Publishes rows the bank's own transactions put in event_outbox. A batch is claimed with
// FOR UPDATE SKIP LOCKED, published and marked in ONE transaction, so any number of workers
// (replicas) share the table and no row is published twice. NOTIFY from the insert trigger wakes
// the worker; a slow sweep is the safety net. A row that cannot be published is marked failed
// with the reason: invalid at once, an unexpected error after MAX_ATTEMPTS tries alone.
import type { Knex } from 'knex';
import { CHANNELS, type Notifier } from '../db/notifier.js';
import { parseEventInput, type EventInput } from '../domain/eventInput.js';
import type { Publisher, PublishOutcome } from '../domain/publishing.js';
import type { ActiveKey } from '../domain/signingKeys.js';
import type { Logger } from '../logger.js';
import { isDatabaseUnavailable } from '../db/outage.js';
import { ServiceUnavailableError } from '../errors.js';

const MAX_ATTEMPTS = 3;

export interface OutboxWorkerDeps {
  knex: Knex;
  publisher: Publisher;
  notifier: Notifier;
  logger: Logger;
  batchSize?: number;
  sweepMs?: number;
}

interface OutboxRow {
  id: number;
  event: unknown;
}

interface RowResult {
  id: number;
  state: 'done' | 'skipped' | 'failed';
  jti: string | null;
  error: string | null;
}

export class OutboxWorker {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;
  private readonly batchSize: number;
  /** Set while the database or the signing workers are unavailable (logged once). */
  private paused = false;

  constructor(private readonly deps: OutboxWorkerDeps) {
    this.batchSize = deps.batchSize ?? 100;
  }

  async start(): Promise<void> {
    this.unlisten = await this.deps.notifier.listen(CHANNELS.outbox, () => this.wake());
    this.deps.notifier.onResync(() => this.wake());
    this.timer = setInterval(() => this.wake(), this.deps.sweepMs ?? 5_000);
    this.timer.unref();
    this.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.unlisten?.();
    await this.running;
  }

  /** Publishes everything waiting now; resolves when the table has no claimable rows. */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.processBatch();
      total += n;
      if (n < this.batchSize || this.stopped) return total;
    }
  }

  private wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .then(
        () => {
          if (this.paused) this.deps.logger.info('outbox worker resumed');
          this.paused = false;
        },
        (err: unknown) => {
          if (!isTransient(err)) this.deps.logger.error({ err }, 'outbox worker failed');
          else if (!this.paused) {
            // Once per outage: the sweep retries every few seconds until it passes.
            this.paused = true;
            this.deps.logger.warn(
              { reason: (err as Error).message.split(' - ').pop() },
              'outbox worker paused: database or signing unavailable; retrying',
            );
          }
        },
      )
      .then(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /** One claimed batch; returns how many rows it finished. */
  private async processBatch(): Promise<number> {
    try {
      return await this.publishClaimed(this.batchSize);
    } catch (err) {
      if (isTransient(err)) throw err; // not a bad row: the whole batch waits for the next sweep
      this.deps.logger.warn({ err }, 'outbox batch failed; publishing its rows one at a time');
      return this.processOneByOne();
    }
  }

  /** After a batch failed: each row in its own transaction, so a bad row fails alone. */
  private async processOneByOne(): Promise<number> {
    let done = 0;
    for (let i = 0; i < this.batchSize && !this.stopped; i++) {
      let claimedId: number | undefined;
      try {
        const n = await this.publishClaimed(1, (id) => (claimedId = id));
        if (n === 0) break;
        done += 1;
      } catch (err) {
        if (claimedId === undefined || isTransient(err)) throw err;
        await recordFailure(this.deps.knex, claimedId, (err as Error).message);
        this.deps.logger.error({ err, outboxId: claimedId }, 'outbox row could not be published');
      }
    }
    return done;
  }

  /** Claims up to `limit` rows, publishes and marks them in one transaction; reports after commit. */
  private async publishClaimed(
    limit: number,
    onClaimed?: (firstId: number) => void,
  ): Promise<number> {
    const key = await this.deps.publisher.signingKey(); // before the transaction: see Publisher
    const published = { inputs: [] as EventInput[], outcomes: [] as PublishOutcome[] };
    const n = await this.deps.knex.transaction(async (trx) => {
      const rows = await claim(trx, limit);
      if (rows.length === 0) return 0;
      onClaimed?.(rows[0]!.id);
      await finish(trx, await this.publishRows(trx, rows, key, published));
      return rows.length;
    });
    if (published.inputs.length > 0)
      this.deps.publisher.report(published.inputs, published.outcomes);
    return n;
  }

  private async publishRows(
    trx: Knex.Transaction,
    rows: OutboxRow[],
    key: ActiveKey,
    published: { inputs: EventInput[]; outcomes: PublishOutcome[] },
  ): Promise<RowResult[]> {
    const results: RowResult[] = [];
    const valid: { id: number; input: EventInput }[] = [];
    for (const row of rows) {
      const parsed = parseEventInput(row.event, this.deps.publisher.eventTypes);
      if (parsed.ok) valid.push({ id: row.id, input: parsed.event });
      else {
        const why = parsed.problems.map((p) => `${p.path || 'event'}: ${p.message}`).join('; ');
        results.push({
          id: row.id,
          state: 'failed',
          jti: null,
          error: `invalid event: ${why}`.slice(0, 2000),
        });
      }
    }
    if (valid.length > 0) {
      const outcomes = await this.deps.publisher.publishIn(
        trx,
        valid.map((v) => v.input),
        key,
      );
      published.inputs.push(...valid.map((v) => v.input));
      published.outcomes.push(...outcomes);
      outcomes.forEach((o, i) => {
        const id = valid[i]!.id;
        if (o.status === 'skipped')
          results.push({ id, state: 'skipped', jti: null, error: o.reason });
        else results.push({ id, state: 'done', jti: o.jti, error: null });
      });
    }
    return results;
  }
}

function claim(trx: Knex.Transaction, limit: number): Promise<OutboxRow[]> {
  return trx
    .raw<{ rows: OutboxRow[] }>(
      `SELECT id, event FROM event_outbox WHERE state = 'new' ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED`,
      { limit },
    )
    .then((r) => r.rows);
}

async function finish(trx: Knex.Transaction, results: RowResult[]): Promise<void> {
  await trx.raw(
    `UPDATE event_outbox o
        SET state = r.state, result_jti = r.jti, error = r.error, processed_at = now()
       FROM jsonb_to_recordset(:results::jsonb) AS r(id bigint, state text, jti uuid, error text)
      WHERE o.id = r.id`,
    { results: JSON.stringify(results) },
  );
}

async function recordFailure(knex: Knex, id: number, message: string): Promise<void> {
  await knex.raw(
    `UPDATE event_outbox
        SET attempts = attempts + 1, error = :error,
            state = CASE WHEN attempts + 1 >= :max THEN 'failed' ELSE state END,
            processed_at = CASE WHEN attempts + 1 >= :max THEN now() END
      WHERE id = :id AND state = 'new'`,
    { id, error: `unexpected error: ${message}`.slice(0, 2000), max: MAX_ATTEMPTS },
  );
}

/** A failure of the database or the signing workers, not of the rows: retried as they are. */
function isTransient(err: unknown): boolean {
  return err instanceof ServiceUnavailableError || isDatabaseUnavailable(err);
}
