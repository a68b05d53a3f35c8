// `ob-events deliveries list|retry`: what push delivery left behind, and pushing it again.
//   list [--client-id ID] [--state S] [--limit N] [--after JTI]  → a JSON array, creation order
//        S: pending (push due or in flight) | failed (push gave up; still pollable) |
//           delivered (202) | rejected (400) | acknowledged (ack or 202) | errored (setErrs or 400);
//        no --state: pending and failed.
//   retry JTI → {"jti": ..., "status": "due"}: pushed again now with a fresh series of attempts
//        and the client's breaker closed; exits non-zero with the reason when the SET is not
//        pending, unknown, or its client has no CallbackUrl.
import { CHANNELS, notify } from '../../db/notifier.js';
import { DELIVERY_STATES, PushStore, type DeliveryStateFilter } from '../../db/stores/pushStore.js';
import { printJson, withServices } from '../context.js';
import { CliError } from '../index.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface DeliveriesListOptions {
  clientId?: string;
  state?: string;
  limit: string;
  after?: string;
}

export async function deliveriesList(o: DeliveriesListOptions): Promise<void> {
  if (o.state !== undefined && !(DELIVERY_STATES as readonly string[]).includes(o.state)) {
    throw new CliError(`--state must be one of ${DELIVERY_STATES.join(', ')}`);
  }
  const limit = Number(o.limit);
  if (!/^\d+$/.test(o.limit) || limit < 1 || limit > 100_000) {
    throw new CliError('--limit must be a whole number from 1 to 100000');
  }
  if (o.after !== undefined && !UUID.test(o.after))
    throw new CliError('--after must be a jti (UUID)');
  await withServices(async ({ db }) => {
    const deliveries = await PushStore.create(db.knex).list({
      clientId: o.clientId,
      state: o.state as DeliveryStateFilter | undefined,
      limit,
      after: o.after,
    });
    printJson(deliveries);
  });
}

export async function deliveriesRetry(jti: string): Promise<void> {
  if (!UUID.test(jti)) throw new CliError(`${jti} is not a jti (UUID)`);
  await withServices(async ({ db }) => {
    const result = await PushStore.create(db.knex).retry(jti.toLowerCase());
    if (!result.ok) throw new CliError(result.message);
    await notify(db.knex, CHANNELS.published, result.clientId); // wakes the push workers
    printJson({ jti: jti.toLowerCase(), status: 'due' });
  });
}
