// The classes node makes each request and response of a listener with, so that they are born
// with the express app's prototypes. Express gives every request and response its own
// prototypes as they enter the app (Object.setPrototypeOf in app.handle); V8 then no longer
// shares the object's hidden class with other requests, and every property added to it later
// (express's and ours: locals, params, route, body, the context) builds new hidden classes. That
// was about 40 µs per request in pure JavaScript (bench/README: "Where a request's CPU went"),
// more than the whole bare HTTPS answer. With these classes (node's IncomingMessage and
// ServerResponse server options) the objects already have the prototypes express sets, and
// setting a prototype an object already has is a no-op.
import http, { type RequestListener } from 'node:http';
import type { Express } from 'express';

export interface RequestClasses {
  IncomingMessage: typeof http.IncomingMessage;
  ServerResponse: typeof http.ServerResponse;
}

/** What a listener serves: the handler, and the classes its requests should be made with. */
export interface ServedApp {
  listener: RequestListener;
  classes: RequestClasses;
}

/**
 * Classes whose prototypes are the app's request and response prototypes (express's methods and
 * `app` reached through them), made the app's own. Call once per app, before it serves.
 */
export function requestClassesOf(app: Express): RequestClasses {
  class AppRequest extends http.IncomingMessage {}
  class AppResponse extends http.ServerResponse {}
  Object.setPrototypeOf(AppRequest.prototype, app.request);
  Object.setPrototypeOf(AppResponse.prototype, app.response);
  // express's types name the prototypes by what requests become; these are them.
  app.request = AppRequest.prototype as unknown as Express['request'];
  app.response = AppResponse.prototype as unknown as Express['response'];
  return {
    IncomingMessage: AppRequest,
    ServerResponse: AppResponse as typeof http.ServerResponse,
  };
}

/** An app served with its request classes. */
export function served(app: Express, listener: RequestListener = app): ServedApp {
  return { listener, classes: requestClassesOf(app) };
}
