// {basePath}/events — the Aggregated Polling API (3.1.11 and 4.0: the same bodies). Thin: mounted
// by src/http/routes/obieApi.ts once per API version, after the access token was verified;
// checks the scope, reads and validates the body, hands it to the polling domain, answers 200
// (DECISIONS.md: always 200 with both members). A request the client abandons stops its long
// poll.
import type { RequestHandler } from 'express';
import type { Polling } from '../../domain/polling.js';
import { AppError } from '../../errors.js';
import { requireAccessToken, POLLING_SCOPES, type AccessTokenDeps } from '../auth/accessToken.js';
import { requestContext } from '../context.js';
import type { VersionRoutes } from './obieApi.js';

/** Relative to the API version's base path. */
export const EVENTS = '/events';
/** The v3.1 path (kept for callers that name it). */
export const EVENTS_PATH = '/open-banking/v3.1/events';

export function eventsRoutes(
  routes: VersionRoutes,
  deps: AccessTokenDeps & { polling: Polling },
  body: RequestHandler[],
): void {
  const jsonOnly: RequestHandler = (req, _res, next) => {
    // A body of another media type is refused before anything tries to parse it.
    if (req.is('application/json') === false)
      throw new AppError('unsupported_media_type', 'send application/json');
    next();
  };
  const poll: RequestHandler = async (req, res) => {
    const aborted = new AbortController();
    res.on('close', () => aborted.abort());
    const clientId = requestContext(res).clientId!;
    const answer = await deps.polling.poll(clientId, req.body, aborted.signal);
    res.status(200).json(answer);
  };
  routes.path(EVENTS, {
    post: [requireAccessToken(deps, { scopes: POLLING_SCOPES }), jsonOnly, ...body, poll],
  });
}
