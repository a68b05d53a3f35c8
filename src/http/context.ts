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

/**
 * A request's context whose child logger is made on first use: at LOG_LEVEL=warn most requests
 * log nothing, and two pino children per request were a measurable part of a GET's CPU.
 */
class LazyRequestContext implements RequestContext {
  clientCertificate?: X509Certificate;
  clientId?: string;
  scopes?: string[];
  private made: Logger | undefined;
  private bindings: Record<string, string>;

  constructor(
    private readonly logger: Logger,
    readonly interactionId: string,
  ) {
    this.bindings = { interactionId };
  }

  get log(): Logger {
    return (this.made ??= this.logger.child(this.bindings));
  }

  set log(log: Logger) {
    this.made = log;
  }

  bind(more: Record<string, string>): void {
    if (this.made) this.made = this.made.child(more);
    else this.bindings = { ...this.bindings, ...more };
  }
}

export function createRequestContext(logger: Logger, interactionId: string): RequestContext {
  return new LazyRequestContext(logger, interactionId);
}

/** Records who the caller is: every later log line of the request carries the client id. */
export function identifyClient(ctx: RequestContext, clientId: string): void {
  ctx.clientId = clientId;
  if (ctx instanceof LazyRequestContext) ctx.bind({ clientId });
  else ctx.log = ctx.log.child({ clientId });
}
