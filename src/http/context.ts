// Per-request context, kept in res.locals so handlers and middleware share one typed object.
import type { X509Certificate } from 'node:crypto';
import type { Response } from 'express';
import type { Logger } from '../logger.js';

export interface RequestContext {
  interactionId: string;
  log: Logger;
  /** The TPP's transport certificate: from the mTLS handshake, or a trusted proxy's header. */
  clientCertificate?: X509Certificate;
  /** Set by the access-token middleware; every TPP-owned query is keyed by it. */
  clientId?: string;
  scopes?: string[];
}

export function requestContext(res: Response): RequestContext {
  const ctx = res.locals.ctx as RequestContext | undefined;
  if (!ctx) throw new Error('request context missing: interactionId middleware not mounted');
  return ctx;
}

const BIND = Symbol('bindLog');
type LazyContext = RequestContext & { [BIND]?: (bindings: Record<string, string>) => void };

/**
 * A request's context whose child logger is made on first use: at LOG_LEVEL=warn most requests
 * log nothing, and two pino children per request were a measurable part of a GET's CPU.
 */
export function createRequestContext(logger: Logger, interactionId: string): RequestContext {
  let bindings: Record<string, string> = { interactionId };
  let log: Logger | undefined;
  const ctx = { interactionId } as LazyContext;
  Object.defineProperty(ctx, 'log', {
    enumerable: true,
    get: () => (log ??= logger.child(bindings)),
    set: (l: Logger) => (log = l),
  });
  ctx[BIND] = (more) => {
    if (log) log = log.child(more);
    else bindings = { ...bindings, ...more };
  };
  return ctx;
}

/** Records who the caller is: every later log line of the request carries the client id. */
export function identifyClient(ctx: RequestContext, clientId: string): void {
  ctx.clientId = clientId;
  const bind = (ctx as LazyContext)[BIND];
  if (bind) bind({ clientId });
  else ctx.log = ctx.log.child({ clientId });
}
