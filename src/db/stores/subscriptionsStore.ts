// Rows of event_subscriptions (at most one per client: event_subscriptions_client_uidx), and the
// two delivery updates a subscription change implies for that client's pending SETs.
import type { Knex } from 'knex';
import type { EventTypeCode } from '../../domain/eventTypes.js';

export const EVENT_SUBSCRIPTIONS = 'event_subscriptions';

interface SubscriptionRow {
  subscription_id: string;
  client_id: string;
  callback_url: string | null;
  version: string;
  event_types: string[] | null;
  api_version: string;
  created_at: Date;
  updated_at: Date;
}

export interface StoredSubscription {
  subscriptionId: string;
  clientId: string;
  /** null: polling only. */
  callbackUrl: string | null;
  version: string;
  /** null: every supported type. */
  eventTypes: EventTypeCode[] | null;
  /** The API version it was created through (`v3.1`, `v4.0`); never changes. */
  apiVersion: string;
  createdAt: Date;
  updatedAt: Date;
}

export type SubscriptionFields = Pick<StoredSubscription, 'callbackUrl' | 'version' | 'eventTypes'>;

function toSubscription(r: SubscriptionRow): StoredSubscription {
  return {
    subscriptionId: r.subscription_id,
    clientId: r.client_id,
    callbackUrl: r.callback_url,
    version: r.version,
    eventTypes: r.event_types as EventTypeCode[] | null,
    apiVersion: r.api_version,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export class SubscriptionsStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): SubscriptionsStore {
    return new SubscriptionsStore(knex);
  }

  /** The same store, running its statements in `trx`. */
  in(trx: Knex.Transaction): SubscriptionsStore {
    return new SubscriptionsStore(trx);
  }

  /** Inserts the client's subscription; undefined when the client already has one. */
  async insert(
    s: SubscriptionFields & { subscriptionId: string; clientId: string; apiVersion: string },
  ): Promise<StoredSubscription | undefined> {
    const rows = await this.knex<SubscriptionRow>(EVENT_SUBSCRIPTIONS)
      .insert({
        subscription_id: s.subscriptionId,
        client_id: s.clientId,
        callback_url: s.callbackUrl,
        version: s.version,
        event_types: s.eventTypes,
        api_version: s.apiVersion,
      })
      .onConflict('client_id')
      .ignore()
      .returning('*');
    const row = rows[0];
    return row ? toSubscription(row) : undefined;
  }

  async findByClient(clientId: string): Promise<StoredSubscription | undefined> {
    const row = await this.knex<SubscriptionRow>(EVENT_SUBSCRIPTIONS)
      .where({ client_id: clientId })
      .first();
    return row ? toSubscription(row) : undefined;
  }

  /** By id, whoever owns it (the caller decides between "not found" and "not yours"). */
  async findById(subscriptionId: string): Promise<StoredSubscription | undefined> {
    const row = await this.knex<SubscriptionRow>(EVENT_SUBSCRIPTIONS)
      .where({ subscription_id: subscriptionId })
      .first();
    return row ? toSubscription(row) : undefined;
  }

  /** Replaces the fields of the client's subscription `subscriptionId`; undefined if none. */
  async replace(
    clientId: string,
    subscriptionId: string,
    s: SubscriptionFields,
  ): Promise<StoredSubscription | undefined> {
    const rows = await this.knex<SubscriptionRow>(EVENT_SUBSCRIPTIONS)
      .where({ subscription_id: subscriptionId, client_id: clientId })
      .update({
        callback_url: s.callbackUrl,
        version: s.version,
        event_types: s.eventTypes,
        updated_at: this.knex.fn.now() as unknown as Date,
      })
      .returning('*');
    const row = rows[0];
    return row ? toSubscription(row) : undefined;
  }

  /** Deletes the client's subscription `subscriptionId`; false if there was none. */
  async delete(clientId: string, subscriptionId: string): Promise<boolean> {
    const n = await this.knex(EVENT_SUBSCRIPTIONS)
      .where({ subscription_id: subscriptionId, client_id: clientId })
      .delete();
    return n > 0;
  }

  /**
   * The client's pending SETs leave delivery: kept for audit as `discarded` until retention
   * removes them (DECISIONS.md "Who gets an event"). Returns how many.
   */
  async discardPendingDeliveries(clientId: string): Promise<number> {
    const result = await this.knex.raw<{ rowCount: number }>(
      `UPDATE event_deliveries
          SET state = 'discarded', resolved_at = now(), resolution = 'subscription_deleted',
              leased_until = NULL
        WHERE client_id = :clientId AND state = 'pending'`,
      { clientId },
    );
    return result.rowCount;
  }

  /** Push is off (no CallbackUrl): pending SETs stay pollable but are no longer pushed. */
  async stopPendingPush(clientId: string): Promise<number> {
    const result = await this.knex.raw<{ rowCount: number }>(
      `UPDATE event_deliveries
          SET push_state = NULL, push_next_at = NULL
        WHERE client_id = :clientId AND state = 'pending' AND push_state = 'due'`,
      { clientId },
    );
    return result.rowCount;
  }
}
