// LISTEN/NOTIFY. Publishing sends `pg_notify` inside its transaction (so the wake-up goes out on
// commit, to every replica); each process holds ONE listening connection and fans messages out
// in memory. After the listening connection drops and comes back, `onResync` handlers run:
// notifications sent meanwhile are lost, so listeners must re-check the database.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Knex } from 'knex';
import type { Logger } from '../logger.js';

export const CHANNELS = {
  /** payload: client_id of the TPP that has new SETs. */
  published: 'ob_events_published',
  /** payload: empty; rows were inserted into event_outbox. */
  outbox: 'ob_events_outbox',
  /** payload: 'keys' (signing keys changed) or 'client:<id>' (client changed). */
  config: 'ob_events_config',
} as const;

export type Channel = (typeof CHANNELS)[keyof typeof CHANNELS];

const RECONNECT_FIRST_MS = 100;
const RECONNECT_CAP_MS = 1_000;

export interface Notifier {
  /** Starts listening on the channel (if not yet) and calls `handler` with each payload. */
  listen(channel: Channel, handler: (payload: string) => void): Promise<() => void>;
  /** Runs after the listening connection was re-established: re-check what may have been missed. */
  onResync(handler: () => void): () => void;
  close(): Promise<void>;
}

/** Sends a notification from inside a transaction (delivered when it commits). */
export async function notify(
  db: Knex | Knex.Transaction,
  channel: Channel,
  payload = '',
): Promise<void> {
  await db.raw('select pg_notify(?, ?)', [channel, payload]);
}

abstract class FanOut {
  protected readonly messages = new EventEmitter();
  protected readonly resync = new EventEmitter();
  protected readonly channels = new Set<string>();

  constructor(protected readonly logger: Logger) {
    this.messages.setMaxListeners(0);
    this.resync.setMaxListeners(0);
  }

  protected deliver(channel: string, payload: string): void {
    for (const handler of this.messages.listeners(channel) as ((p: string) => void)[]) {
      try {
        handler(payload);
      } catch (err) {
        this.logger.error({ err, channel }, 'notification handler failed');
      }
    }
  }

  onResync(handler: () => void): () => void {
    this.resync.on('resync', handler);
    return () => this.resync.off('resync', handler);
  }

  protected subscribe(channel: string, handler: (payload: string) => void): () => void {
    this.messages.on(channel, handler);
    return () => this.messages.off(channel, handler);
  }
}

/**
 * One dedicated `pg.Client` that LISTENs, reconnecting when it drops: first after 100 ms, then
 * doubling up to RECONNECT_CAP_MS, so that long polls wake within about a second of the database
 * coming back (each resync wakes them all). An outage is logged once when the connection drops
 * and once when it is back, not at every attempt.
 */
export class PgNotifier extends FanOut implements Notifier {
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs = RECONNECT_FIRST_MS;
  private lostAt = 0;
  private attempts = 0;

  constructor(
    private readonly connectionString: string,
    logger: Logger,
  ) {
    super(logger);
  }

  async listen(channel: Channel, handler: (payload: string) => void): Promise<() => void> {
    const unsubscribe = this.subscribe(channel, handler);
    if (!this.channels.has(channel)) {
      this.channels.add(channel);
      if (this.client) await this.client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    }
    await this.ensureConnected();
    return unsubscribe;
  }

  private ensureConnected(): Promise<void> {
    if (this.client) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.connectionString,
      application_name: 'ob-events-listener',
      keepAlive: true,
      connectionTimeoutMillis: 5_000, // an unreachable host must not stall the reconnect loop
    });
    client.on('notification', (n) => this.deliver(n.channel, n.payload ?? ''));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, undefined));
    await client.connect();
    for (const channel of this.channels)
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.backoffMs = RECONNECT_FIRST_MS;
  }

  private lost(client: pg.Client, err: Error | undefined): void {
    if (this.client !== client) return;
    this.client = undefined;
    if (this.closed) return;
    this.lostAt = Date.now();
    this.attempts = 0;
    this.logger.warn({ err }, 'LISTEN connection lost; reconnecting');
    client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.attempts += 1;
      this.ensureConnected().then(
        () => {
          this.logger.info(
            { downForMs: Date.now() - this.lostAt, attempts: this.attempts },
            'LISTEN connection re-established',
          );
          this.resync.emit('resync');
        },
        (err: unknown) => {
          this.logger.debug({ err, attempts: this.attempts }, 'LISTEN reconnect failed');
          this.backoffMs = Math.min(this.backoffMs * 2, RECONNECT_CAP_MS);
          this.scheduleReconnect();
        },
      );
    }, this.backoffMs);
    this.reconnectTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    await this.connecting?.catch(() => {});
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}

/**
 * The embedded database's notifier: PGlite is one backend, so LISTEN is issued once through the
 * pool and NotificationResponse frames come from the socket server (see embedded.ts).
 */
export class EmbeddedNotifier extends FanOut implements Notifier {
  private readonly onFrame = (channel: string, payload: string) => this.deliver(channel, payload);

  constructor(
    private readonly source: EventEmitter,
    private readonly knex: Knex,
    logger: Logger,
  ) {
    super(logger);
    source.on('notification', this.onFrame);
  }

  async listen(channel: Channel, handler: (payload: string) => void): Promise<() => void> {
    const unsubscribe = this.subscribe(channel, handler);
    if (!this.channels.has(channel)) {
      this.channels.add(channel);
      await this.knex.raw(`LISTEN ${pg.escapeIdentifier(channel)}`);
    }
    return unsubscribe;
  }

  close(): Promise<void> {
    this.source.off('notification', this.onFrame);
    return Promise.resolve();
  }
}
