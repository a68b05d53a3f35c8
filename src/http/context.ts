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

/** Records who the caller is: every later log line of the request carries the client id. */
export function identifyClient(ctx: RequestContext, clientId: string): void {
  ctx.clientId = clientId;
  ctx.log = ctx.log.child({ clientId });
}
