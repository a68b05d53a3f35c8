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
    const given = req.get(INTERACTION_ID_HEADER);
    const id = given !== undefined && USABLE.test(given) ? given : randomUUID();
    res.setHeader(INTERACTION_ID_HEADER, id);
    const ctx = createRequestContext(logger, id);
    res.locals.ctx = ctx;
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      // 503 is an announced outage (logged once where it starts and ends), not a failure here.
      const level =
        res.statusCode >= 500 && res.statusCode !== 503
          ? 'error'
          : QUIET.test(req.path)
            ? 'debug'
            : 'info';
      if (!logger.isLevelEnabled(level)) return; // no line, no child logger to make
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const line = {
        method: req.method,
        path: req.path,
        status: res.statusCode,
        ms: Math.round(ms * 10) / 10,
      };
      ctx.log[level](line, level === 'error' ? 'request failed' : 'request');
    });
    next();
  };
}
