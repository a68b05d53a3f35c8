// Sending JSON whose exact bytes are known in advance: a detached signature (x-jws-signature)
// covers the bytes on the wire, so a response is serialised once, signed, and those bytes sent.
//
// The response goes out through res.json all the same, so that express-openapi-validator (which
// validates responses by wrapping res.json) still sees the object: `jsonBytes()` is mounted
// before the validator and makes res.json send the prepared bytes when it is handed the object
// they were made from.
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
  (res as WithPrepared)[PREPARED] = { body, text };
  res.status(status);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.json(body);
}
