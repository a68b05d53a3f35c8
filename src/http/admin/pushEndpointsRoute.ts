// Operators and the push health of TPP endpoints, on the admin listener, signed like the
// publishing API (x-ob-events-signature over the raw body; a GET signs the empty body).
//
// GET  /admin/v1/push/endpoints?client_id=
//      → {"endpoints": [...]}: endpoints that failed lately, with breaker state (closed, open,
//      half-open, disabled), failing since, last success and last error.
// POST /admin/v1/push/enable  {"client_id": "..."}
//      → {"client_id": ..., "enabled": true, "was_disabled": bool}: push to the client again
//      (breaker reset, waiting SETs due now). The client id travels in the signed body.
//      Unknown client: 404.
import { Router } from 'express';
import type { Knex } from 'knex';
import type { Clock } from '../../clock.js';
import { enablePush, listPushEndpoints } from '../../domain/pushEndpoints.js';
import { AppError, detail, invalid } from '../../errors.js';
import { adminSignatureSteps, type AdminReplayCache } from './hmacAuth.js';

export interface AdminPushEndpointsDeps {
  knex: Knex;
  adminApiSecret: string | undefined;
  clock: Clock;
  /** Admin MACs already accepted (admin_request_macs): a captured request cannot be replayed. */
  replays: AdminReplayCache;
}

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function adminPushEndpointsRouter(deps: AdminPushEndpointsDeps): Router {
  const router = Router();
  const rawBody = adminSignatureSteps(
    { secret: deps.adminApiSecret, clock: deps.clock, replays: deps.replays },
    16 * 1024,
  );

  router.get('/admin/v1/push/endpoints', ...rawBody, async (req, res) => {
    const query = req.query as Record<string, unknown>;
    for (const key of Object.keys(query)) {
      if (key !== 'client_id')
        throw invalid('UK.OBIE.Field.Unexpected', `unknown query parameter ${key}`, key);
    }
    const clientId = query.client_id;
    if (clientId !== undefined && (typeof clientId !== 'string' || !CLIENT_ID.test(clientId))) {
      throw invalid('UK.OBIE.Field.Invalid', 'client_id is not a valid client id', 'client_id');
    }
    res.json({ endpoints: await listPushEndpoints(deps.knex, clientId) });
  });

  router.post('/admin/v1/push/enable', ...rawBody, async (req, res) => {
    const clientId = parseEnableBody((req as { rawBody?: Buffer }).rawBody!);
    const result = await enablePush(deps.knex, clientId);
    if (!result.ok) {
      throw new AppError('not_found', result.message, [
        detail('UK.OBIE.Field.Invalid', result.message, 'client_id'),
      ]);
    }
    res.json({ client_id: clientId, enabled: true, was_disabled: result.wasDisabled });
  });
  return router;
}

function parseEnableBody(raw: Buffer): string {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw invalid('UK.OBIE.Resource.InvalidFormat', 'request body is not valid JSON', 'body');
  }
  const clientId = (body as { client_id?: unknown } | null)?.client_id;
  const extra =
    body && typeof body === 'object' ? Object.keys(body).filter((k) => k !== 'client_id') : [];
  if (typeof clientId !== 'string' || !CLIENT_ID.test(clientId) || extra.length > 0) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      'body must be {"client_id": "<client id>"}',
      'client_id',
    );
  }
  return clientId;
}
