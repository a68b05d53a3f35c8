// x-fapi-interaction-id: echoed when the caller sends a usable one, else a new UUID; set on every
// response (errors included) and carried by every log line of the request (and, once the caller
// is authenticated, its client id: see identifyClient). Also logs one line per request when it
// finishes.
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from '../logger.js';
import { createRequestContext } from './context.js';

export const INTERACTION_ID_HEADER = 'x-fapi-interaction-id';

// Visible ASCII only, bounded: the value goes back into a response header and into logs.
const USABLE = /^[\x21-\x7e]{1,128}$/;
// Probes and scrapes arrive every few seconds; their lines would drown the rest.
const QUIET = /^\/(health|metrics)\b/;

export function interactionId(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const id = interactionIdFor(req.get(INTERACTION_ID_HEADER));
    res.setHeader(INTERACTION_ID_HEADER, id);
    const ctx = createRequestContext(logger, id);
    res.locals.ctx = ctx;
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      logRequest(logger, () => ctx.log, {
        method: req.method,
        path: req.path,
        status: res.statusCode,
        elapsedMs: () => Number(process.hrtime.bigint() - started) / 1e6,
      });
    });
    next();
  };
}

/** The caller's x-fapi-interaction-id when usable, else a new one. */
export function interactionIdFor(given: string | undefined): string {
  return given !== undefined && USABLE.test(given) ? given : randomUUID();
}

/**
 * A request's closing log line, in one shape wherever the response was sent (express, or the
 * fixed responses of fixedResponses.ts). Nothing is made when its level is off: no child logger,
 * no timing.
 */
export function logRequest(
  logger: Logger,
  requestLog: () => Logger,
  request: { method: string; path: string; status: number; elapsedMs: () => number },
): void {
  const level = requestLogLevel(request.status, request.path);
  if (!logger.isLevelEnabled(level)) return;
  const line = {
    method: request.method,
    path: request.path,
    status: request.status,
    ms: Math.round(request.elapsedMs() * 10) / 10,
  };
  requestLog()[level](line, level === 'error' ? 'request failed' : 'request');
}

/** The level of a request's closing log line. */
function requestLogLevel(status: number, path: string): 'error' | 'info' | 'debug' {
  // 503 is an announced outage (logged once where it starts and ends), not a failure here.
  if (status >= 500 && status !== 503) return 'error';
  return QUIET.test(path) ? 'debug' : 'info';
}
