// A database outage, seen from the requests it breaks. Errors from pg and knex that mean "the
// database cannot be reached right now" (refused or dropped connections, a server shutting down
// or starting up, a pool that cannot get a connection) are recognised here, so that the one error
// mapper answers 503 with Retry-After instead of 500; and the outage is logged once, when it
// starts (warn) and when it ends (info), not once per refused request.
import type { Knex } from 'knex';
import type { Logger } from '../logger.js';

/** Seconds a client is asked to wait (Retry-After) while the database is unreachable. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

// Socket-level failures: the server is gone, restarting, or unreachable.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// SQLSTATEs (Appendix A of the Postgres manual): 57P01 admin_shutdown, 57P02 crash_shutdown,
// 57P03 cannot_connect_now (starting up, shutting down, recovery), 53300 too_many_connections;
// class 08 is connection exceptions.
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

// pg and knex report some of these by message only.
const MESSAGES = [
  /^Connection terminated/i, // pg: "Connection terminated unexpectedly", "... due to connection timeout"
  /is not queryable/i, // pg: "Client has encountered a connection error and is not queryable"
  /^Knex: Timeout acquiring a connection/i, // knex pool exhausted or the server not answering
  /^timeout exceeded when trying to connect/i, // pg-pool
  /the database system is (starting up|shutting down|in recovery mode)/i,
];

/** True when `err` says the database is unreachable (not that the query was wrong). */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown; errors?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (NETWORK_CODES.has(code) || SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code)) return true;
  if (e.name === 'KnexTimeoutError') return true;
  const message = reasonOf(e.message) ?? '';
  if (MESSAGES.some((m) => m.test(message))) return true;
  // Node reports a refused connection to a host with several addresses as an AggregateError.
  return Array.isArray(e.errors) && e.errors.some(isDatabaseUnavailable);
}

/**
 * The message without the statement knex puts in front of it (`ROLLBACK - Connection terminated
 * unexpectedly`: a transaction whose connection dropped fails its ROLLBACK with that).
 */
function reasonOf(message: unknown): string | undefined {
  return typeof message === 'string' ? message.split(' - ').pop() : undefined;
}

/**
 * Logs an outage once: `report()` on each request that failed because the database is
 * unreachable; the first starts the outage (warn) and a probe (`select 1` every `probeMs`) that
 * ends it (info, with how long it lasted and how many requests were answered 503).
 */
export class DatabaseOutage {
  private since: number | undefined;
  private refused = 0;
  private probe: NodeJS.Timeout | undefined;
  private probing = false;

  constructor(private readonly deps: { knex: Knex; logger: Logger; probeMs?: number }) {}

  get down(): boolean {
    return this.since !== undefined;
  }

  report(err: unknown): void {
    this.refused += 1;
    if (this.since !== undefined) return;
    this.since = Date.now();
    this.refused = 1;
    const e = err as { code?: unknown; message?: unknown };
    this.deps.logger.warn(
      { code: e.code, reason: reasonOf(e.message) },
      'database unavailable: answering 503 with Retry-After until it is back',
    );
    this.probe = setInterval(() => void this.check(), this.deps.probeMs ?? 1000);
    this.probe.unref();
  }

  private async check(): Promise<void> {
    if (this.probing || this.since === undefined) return;
    this.probing = true;
    try {
      await this.deps.knex.raw('select 1');
      this.deps.logger.info(
        { downForMs: Date.now() - this.since, refusedRequests: this.refused },
        'database available again',
      );
      this.stopProbe();
      this.since = undefined;
    } catch {
      // still down: the next probe tries again
    } finally {
      this.probing = false;
    }
  }

  private stopProbe(): void {
    if (this.probe) clearInterval(this.probe);
    this.probe = undefined;
  }

  close(): void {
    this.stopProbe();
  }
}
