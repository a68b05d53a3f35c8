// Writes push outcomes (and their attempt rows) to the database in batches: requests finishing
// together share one statement (pushStore.record). An attempt's SET stays leased until its
// outcome is written, so a short wait here never lets another replica send it meanwhile.
//
// When the database is unreachable the outcomes are kept and written later, and the engine
// claims nothing until they are (`blocked`): a 202 held here must be recorded before anything
// could send its SET again (pushStore.ts CLAIM_SQL says how other workers wait). A batch the
// database refuses (a constraint or data error) is written one outcome at a time, so one bad
// outcome cannot hold up the others: that one is dropped and logged, and its SET is pushed again
// when its lease ends (at least once, never lost).
import type {
  AttemptRecord,
  BreakerChange,
  BreakerPolicy,
  PushStore,
} from '../db/stores/pushStore.js';
import type { Logger } from '../logger.js';

const BATCH = 500;
/** How long an outcome may wait for others before being written. */
const COALESCE_MS = 2;

export interface OutcomeWriterDeps {
  store: PushStore;
  logger: Logger;
  /** Write at once when this many are waiting. */
  batchHint: number;
  policy: BreakerPolicy;
  /** Retries were recorded: each is due in this many ms. */
  onRetriesRecorded(delaysMs: number[]): void;
  onBreakerChanges(changes: BreakerChange[]): void;
  /** Everything held after a failed write is now written. */
  onUnblocked(): void;
}

export class OutcomeWriter {
  private records: AttemptRecord[] = [];
  private writing: Promise<void> | undefined;
  private stopping = false;
  private failed = false;
  private wakeRetry: (() => void) | undefined;

  constructor(private readonly deps: OutcomeWriterDeps) {}

  get pending(): number {
    return this.records.length;
  }

  /** A write failed and outcomes are still unwritten: claim nothing meanwhile. */
  get blocked(): boolean {
    return this.failed;
  }

  /** The database answers again (a heartbeat got through): retry now instead of after back-off. */
  kick(): void {
    this.wakeRetry?.();
  }

  add(record: AttemptRecord): void {
    this.records.push(record);
    this.schedule();
  }

  /** Writes what is waiting; when stopping, gives up after a few failed tries. */
  async flush(stopping = false): Promise<void> {
    this.stopping ||= stopping;
    await this.writing;
    await this.writeAll();
  }

  private schedule(): void {
    if (this.writing) return;
    const wait = this.records.length >= this.deps.batchHint ? 0 : COALESCE_MS;
    this.writing = new Promise<void>((resolve) => setTimeout(resolve, wait))
      .then(() => this.writeAll())
      .finally(() => {
        this.writing = undefined;
        if (this.records.length > 0) this.schedule();
      });
  }

  private async writeAll(): Promise<void> {
    let failures = 0;
    while (this.records.length > 0) {
      const batch = this.records.splice(0, BATCH);
      try {
        const { changes } = await this.deps.store.record(batch, this.deps.policy);
        failures = 0;
        this.retriesWritten(batch);
        if (changes.length > 0) this.deps.onBreakerChanges(changes);
      } catch (err) {
        if (isRefusedByDatabase(err)) {
          await this.writeOneByOne(batch);
          continue;
        }
        this.records.unshift(...batch);
        failures += 1;
        this.failed = true;
        this.deps.logger.warn(
          { err, pending: this.records.length },
          'could not record push outcomes; retrying',
        );
        // When stopping, give up after a few tries: the leases end and the SETs are sent again.
        if (this.stopping && failures >= 3) {
          this.records = [];
          return;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.min(5_000, 250 * 2 ** failures));
          function done() {
            clearTimeout(timer);
            resolve();
          }
          this.wakeRetry = done;
        });
        this.wakeRetry = undefined;
      }
    }
    if (this.failed) {
      this.failed = false;
      this.deps.onUnblocked();
    }
  }

  private async writeOneByOne(batch: AttemptRecord[]): Promise<void> {
    for (const record of batch) {
      try {
        const { changes } = await this.deps.store.record([record], this.deps.policy);
        this.retriesWritten([record]);
        if (changes.length > 0) this.deps.onBreakerChanges(changes);
      } catch (err) {
        if (!isRefusedByDatabase(err)) {
          this.records.unshift(record); // unreachable now: writeAll keeps trying
          continue;
        }
        this.deps.logger.error(
          { err, jti: record.jti, outcome: record.outcome },
          'push outcome refused by the database; the SET will be pushed again after its lease',
        );
        // Free it now (its lease names this worker, which nobody else would take over).
        await this.deps.store
          .release([{ jti: record.jti, lease: record.lease }])
          .catch(() => undefined);
      }
    }
  }

  /** Retries are due `delayMs` after the statement's now(), so counted from its end. */
  private retriesWritten(batch: AttemptRecord[]): void {
    const delays: number[] = [];
    for (const r of batch)
      if (r.outcome === 'retry' && r.delayMs !== null) delays.push(r.delayMs + 1);
    if (delays.length > 0) this.deps.onRetriesRecorded(delays);
  }
}

/** SQLSTATE class 22 (data exception) or 23 (integrity constraint): trying again will not help. */
function isRefusedByDatabase(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^2[23]/.test(code);
}
