// POST /admin/v1/events: the bank's systems publish a batch of up to 1,000 events.
// Body: {"events": [<event>, ...]} (src/domain/eventInput.ts). Answer, in order:
// {"results": [{"status":"created","jti":...} | {"status":"duplicate","jti":...} |
//              {"status":"skipped","jti":null,"reason":...}]}.
// The batch is validated whole first: one bad event is a 400 naming it, and nothing is published.
import { Router } from 'express';
import type { Clock } from '../../clock.js';
import { parseEventInput, type EventInput } from '../../domain/eventInput.js';
import type { EventTypeCatalog } from '../../domain/eventTypes.js';
import type { Publisher } from '../../domain/publishing.js';
import { AppError, detail, type ErrorDetail } from '../../errors.js';
import { parseJsonBytes } from '../strictJson.js';
import { adminSignatureSteps, type AdminReplayCache } from './hmacAuth.js';

export const MAX_BATCH = 1000;

export interface AdminEventsDeps {
  publisher: Publisher;
  adminApiSecret: string | undefined;
  clock: Clock;
  replays: AdminReplayCache;
}

/** 1,000 events of a few KB each; only read once the signature header has passed its checks. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

export function adminEventsRouter(deps: AdminEventsDeps): Router {
  const router = Router();
  router.post(
    '/admin/v1/events',
    ...adminSignatureSteps(
      { secret: deps.adminApiSecret, clock: deps.clock, replays: deps.replays },
      MAX_BODY_BYTES,
    ),
    async (req, res) => {
      if (!req.is('application/json'))
        throw new AppError('unsupported_media_type', 'send application/json');
      const inputs = parseBatch((req as { rawBody?: Buffer }).rawBody!, deps.publisher.eventTypes);
      const outcomes = await deps.publisher.publish(inputs);
      res.json({ results: outcomes });
    },
  );
  return router;
}

function parseBatch(raw: Buffer, eventTypes: EventTypeCatalog): EventInput[] {
  // Valid UTF-8 and storable text only: an event is signed exactly as the bank sent it.
  const body = parseJsonBytes(raw);
  const events = (body as { events?: unknown } | null)?.events;
  const extra =
    body && typeof body === 'object' ? Object.keys(body).filter((k) => k !== 'events') : [];
  if (
    !Array.isArray(events) ||
    events.length === 0 ||
    events.length > MAX_BATCH ||
    extra.length > 0
  ) {
    throw new AppError(
      'invalid_request',
      `body must be {"events": [...]} with 1 to ${MAX_BATCH} events`,
      [
        detail(
          'UK.OBIE.Field.Invalid',
          `events must be an array of 1 to ${MAX_BATCH} events and the only member`,
          'events',
        ),
      ],
    );
  }
  const problems: ErrorDetail[] = [];
  const inputs: EventInput[] = [];
  events.forEach((e, i) => {
    const r = parseEventInput(e, eventTypes);
    if (r.ok) inputs.push(r.event);
    else
      for (const p of r.problems)
        problems.push(
          detail('UK.OBIE.Field.Invalid', p.message, `events[${i}]${p.path ? `.${p.path}` : ''}`),
        );
  });
  if (problems.length > 0) {
    throw new AppError(
      'invalid_request',
      `${problems.length} problem(s) in the batch; nothing was published`,
      problems.slice(0, 100),
    );
  }
  return inputs;
}
