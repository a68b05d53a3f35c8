// Public documents answered before express: the same status, headers and body the route sends,
// without the middleware chain. Their bytes are either fixed while the server runs (the
// authorisation server metadata) or read per request exactly as the route reads them (the JWKS:
// the key ring's cache, so never staler than the route; if that read fails, the request goes to
// express, which answers the failure as always). A route publishes them on its Router
// (publishFixedDocuments); the API app answers exactly `GET <path>` (no query string, no body, an
// Accept that is absent or plainly allows JSON) from here, and hands every other request (HEAD,
// other methods, a query string, any other path or header doubt) to express unchanged.
//
// Every step the express path takes for these requests is taken here too, in the same terms: the
// client certificate (clientCertificate.ts: direct mTLS or the trusted proxy's header, and
// revocation); a request it would refuse goes to express, which refuses it exactly as before (and
// so does one carrying an ignored certificate header, which express logs); the interaction id
// (interactionId.ts: echoed when usable, else a new one); the request metrics (the same series:
// listener, route pattern, method, status); and the request's log line at the same level.
// What express would add for these paths is nothing else: the OpenAPI validator accepts any such
// request (the only parameter is the x-fapi-interaction-id header, any string), and no rate limit
// or token is involved.
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Router } from 'express';
import {
  acceptedCertificate,
  interactionIdOf,
  recordAnswer,
  type AheadOfExpressDeps,
  type AnswerAhead,
} from './aheadOfExpress.js';
import { createRequestContext } from './context.js';
import { INTERACTION_ID_HEADER } from './interactionId.js';
import { ACCEPTS_JSON } from './openapi.js';

export interface FixedDocument {
  path: string;
  /** The route's own headers, in the order it sets them (after the security headers). */
  headers: [string, string][];
  /** The body: fixed, or read per request as the route reads it. */
  body: Buffer | (() => Promise<Buffer>);
}

const FIXED = Symbol('fixedDocuments');
type WithFixed = Router & { [FIXED]?: FixedDocument[] };

/**
 * Marks `router`'s GET answers for these paths as fixed (the router still serves them too). They
 * are answered ahead of every router: publish only paths no earlier router treats differently.
 */
export function publishFixedDocuments(router: Router, documents: FixedDocument[]): Router {
  (router as WithFixed)[FIXED] = documents;
  return router;
}

export function fixedDocumentsOf(routers: readonly Router[]): FixedDocument[] {
  return routers.flatMap((r) => (r as WithFixed)[FIXED] ?? []);
}

export interface FixedResponderDeps extends AheadOfExpressDeps {
  documents: readonly FixedDocument[];
}

/**
 * A request for a fixed document is taken on; one whose body cannot be read is handed to
 * express.
 */
export function fixedResponder(deps: FixedResponderDeps): AnswerAhead {
  const answers = new Map<string, Answer>();
  for (const doc of deps.documents) {
    const head = [...deps.securityHeaders, ...doc.headers].flat();
    answers.set(doc.path, { path: doc.path, head, body: doc.body });
  }
  const send = (answer: Answer, res: ServerResponse, id: string, body: Buffer, started: number) => {
    // Gone while the body was read: express would have written nothing, logged and counted nothing.
    if (res.destroyed) return;
    const length = String(body.length);
    res.writeHead(200, [INTERACTION_ID_HEADER, id, ...answer.head, 'Content-Length', length]);
    res.end(body);
    recordAnswer(deps, () => createRequestContext(deps.logger, id).log, {
      method: 'GET',
      path: answer.path,
      status: 200,
      started,
    });
  };
  return (req, res, fallback) => {
    if (req.method !== 'GET') return false;
    const answer = answers.get(req.url ?? '');
    if (answer === undefined) return false;
    const started = performance.now();
    const headers = req.headers;
    if (!plainRequest(headers)) return false;
    if (!acceptedCertificate(deps, req)) return false;
    const id = interactionIdOf(req);
    const body = answer.body;
    if (Buffer.isBuffer(body)) send(answer, res, id, body, started);
    else body().then((b) => send(answer, res, id, b, started), fallback);
    return true;
  };
}

interface Answer {
  path: string;
  /** Security headers, then the route's, flat (name, value, ...). */
  head: string[];
  body: FixedDocument['body'];
}

function plainRequest(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  if (accept !== undefined && !ACCEPTS_JSON.has(accept)) return false;
  // A GET with a body: express reads and validates requests with bodies; leave those to it.
  const length = headers['content-length'];
  return (length === undefined || length === '0') && headers['transfer-encoding'] === undefined;
}
