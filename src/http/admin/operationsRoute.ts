// Delivery history, replay, dead letters and the audit trail for the bank's systems, on the admin
// listener, signed like the rest of /admin/v1 (x-ob-events-signature over method, path and raw
// body). Every POST is audited with actor = the body's optional "actor" member (signed with the
// body), else "admin-api". README "Operations" documents each shape.
//
// GET  /admin/v1/deliveries/{jti}/history                 → one SET with pushes[] and polls[]
// GET  /admin/v1/deliveries/history?client_id=&since=&before=&limit=
//                                                          → {"sets": [...], "next": jti | null}
// POST /admin/v1/deliveries/replay        {"jti"}         → {"jti","clientId","outcome","push"}
// POST /admin/v1/deliveries/replay-since  {"clientId","since","limit"?}
//                                                          → {"replayed","rearmed","more",...}
// GET  /admin/v1/dead-letters?client_id=&after=&limit=    → {"deadLetters": [...], "next"}
// POST /admin/v1/dead-letters/retry       {"jti"}         → as replay
// POST /admin/v1/dead-letters/purge       {"jti"}         → {"jti","status":"purged"}
// GET  /admin/v1/audit?client_id=&before=&limit=          → {"entries": [...], "next": id | null}
import { Router, type Request } from 'express';
import type { Clock } from '../../clock.js';
import {
  parseClientId,
  parseJti,
  parseTime,
  type Actor,
  type Operations,
} from '../../domain/operations.js';
import { invalid } from '../../errors.js';
import { adminSignatureSteps, type AdminReplayCache } from './hmacAuth.js';

export interface AdminOperationsDeps {
  operations: Operations;
  adminApiSecret: string | undefined;
  clock: Clock;
  /** Admin MACs already accepted (admin_request_macs): a captured request cannot be replayed. */
  replays: AdminReplayCache;
}

const MAX_PAGE = 1000;

export function adminOperationsRouter(deps: AdminOperationsDeps): Router {
  const ops = deps.operations;
  const router = Router();
  const signed = adminSignatureSteps(
    { secret: deps.adminApiSecret, clock: deps.clock, replays: deps.replays },
    16 * 1024,
  );

  router.get('/admin/v1/deliveries/history', ...signed, async (req, res) => {
    const q = query(req, ['client_id', 'since', 'before', 'limit']);
    if (q.client_id === undefined) {
      throw invalid('UK.OBIE.Field.Missing', 'client_id is required', 'client_id');
    }
    const limit = pageSize(q.limit);
    const sets = await ops.clientHistory(parseClientId(q.client_id, 'client_id'), {
      ...(q.since !== undefined ? { since: parseTime(q.since, 'since') } : {}),
      ...(q.before !== undefined ? { before: q.before } : {}),
      limit: limit + 1,
    });
    const more = sets.length > limit;
    const page = more ? sets.slice(0, limit) : sets;
    res.json({ sets: page, next: more ? page[page.length - 1]!.jti : null });
  });

  router.get('/admin/v1/deliveries/:jti/history', ...signed, async (req, res) => {
    query(req, []);
    res.json(await ops.history(String(req.params.jti)));
  });

  router.post('/admin/v1/deliveries/replay', ...signed, async (req, res) => {
    const b = body(req, ['jti'], ['actor']);
    res.json(await ops.replay(parseJti(str(b, 'jti')), actorOf(b)));
  });

  router.post('/admin/v1/deliveries/replay-since', ...signed, async (req, res) => {
    const b = body(req, ['clientId', 'since'], ['limit', 'actor']);
    const limit = b.limit;
    if (limit !== undefined && typeof limit !== 'number') {
      throw invalid('UK.OBIE.Field.Invalid', 'limit must be a number', 'limit');
    }
    res.json(
      await ops.replaySince(
        parseClientId(str(b, 'clientId')),
        parseTime(str(b, 'since'), 'since'),
        limit,
        actorOf(b),
      ),
    );
  });

  router.get('/admin/v1/dead-letters', ...signed, async (req, res) => {
    const q = query(req, ['client_id', 'after', 'limit']);
    const limit = pageSize(q.limit);
    const list = await ops.deadLetters({
      ...(q.client_id !== undefined ? { clientId: parseClientId(q.client_id, 'client_id') } : {}),
      ...(q.after !== undefined ? { after: q.after } : {}),
      limit: limit + 1,
    });
    const more = list.length > limit;
    const page = more ? list.slice(0, limit) : list;
    res.json({ deadLetters: page, next: more ? page[page.length - 1]!.jti : null });
  });

  router.post('/admin/v1/dead-letters/retry', ...signed, async (req, res) => {
    const b = body(req, ['jti'], ['actor']);
    res.json(await ops.retryDeadLetter(parseJti(str(b, 'jti')), actorOf(b)));
  });

  router.post('/admin/v1/dead-letters/purge', ...signed, async (req, res) => {
    const b = body(req, ['jti'], ['actor']);
    res.json(await ops.purgeDeadLetter(parseJti(str(b, 'jti')), actorOf(b)));
  });

  router.get('/admin/v1/audit', ...signed, async (req, res) => {
    const q = query(req, ['client_id', 'before', 'limit']);
    const limit = pageSize(q.limit);
    const before = q.before === undefined ? undefined : Number(q.before);
    if (before !== undefined && (!Number.isSafeInteger(before) || before < 1)) {
      throw invalid('UK.OBIE.Field.Invalid', 'before must be an audit entry id', 'before');
    }
    const entries = await ops.auditLog({
      ...(q.client_id !== undefined ? { clientId: parseClientId(q.client_id, 'client_id') } : {}),
      ...(before !== undefined ? { before } : {}),
      limit: limit + 1,
    });
    const more = entries.length > limit;
    const page = more ? entries.slice(0, limit) : entries;
    res.json({ entries: page, next: more ? page[page.length - 1]!.id : null });
  });

  return router;
}

