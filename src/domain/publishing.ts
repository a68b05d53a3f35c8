// Publishing: the bank's systems say a resource changed; each interested TPP gets one signed SET,
// stored once and delivered from storage ever after. Every way in (CLI, admin API, outbox) calls
// `publish` or `publishIn`.
//
// For each event, in one transaction for the batch:
//   1. find the client and its subscription (share-locked, so a concurrent DELETE waits);
//   2. an idempotency key seen before for the client → `duplicate` with the first jti;
//   3. no active client, no subscription, type not subscribed or not in the subscribed version
//      → `skipped` with the reason (not an error: DECISIONS.md);
//   4. build the claims (OBEventNotification2), sign once with the active key;
//   5. store the SET and its pending delivery row, NOTIFY the client's channel; `created`.
import type { Knex } from 'knex';
import { v7 as uuidv7 } from 'uuid';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { buildSetClaims } from '../crypto/setClaims.js';
import type { SetSigner } from '../crypto/setSigner.js';
import { CHANNELS } from '../db/notifier.js';
import {
  EventsStore,
  idempotencyKey,
  type NewEvent,
  type PublishTarget,
} from '../db/stores/eventsStore.js';
import { setEventTypes, type EventInput } from './eventInput.js';
import { deliverableToVersion, EventTypeCatalog, type EventTypeCode } from './eventTypes.js';
import { parseSubscriptionVersion } from './versions.js';
import type { ActiveKey, KeyRing } from './signingKeys.js';

export type PublishOutcome =
  | { status: 'created'; jti: string }
  | { status: 'duplicate'; jti: string }
  | { status: 'skipped'; jti: null; reason: string };

export interface PublisherDeps {
  knex: Knex;
  keys: KeyRing;
  signer: SetSigner;
  config: Pick<Config, 'http' | 'events'>;
  clock: Clock;
  /** Told after each committed batch (metrics). */
  onPublished?: (inputs: EventInput[], outcomes: PublishOutcome[]) => void;
  /** The event types this bank offers; default OBIE's four. */
  eventTypes?: EventTypeCatalog;
}

export class Publisher {
  /** What every way in validates events against (parseEventInput): a type not offered is refused. */
  readonly eventTypes: EventTypeCatalog;

  constructor(private readonly deps: PublisherDeps) {
    this.eventTypes = deps.eventTypes ?? new EventTypeCatalog();
  }

  async publish(inputs: EventInput[]): Promise<PublishOutcome[]> {
    const key = await this.signingKey();
    const outcomes = await this.deps.knex.transaction((trx) => this.publishIn(trx, inputs, key));
    this.report(inputs, outcomes);
    return outcomes;
  }

  /** Tells the onPublished hook (metrics) about a committed batch. */
  report(inputs: EventInput[], outcomes: PublishOutcome[]): void {
    this.deps.onPublished?.(inputs, outcomes);
  }

  /**
   * The key to sign with, fetched BEFORE a transaction opens: inside one, every statement must go
   * through the transaction (the embedded database runs one at a time), and the key ring reads
   * through the pool.
   */
  signingKey(): Promise<ActiveKey> {
    return this.deps.keys.activeKey();
  }

