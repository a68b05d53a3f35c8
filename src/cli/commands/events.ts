// `ob-events events publish`: creates the event (N alike with --count) for one TPP through the
// same validation and publishing as the admin API; one JSON line per event on stdout.
// A client id nobody registered is an error (a typo must not look like success); a registered
// client that is revoked or not subscribed to the type is `skipped`, exit 0 (CONTRACT).
import { parseEventInput, type EventInput } from '../../domain/eventInput.js';
import { ClientsStore } from '../../db/stores/clientsStore.js';
import { describeDatabase, printJson, withServices } from '../context.js';
import { CliError } from '../index.js';

export interface EventsPublishOptions {
  clientId: string;
  type: string;
  subjectId: string;
  subjectType: string;
  link?: string;
  version: string;
  txn?: string;
  count: string;
  reason?: string;
  withResourceUpdate?: boolean;
  idempotencyKey?: string;
}

const BATCH = 500;

export async function eventsPublish(o: EventsPublishOptions): Promise<void> {
  const count = Number(o.count);
  if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
    throw new CliError('--count must be a whole number from 1 to 1000000');
  }
  await withServices(async ({ db, publisher }, config) => {
    const link =
      o.link ??
      `${config.http.publicUrl}/open-banking/${o.version.startsWith('v') ? o.version : `v${o.version}`}/${encodeURIComponent(o.subjectType)}/${encodeURIComponent(o.subjectId)}`;
    const parsed = parseEventInput(
      {
        clientId: o.clientId,
        type: o.type,
        subject: { id: o.subjectId, type: o.subjectType, links: [{ version: o.version, link }] },
        ...(o.txn !== undefined ? { txn: o.txn } : {}),
        ...(o.reason !== undefined ? { reason: o.reason } : {}),
        ...(o.withResourceUpdate ? { withResourceUpdate: true } : {}),
        ...(o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey } : {}),
      },
      publisher.eventTypes,
    );
    if (!parsed.ok) {
      const p = parsed.problems[0]!;
      throw new CliError(`${flagFor(p.path)}: ${p.message}`);
    }
    // Before anything is signed (the first publish may even create the signing key).
    if (!(await ClientsStore.create(db.knex).find(o.clientId))) {
      throw new CliError(
        `no client ${o.clientId} in ${describeDatabase(config.database)}: check --client-id ` +
          "(`ob-events clients list`), or DATABASE_URL / DATA_DIR if this is not the server's database",
      );
    }
    for (let done = 0; done < count; done += BATCH) {
      const batch: EventInput[] = Array.from(
        { length: Math.min(BATCH, count - done) },
        () => parsed.event,
      );
      for (const o of await publisher.publish(batch)) {
        printJson(
          o.status === 'skipped'
            ? { jti: null, status: o.status, reason: o.reason }
            : { jti: o.jti, status: o.status },
        );
      }
    }
  });
}

/** Names the command-line flag behind an input problem. */
function flagFor(path: string): string {
  const flags: Record<string, string> = {
    clientId: '--client-id',
    type: '--type',
    'subject.id': '--subject-id',
    'subject.type': '--subject-type',
    'subject.links[0].link': '--link',
    'subject.links[0].version': '--version',
    txn: '--txn',
    reason: '--reason',
    withResourceUpdate: '--with-resource-update',
    idempotencyKey: '--idempotency-key',
  };
  return flags[path] ?? (path || 'event');
}
