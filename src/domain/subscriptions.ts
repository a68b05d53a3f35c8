// Event subscriptions (OBIE Event Subscription API 3.1.11, §3 of the reference), keyed by the
// authenticated client: one OAuth client is one TPP and has at most one subscription.
//
// - create: a second subscription is 409 UK.OBIE.Rules.ResourceAlreadyExists.
// - replace (PUT) is a full replacement: what the body leaves out is gone. Without CallbackUrl,
//   push stops, also for SETs already waiting to be pushed (they stay pollable).
// - delete: the subscription goes, and in the same transaction the client's pending SETs are
//   discarded (kept for audit, never delivered).
// - an id that does not exist is 400 UK.OBIE.Resource.NotFound (R/W: 400, not 404); another
//   client's id is 403.
// - release management (src/domain/versions.ts): every operation names the API version it came
//   through. A subscription is created through one version and remembers it; it is read,
//   replaced and deleted through that version or a newer one with its fields (Version included)
//   as stored; through an older one it is 403 (UK.OBIE.Field.Invalid, Path Data.Version) for
//   GET, PUT and DELETE alike, and a POST there is 409 like any second subscription.
// The body rules, in the order they are checked: Version (a release of the route's API version or
// an older one), EventTypes (types the bank offers), CallbackUrl (ends in the Version's line, e.g.
// /v4.0/event-notifications for a 4.0 subscription; resolves DNS, so it goes after everything
// cheap).
//
// Reads (GET) are served from memory for up to a second: a change made here drops the entry at
// once, and a change made by another replica drops it when its NOTIFY arrives (milliseconds), so
// a stale read needs a GET on another replica in the instant after a change.
import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import type { Clock } from '../clock.js';
import { CHANNELS, notify, type Notifier } from '../db/notifier.js';
import type {
  StoredSubscription,
  SubscriptionFields,
  SubscriptionsStore,
} from '../db/stores/subscriptionsStore.js';
import { AppError, detail, invalid } from '../errors.js';
import type { LookupAll } from '../net/addressPolicy.js';
import { isStorableText } from '../storableText.js';
import { assertValidCallbackUrl, parseCallbackUrl } from './callbackUrl.js';
import { EventTypeCatalog, type EventTypeCode } from './eventTypes.js';
import { ReadThroughCache } from './readThroughCache.js';
import {
  acceptedVersionsText,
  apiVersionById,
  parseVersionFor,
  reachableThrough,
  type ApiVersion,
} from './versions.js';

export type { StoredSubscription } from '../db/stores/subscriptionsStore.js';

/** What a TPP sends (POST body Data, or PUT body Data without the id). */
export interface SubscriptionInput {
  callbackUrl?: string | undefined;
  version: string;
  eventTypes?: string[] | undefined;
}

export interface SubscriptionsDeps {
  store: SubscriptionsStore;
  knex: Knex;
  clock: Clock;
  /** CALLBACK_ALLOW_PRIVATE_NETWORKS. */
  allowPrivateNetworks: boolean;
  /** Where the supported event types are listed: the `Url` of Unsupported.EventType errors. */
  eventTypesDocUrl: string | ((api: ApiVersion) => string);
  /** The event types this bank offers; default OBIE's four. */
  eventTypes?: EventTypeCatalog;
  /** DNS for CallbackUrl hosts (tests inject one); default: the system resolver. */
  lookup?: LookupAll;
}

/** How long a subscription read may be served from memory. */
const READ_CACHE_MS = 1_000;
const READ_CACHE_MAX = 10_000;
const ANNOUNCEMENT = 'subscription:';

const ID_PREFIX = 'es_';
const ID_LENGTH = 24;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** `es_` + 24 random base62 characters (about 143 bits): opaque, 27 characters. */
export function newSubscriptionId(): string {
  let id = ID_PREFIX;
  while (id.length < ID_PREFIX.length + ID_LENGTH) {
    for (const byte of randomBytes(32)) {
      // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
      if (byte < 248 && id.length < ID_PREFIX.length + ID_LENGTH) id += BASE62[byte % 62];
    }
  }
  return id;
}

export class Subscriptions {
  private readonly cache: ReadThroughCache<StoredSubscription | undefined>;