  /** The same, inside the caller's transaction (the outbox worker's), with a key from signingKey(). */
  async publishIn(
    trx: Knex.Transaction,
    inputs: EventInput[],
    key: ActiveKey,
  ): Promise<PublishOutcome[]> {
    const store = EventsStore.create(trx);
    const outcomes: (PublishOutcome | undefined)[] = new Array<PublishOutcome | undefined>(
      inputs.length,
    );
    const targets = await store.targets([...new Set(inputs.map((e) => e.clientId))], true);
    const earlier = await store.byIdempotencyKeys(
      inputs.flatMap((e) =>
        e.idempotencyKey ? [{ clientId: e.clientId, key: e.idempotencyKey }] : [],
      ),
    );

    const nowSeconds = Math.floor(this.deps.clock.now() / 1000);
    const toSign: { index: number; event: Omit<NewEvent, 'setJws' | 'kid'>; claims: string }[] = [];
    const keysInBatch = new Map<string, number>(); // idempotency key → index of its first event
    for (const [index, input] of inputs.entries()) {
      const key = input.idempotencyKey
        ? idempotencyKey(input.clientId, input.idempotencyKey)
        : undefined;
      const first = key ? earlier.get(key) : undefined;
      if (first) {
        outcomes[index] = { status: 'duplicate', jti: first };
        continue;
      }
      if (key && keysInBatch.has(key)) continue; // resolved below, once the first one has its jti
      const reason = skipReason(targets.get(input.clientId), input.type);
      if (reason) {
        outcomes[index] = { status: 'skipped', jti: null, reason };
        continue;
      }
      if (key) keysInBatch.set(key, index);
      const jti = uuidv7();
      const claims = buildSetClaims({
        iss: this.deps.config.http.publicUrl,
        aud: input.clientId,
        jti,
        iat: nowSeconds,
        toe: input.toe ?? nowSeconds,
        sub: input.subGiven
          ? input.sub
          : (linkForVersion(input, targets.get(input.clientId)?.subscription?.version) ??
            input.sub),
        txn: input.txn ?? jti,
        eventType: input.type,
        subject: input.subject,
        reason: input.reason,
        withResourceUpdate: input.withResourceUpdate,
      });
      toSign.push({
        index,
        claims: JSON.stringify(claims),
        event: {
          jti,
          clientId: input.clientId,
          eventTypes: setEventTypes(input),
          subjectId: input.subject.id,
          subjectType: input.subject.type,
          txn: claims.txn,
          idempotencyKey: input.idempotencyKey ?? null,
          push: (targets.get(input.clientId)?.subscription?.callbackUrl ?? null) !== null,
        },
      });
    }

    if (toSign.length > 0) {
      const signed = await this.deps.signer.sign(
        toSign.map((s) => s.claims),
        key,
        this.deps.config.events.setTyp,
      );
      const rows: NewEvent[] = toSign.map((s, i) => ({
        ...s.event,
        kid: key.kid,
        setJws: signed[i]!,
      }));
      const inserted = await store.insert(rows);
      const lost = rows.filter((r) => !inserted.has(r.jti) && r.idempotencyKey !== null);
      const winners = await store.byIdempotencyKeys(
        lost.map((r) => ({ clientId: r.clientId, key: r.idempotencyKey! })),
      );
      for (const s of toSign) {
        if (inserted.has(s.event.jti)) {
          outcomes[s.index] = { status: 'created', jti: s.event.jti };
        } else {
          // A concurrent publisher stored the same idempotency key first.
          const winner = winners.get(idempotencyKey(s.event.clientId, s.event.idempotencyKey!));
          if (!winner) throw new Error(`SET ${s.event.jti} was neither stored nor a duplicate`);
          outcomes[s.index] = { status: 'duplicate', jti: winner };
        }
      }
      const notified = [...new Set(rows.filter((r) => inserted.has(r.jti)).map((r) => r.clientId))];
      if (notified.length > 0) {
        await trx.raw('SELECT pg_notify(:channel, c) FROM unnest(:clients::text[]) AS c', {
          channel: CHANNELS.published,
          clients: notified,
        });
      }
    }

    // Repeats of an idempotency key within the batch point at its first event.
    for (const [index, input] of inputs.entries()) {
      if (outcomes[index]) continue;
      const first =
        outcomes[keysInBatch.get(idempotencyKey(input.clientId, input.idempotencyKey!))!]!;
      outcomes[index] =
        first.status === 'skipped' ? first : { status: 'duplicate', jti: first.jti };
    }
    return outcomes as PublishOutcome[];
  }
}

/** Why an event is not recorded for the client, or undefined when it is. */
function skipReason(target: PublishTarget | undefined, type: EventTypeCode): string | undefined {
  if (!target) return 'no such client';
  if (target.status !== 'active') return 'client revoked';
  const sub = target.subscription;
  if (!sub) return 'client has no event subscription';
  if (!deliverableToVersion(type, sub.version)) {
    return `event type ${type} is not delivered to subscriptions of version ${sub.version}`;
  }
  if (sub.eventTypes !== null && !sub.eventTypes.includes(type)) {
    return `subscription does not include ${type}`;
  }
  return undefined;
}

/**
 * The default SET `sub`: the link of the subscriber's version line (`rlk` holds one link per
 * version of the resource when the publisher gives them), so a v4.0 subscriber is pointed at the
 * v4.0 resource; undefined when there is none (the first link is used).
 */
function linkForVersion(input: EventInput, version: string | undefined): string | undefined {
  const line = version === undefined ? undefined : parseSubscriptionVersion(version)?.line;
  if (!line) return undefined;
  return input.subject.links.find((l) => parseSubscriptionVersion(l.version)?.line === line)?.link;
}
