// Middleware run in order as one middleware, as express would run them (a thrown error or a
// rejected promise goes to `next`), without a router layer each: each layer is one more path
// match and hand-on per request.
import type { RequestHandler } from 'express';

export function inSequence(handlers: readonly RequestHandler[]): RequestHandler {
  return (req, res, next) => {
    let i = 0;
    const step = (err?: unknown): void => {
      if (err) {
        next(err);
        return;
      }
      const handler = handlers[i++];
      if (!handler) {
        next();
        return;
      }
      try {
        const ret = handler(req, res, step) as unknown;
        if (ret instanceof Promise) {
          ret.catch((error: unknown) => next(error ?? new Error('Rejected promise')));
        }
      } catch (error) {
        next(error);
      }
    };
    step();
  };
}