  constructor(private readonly deps: SubscriptionsDeps) {
    this.cache = new ReadThroughCache({
      ttlMs: READ_CACHE_MS,
      maxEntries: READ_CACHE_MAX,
      now: () => deps.clock.now(),
    });
  }

  /** Drop cached reads when any replica changes a client's subscription. */
  async watch(notifier: Notifier): Promise<void> {
    await notifier.listen(CHANNELS.config, (payload) => {
      if (payload.startsWith(ANNOUNCEMENT)) this.forget(payload.slice(ANNOUNCEMENT.length));
    });
    notifier.onResync(() => this.cache.clear());
  }

  /** Creates the client's subscription through `api` (at most one per client, across versions). */
  async create(
    clientId: string,
    api: ApiVersion,
    input: SubscriptionInput,
  ): Promise<StoredSubscription> {
    const fields = this.checkFields(api, input);
    if (await this.deps.store.findByClient(clientId)) throw alreadyExists();
    await this.checkCallbackHost(fields.callbackUrl);
    const created = await this.deps.knex.transaction(async (trx) => {
      const row = await this.deps.store
        .in(trx)
        .insert({ ...fields, subscriptionId: newSubscriptionId(), clientId, apiVersion: api.id });
      if (row) await announce(trx, clientId);
      return row;
    });
    this.forget(clientId);
    // The unique index decides when two POSTs race.
    if (!created) throw alreadyExists();
    return created;
  }

  /** The client's subscription, if it has one (at most a second old, see above). */
  get(clientId: string): Promise<StoredSubscription | undefined> {
    return this.cache.get(clientId, () => this.deps.store.findByClient(clientId));
  }

  /** The client's subscription as seen through `api`: refused when created through a newer one. */
  async getThrough(clientId: string, api: ApiVersion): Promise<StoredSubscription | undefined> {
    const found = await this.get(clientId);
    if (found) assertReachable(found, api);
    return found;
  }

  private forget(clientId: string): void {
    this.cache.forget(clientId);
  }

  async replace(
    clientId: string,
    api: ApiVersion,
    subscriptionId: string,
    input: SubscriptionInput & { subscriptionId: string },
  ): Promise<StoredSubscription> {
    if (input.subscriptionId !== subscriptionId) {
      throw invalid(
        'UK.OBIE.Field.Invalid',
        'Data.EventSubscriptionId must equal the EventSubscriptionId in the path',
        'Data.EventSubscriptionId',
      );
    }
    await this.assertOwned(clientId, api, subscriptionId);
    const fields = this.checkFields(api, input);
    await this.checkCallbackHost(fields.callbackUrl);
    const replaced = await this.deps.knex.transaction(async (trx) => {
      const store = this.deps.store.in(trx);
      const row = await store.replace(clientId, subscriptionId, fields);
      if (!row) return undefined;
      if (row.callbackUrl === null) await store.stopPendingPush(clientId);
      await announce(trx, clientId);
      return row;
    });
    this.forget(clientId);
    if (!replaced) throw notFound(); // deleted meanwhile
    return replaced;
  }

  /** Deletes the subscription and discards the client's pending SETs, in one transaction. */
  async delete(clientId: string, api: ApiVersion, subscriptionId: string): Promise<void> {
    await this.assertOwned(clientId, api, subscriptionId);
    const deleted = await this.deps.knex.transaction(async (trx) => {
      const store = this.deps.store.in(trx);
      if (!(await store.delete(clientId, subscriptionId))) return false;
      await store.discardPendingDeliveries(clientId);
      await announce(trx, clientId);
      return true;
    });
    this.forget(clientId);
    if (!deleted) throw notFound();
  }

  private async assertOwned(
    clientId: string,
    api: ApiVersion,
    subscriptionId: string,
  ): Promise<void> {
    // A path id that Postgres text cannot hold (`/event-subscriptions/%00`) names nothing.
    if (!isStorableText(subscriptionId)) throw notFound();
    const found = await this.deps.store.findById(subscriptionId);
    if (!found) throw notFound();
    if (found.clientId === clientId) assertReachable(found, api);
    if (found.clientId !== clientId) {
      throw new AppError('forbidden', 'the event subscription belongs to another client', [
        detail(
          'UK.OBIE.Field.Invalid',
          'the event subscription belongs to another client',
          'EventSubscriptionId',
        ),
      ]);
    }
  }

