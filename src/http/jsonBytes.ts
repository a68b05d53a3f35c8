// Sending JSON whose exact bytes are known in advance: a detached signature (x-jws-signature)
// covers the bytes on the wire, so a response is serialised once, signed, and those bytes sent.
//
// When responses are validated (VALIDATE_RESPONSES), express-openapi-validator wraps res.json to
// check the object: the response then goes out through res.json, and `jsonBytes()`, mounted
// before the validator (src/http/openapi.ts), makes res.json send the prepared bytes when it is
// handed the object they were made from. When nothing wraps res.json (the default), the bytes are
// sent directly.
import type { RequestHandler, Response } from 'express';

const PREPARED = Symbol('preparedJson');

interface Prepared {
  body: unknown;
  text: string;
}

type WithPrepared = Response & { [PREPARED]?: Prepared };

export function jsonBytes(): RequestHandler {
  return (_req, res, next) => {
    const original = res.json;
    res.json = function json(this: WithPrepared, body: unknown) {
      const prepared = this[PREPARED];
      if (prepared && prepared.body === body) return this.send(prepared.text);
      return original.call(this, body);
    };
    next();
  };
}

/** Sends `text` (which must be JSON.stringify(body)) as `application/json; charset=utf-8`. */
export function sendPreparedJson(res: Response, status: number, body: unknown, text: string): void {
  res.status(status);
  res.setHeader('Content-Type', JSON_UTF8);
  // express's own res.json lives on the prototype; an own one is a validator's wrapper.
  if (Object.hasOwn(res, 'json')) {
    (res as WithPrepared)[PREPARED] = { body, text };
    res.json(body);
  } else if (plainSend(res)) {
    // What res.send would do here, without re-parsing the Content-Type we just set.
    res.setHeader('Content-Length', Buffer.byteLength(text));
    res.end(text);
  } else {
    res.send(text);
  }
}

const JSON_UTF8 = 'application/json; charset=utf-8';

/**
 * res.send answers a conditional request (If-None-Match, If-Modified-Since: `req.fresh`) with 304,
 * a HEAD without a body, and adds an ETag where the app makes them; anything else gets exactly the
 * status, Content-Type, Content-Length and bytes that the fast path sends.
 */
function plainSend(res: Response): boolean {
  const { method, headers } = res.req;
  return (
    method !== 'HEAD' &&
    headers['if-none-match'] === undefined &&
    headers['if-modified-since'] === undefined &&
    res.app.get('etag fn') === undefined
  );
}
