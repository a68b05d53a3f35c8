// Operators and the push health of TPP endpoints (README "Real-time push", "Endpoints that fail
// for long"): which endpoints are backed off or disabled, and enabling push again. Used by the
// CLI (`ob-events push endpoints|enable`) and the admin API (/admin/v1/push/...), so both do
// exactly the same.
import type { Knex } from 'knex';
import { CHANNELS, notify } from '../db/notifier.js';
import { PushStore, type EndpointView } from '../db/stores/pushStore.js';

export type EnablePushResult =
  | { ok: true; clientId: string; wasDisabled: boolean }
  | { ok: false; reason: 'not_found'; message: string };

/** Endpoints that failed lately, with their breaker state; disabled ones say so. */
export function listPushEndpoints(knex: Knex, clientId?: string): Promise<EndpointView[]> {
  return PushStore.create(knex).endpoints(clientId);
}

/**
 * Push to the client again: the breaker is reset (closed, judged afresh), its SETs waiting for
 * push are due now, and every push worker is woken. Harmless on a client that was not disabled.
 */
export async function enablePush(knex: Knex, clientId: string): Promise<EnablePushResult> {
  const result = await PushStore.create(knex).enable(clientId);
  if (!result.found) {
    return { ok: false, reason: 'not_found', message: `no client ${clientId}` };
  }
  await notify(knex, CHANNELS.published, clientId);
  return { ok: true, clientId, wasDisabled: result.wasDisabled };
}