  /** Version, EventTypes and the CallbackUrl's syntax; normalised for storage. */
  private checkFields(api: ApiVersion, input: SubscriptionInput): SubscriptionFields {
    const version = parseVersionFor(input.version, api);
    if (!version) {
      throw invalid(
        'UK.OBIE.Field.Invalid',
        `Version must be a version served through ${api.id}: ${acceptedVersionsText(api)}`,
        'Data.Version',
      );
    }
    const eventTypes = this.checkEventTypes(api, input.version, input.eventTypes);
    if (input.callbackUrl !== undefined) parseCallbackUrl(input.callbackUrl, version);
    return { version: input.version, eventTypes, callbackUrl: input.callbackUrl ?? null };
  }

  /** Codes (URN aliases normalised), first occurrence order; absent or [] means every type. */
  private checkEventTypes(
    api: ApiVersion,
    version: string,
    given: string[] | undefined,
  ): EventTypeCode[] | null {
    if (given === undefined || given.length === 0) return null;
    const catalog = this.deps.eventTypes ?? DEFAULT_CATALOG;
    const allowed = catalog.allowedForVersion(version);
    const codes: EventTypeCode[] = [];
    given.forEach((value, i) => {
      const code = catalog.toOffered(value);
      const path = `Data.EventTypes[${i}]`;
      if (!code) throw this.unsupported(api, `unsupported event type ${clip(value)}`, path);
      if (!allowed.includes(code)) {
        throw this.unsupported(
          api,
          `a Version ${version} subscription can only receive ${allowed.join(', ')}`,
          path,
        );
      }
      if (!codes.includes(code)) codes.push(code);
    });
    return codes;
  }

  private unsupported(api: ApiVersion, message: string, path: string): AppError {
    const url = this.deps.eventTypesDocUrl;
    return new AppError('invalid_request', message, [
      {
        errorCode: 'UK.OBIE.Unsupported.EventType',
        message,
        path,
        url: typeof url === 'string' ? url : url(api),
      },
    ]);
  }

  private async checkCallbackHost(callbackUrl: string | null): Promise<void> {
    if (callbackUrl === null) return;
    await assertValidCallbackUrl(callbackUrl, {
      allowPrivateNetworks: this.deps.allowPrivateNetworks,
      ...(this.deps.lookup ? { lookup: this.deps.lookup } : {}),
    });
  }
}

/** Replicas that cache subscriptions (publishing, push) drop the client's entry. */
function announce(trx: Knex.Transaction, clientId: string): Promise<void> {
  return notify(trx, CHANNELS.config, `${ANNOUNCEMENT}${clientId}`);
}

const DEFAULT_CATALOG = new EventTypeCatalog();

/**
 * Release management: a subscription created through a newer API version is not reached through
 * an older one. OBIE does not say what the answer is; ours is 403 in the version's OBIE shape,
 * naming the version to use.
 */
function assertReachable(found: StoredSubscription, api: ApiVersion): void {
  // A version this replica does not know yet (a rolling upgrade) counts as newer.
  const createdOn = apiVersionById(found.apiVersion);
  if (createdOn && reachableThrough(createdOn, api)) return;
  const message = `this event subscription was created through ${found.apiVersion}: use /open-banking/${found.apiVersion} (or a newer version) to read, change or delete it`;
  throw new AppError(
    'forbidden',
    message,
    [detail('UK.OBIE.Field.Invalid', message, 'Data.Version')],
    `subscription ${found.subscriptionId} of ${found.apiVersion} reached through ${api.id}`,
  );
}

function alreadyExists(): AppError {
  const message = 'this client already has an event subscription: change it with PUT';
  return new AppError('conflict', message, [
    detail('UK.OBIE.Rules.ResourceAlreadyExists', message),
  ]);
}

function notFound(): AppError {
  return invalid(
    'UK.OBIE.Resource.NotFound',
    'no event subscription with this EventSubscriptionId',
    'EventSubscriptionId',
  );
}

function clip(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value);
}
