// What every request answered ahead of express (fixedResponses.ts, directToken.ts) does as express
// would: the client certificate check (a request it would refuse, or one carrying an ignored
// certificate header, is left to express, which refuses or logs it as always), the interaction id
// (echoed when usable, else a new one), and once answered the request metrics and log line.
import type { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import type { HttpRequestRecorder } from '../metrics.js';
import type { ClientCertificateCheck } from './clientCertificate.js';
import { INTERACTION_ID_HEADER, interactionIdFor, logRequest } from './interactionId.js';

export interface AheadOfExpressDeps {
  /** helmet's headers, in its order (securityHeaders.ts). */
  securityHeaders: readonly [string, string][];
  certificate: ClientCertificateCheck;
  logger: Logger;
  record?: HttpRequestRecorder | undefined;
}

/**
 * Takes on a request and returns true, or returns false and leaves `req` untouched; a request
 * taken on that it cannot finish after all (a body it cannot use, a read that failed) is handed to
 * `express`.
 */
export type AnswerAhead = (
  req: IncomingMessage,
  res: ServerResponse,
  express: () => void,
) => boolean;

/** A certificate header on a direct connection: express logs it (a warning) and answers. */
class IgnoredHeader extends Error {}

const onIgnoredHeader = () => {
  throw new IgnoredHeader();
};

/** The request's certificate when the checks accept it; undefined leaves the request to express. */
export function acceptedCertificate(
  deps: AheadOfExpressDeps,
  req: IncomingMessage,
): X509Certificate | undefined {
  try {
    return deps.certificate(req, onIgnoredHeader);
  } catch {
    return undefined;
  }
}

/** The caller's x-fapi-interaction-id when usable, else a new one. */
export function interactionIdOf(req: IncomingMessage): string {
  const value = req.headers[INTERACTION_ID_HEADER];
  return interactionIdFor(Array.isArray(value) ? value.join(', ') : value);
}

/** Counts and logs an answered request in the series and shape express uses. */
export function recordAnswer(
  deps: AheadOfExpressDeps,
  requestLog: () => Logger,
  answer: { method: string; path: string; status: number; started: number },
): void {
  const elapsedMs = () => performance.now() - answer.started;
  deps.record?.(answer.path, answer.method, answer.status, elapsedMs() / 1000);
  logRequest(deps.logger, requestLog, { ...answer, elapsedMs });
}
