// "Has this client used this assertion jti before?", answered by the database so that every
// replica agrees: the first INSERT of a (client, jti) wins (assertion_jtis primary key).
//
// Requests that arrive in the same turn of the event loop are written with one statement: under
// load the token endpoint's database work per token drops several-fold (one round trip, one
// commit, one trip through knex for the whole group), and a lone request waits for nothing but
// the end of the current turn. The answer for each entry is still the database's.
import { jtiKey, type AssertionJtisStore } from '../db/stores/assertionJtisStore.js';

const MAX_BATCH = 200;

interface Waiting {
  clientId: string;
  jti: string;
  expiresAt: Date;
  resolve(first: boolean): void;
  reject(err: unknown): void;
}

export class ReplayGuard {
  private queue: Waiting[] = [];
  private scheduled = false;

  constructor(private readonly store: AssertionJtisStore) {}

  /** True the first time (client, jti) is seen on any replica; false for every later use. */
  firstUse(clientId: string, jti: string, rememberUntil: Date): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ clientId, jti, expiresAt: rememberUntil, resolve, reject });
      if (this.queue.length >= MAX_BATCH) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    while (this.queue.length > 0) void this.write(this.queue.splice(0, MAX_BATCH));
  }

  private async write(batch: Waiting[]): Promise<void> {
    let fresh: Set<string>;
    try {
      fresh = await this.store.rememberAll(batch);
    } catch (err) {
      // One bad entry (a value Postgres refuses) must not fail the other clients' requests in
      // the batch: on a data error, each entry is written alone and answers for itself. Any
      // other failure (the database is down) is every entry's answer.
      if (batch.length > 1 && isDataError(err)) await this.writeOneByOne(batch);
      else for (const w of batch) w.reject(err);
      return;
    }
    // The same (client, jti) twice in one batch: the row is new once, so only the first wins.
    const answered = new Set<string>();
    for (const w of batch) {
      const key = jtiKey(w.clientId, w.jti);
      w.resolve(fresh.has(key) && !answered.has(key));
      answered.add(key);
    }
  }

  private async writeOneByOne(batch: Waiting[]): Promise<void> {
    for (const w of batch) {
      try {
        w.resolve(await this.store.remember(w.clientId, w.jti, w.expiresAt));
      } catch (err) {
        w.reject(err);
      }
    }
  }
}

/** SQLSTATE class 22 (data exception: bad encoding, NUL) or 23 (a constraint refused a row). */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}
