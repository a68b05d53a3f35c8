// Operators' view of push delivery, on the admin listener, signed like the publishing API
// (x-ob-events-signature over the raw body; a GET signs the empty body).
//
// GET  /admin/v1/deliveries?client_id=&state=&limit=&after=
//      → {"deliveries": [...], "next": <jti to pass as after> | null}
//      state: pending | failed | delivered | rejected | acknowledged | errored (README);
//      absent: pending and failed. Creation order; at most `limit` (1-1000, default 100).
// POST /admin/v1/deliveries/retry  {"jti": "..."}
//      → {"jti": ..., "status": "due"}: pushed again now with a fresh series of attempts, and the
//      client's circuit breaker closed. The jti travels in the signed body, so a signature
//      cannot be replayed against another SET. Unknown jti: 404; not pending or no CallbackUrl: 409.
import { Router } from 'express';
import type { Knex } from 'knex';
import type { Clock } from '../../clock.js';
import { CHANNELS, notify } from '../../db/notifier.js';
import { DELIVERY_STATES, PushStore, type DeliveryStateFilter } from '../../db/stores/pushStore.js';
import { AppError, detail, invalid } from '../../errors.js';
import { decodeUtf8 } from '../strictJson.js';
import { adminSignatureSteps, type AdminReplayCache } from './hmacAuth.js';

export interface AdminDeliveriesDeps {
  knex: Knex;
  adminApiSecret: string | undefined;
  clock: Clock;
  replays: AdminReplayCache;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const QUERY_PARAMS = new Set(['client_id', 'state', 'limit', 'after']);
export const MAX_LIST = 1000;

export function adminDeliveriesRouter(deps: AdminDeliveriesDeps): Router {
  const store = PushStore.create(deps.knex);
  const router = Router();
  const rawBody = adminSignatureSteps(
    { secret: deps.adminApiSecret, clock: deps.clock, replays: deps.replays },
    16 * 1024,
  );

  router.get('/admin/v1/deliveries', ...rawBody, async (req, res) => {
    const filter = parseListQuery(req.query as Record<string, unknown>);
    const deliveries = await store.list({ ...filter, limit: filter.limit + 1 });
    const more = deliveries.length > filter.limit;
    const page = more ? deliveries.slice(0, filter.limit) : deliveries;
    res.json({ deliveries: page, next: more ? page[page.length - 1]!.jti : null });
  });

  router.post('/admin/v1/deliveries/retry', ...rawBody, async (req, res) => {
    const jti = parseRetryBody((req as { rawBody?: Buffer }).rawBody!);
    const result = await store.retry(jti);
    if (!result.ok) {
      const kind = result.reason === 'not_found' ? 'not_found' : 'conflict';
      throw new AppError(kind, result.message, [
        detail('UK.OBIE.Field.Invalid', result.message, 'jti'),
      ]);
    }
    await notify(deps.knex, CHANNELS.published, result.clientId);
    res.json({ jti, status: 'due' });
  });
  return router;
}

function parseListQuery(query: Record<string, unknown>): {
  clientId?: string;
  state?: DeliveryStateFilter;
  limit: number;
  after?: string;
} {
  for (const key of Object.keys(query)) {
    if (!QUERY_PARAMS.has(key))
      throw invalid('UK.OBIE.Field.Unexpected', `unknown query parameter ${key}`, key);
  }
  const one = (key: string): string | undefined => {
    const v = query[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string')
      throw invalid('UK.OBIE.Field.Invalid', `${key} must be given once`, key);
    return v;
  };
  const clientId = one('client_id');
  if (clientId !== undefined && !CLIENT_ID.test(clientId)) {
    throw invalid('UK.OBIE.Field.Invalid', 'client_id is not a valid client id', 'client_id');
  }
  const state = one('state');
  if (state !== undefined && !(DELIVERY_STATES as readonly string[]).includes(state)) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      `state must be one of ${DELIVERY_STATES.join(', ')}`,
      'state',
    );
  }
  const limitText = one('limit');
  const limit = limitText === undefined ? 100 : Number(limitText);
  if (!/^\d+$/.test(limitText ?? '100') || limit < 1 || limit > MAX_LIST) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      `limit must be a whole number from 1 to ${MAX_LIST}`,
      'limit',
    );
  }
  const after = one('after');
  if (after !== undefined && !UUID.test(after)) {
    throw invalid('UK.OBIE.Field.Invalid', 'after must be a jti (UUID)', 'after');
  }
  return {
    limit,
    ...(clientId !== undefined ? { clientId } : {}),
    ...(state !== undefined ? { state: state as DeliveryStateFilter } : {}),
    ...(after !== undefined ? { after } : {}),
  };
}

function parseRetryBody(raw: Buffer): string {
  let body: unknown;
  try {
    body = JSON.parse(decodeUtf8(raw));
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw invalid('UK.OBIE.Resource.InvalidFormat', 'request body is not valid JSON', 'body');
  }
  const jti = (body as { jti?: unknown } | null)?.jti;
  const extra =
    body && typeof body === 'object' ? Object.keys(body).filter((k) => k !== 'jti') : [];
  if (typeof jti !== 'string' || !UUID.test(jti) || extra.length > 0) {
    throw invalid('UK.OBIE.Field.Invalid', 'body must be {"jti": "<uuid>"}', 'jti');
  }
  return jti.toLowerCase();
}