/** Query parameters, each at most once; anything unknown is a 400. */
function query(req: Request, allowed: string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(req.query as Record<string, unknown>)) {
    if (!allowed.includes(key)) {
      throw invalid('UK.OBIE.Field.Unexpected', `unknown query parameter ${key}`, key);
    }
    if (typeof value !== 'string') {
      throw invalid('UK.OBIE.Field.Invalid', `${key} must be given once`, key);
    }
    out[key] = value;
  }
  return out;
}

function pageSize(text: string | undefined): number {
  const limit = text === undefined ? 100 : Number(text);
  if (!/^\d+$/.test(text ?? '100') || limit < 1 || limit > MAX_PAGE) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      `limit must be a whole number from 1 to ${MAX_PAGE}`,
      'limit',
    );
  }
  return limit;
}

/** The signed JSON body: an object with the required members, and no others than `optional`. */
function body(req: Request, required: string[], optional: string[]): Record<string, unknown> {
  if (!req.is('application/json')) {
    throw invalid('UK.OBIE.Header.Invalid', 'send application/json', 'content-type');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(
      ((req as { rawBody?: Buffer }).rawBody ?? Buffer.alloc(0)).toString('utf8'),
    );
  } catch {
    throw invalid('UK.OBIE.Resource.InvalidFormat', 'request body is not valid JSON', 'body');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalid('UK.OBIE.Resource.InvalidFormat', 'request body must be a JSON object', 'body');
  }
  const b = parsed as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (!required.includes(key) && !optional.includes(key)) {
      throw invalid('UK.OBIE.Field.Unexpected', `unexpected member ${key}`, key);
    }
  }
  for (const key of required) {
    if (b[key] === undefined) throw invalid('UK.OBIE.Field.Missing', `${key} is required`, key);
  }
  return b;
}

function str(b: Record<string, unknown>, key: string): string {
  const v = b[key];
  if (typeof v !== 'string') throw invalid('UK.OBIE.Field.Invalid', `${key} must be a string`, key);
  return v;
}

function actorOf(b: Record<string, unknown>): Actor {
  if (b.actor === undefined) return { via: 'admin_api', name: 'admin-api' };
  if (typeof b.actor !== 'string' || b.actor.trim().length === 0 || b.actor.length > 200) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      'actor must be a string of 1 to 200 characters',
      'actor',
    );
  }
  return { via: 'admin_api', name: b.actor };
}
