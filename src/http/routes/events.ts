// POST /open-banking/v3.1/events — the Aggregated Polling API. Thin: authenticate, hand the body
// to the polling domain, answer 200 (DECISIONS.md: always 200 with both members). A request
// the client abandons stops its long poll.
import express, { Router } from 'express';
import type { Polling } from '../../domain/polling.js';
import { AppError } from '../../errors.js';
import { requireAccessToken, POLLING_SCOPES, type AccessTokenDeps } from '../auth/accessToken.js';
import { requestContext } from '../context.js';
import { methodNotAllowed } from '../errorMapper.js';
import { verifyUtf8 } from '../strictJson.js';

export const EVENTS_PATH = '/open-banking/v3.1/events';

export function eventsRouter(deps: AccessTokenDeps & { polling: Polling }): Router {
  const router = Router();
  router.post(
    EVENTS_PATH,
    requireAccessToken(deps, { scopes: POLLING_SCOPES }),
    (req, _res, next) => {
      // A body of another media type is refused before anything tries to parse it.
      if (req.is('application/json') === false)
        throw new AppError('unsupported_media_type', 'send application/json');
      next();
    },
    express.json({ limit: '64kb', strict: false, verify: verifyUtf8 }),
    async (req, res) => {
      const aborted = new AbortController();
      res.on('close', () => aborted.abort());
      const clientId = requestContext(res).clientId!;
      const answer = await deps.polling.poll(clientId, req.body, aborted.signal);
      res.status(200).json(answer);
    },
  );
  router.all(EVENTS_PATH, methodNotAllowed(['POST']));
  return router;
}
