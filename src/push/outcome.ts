// What an answer to a push means (DECISIONS.md "Push outcome"; RFC 8935 §2.2-2.3):
// - 202: delivered. The SET is resolved, as if acknowledged by a poll.
// - 400: rejected by the TPP. Resolved, with the TPP's `err`/`description` when the body is
//   the RFC 8935 JSON error, else `http_400`; never sent again.
// - anything else (5xx, 429, other 4xx, 3xx: redirects are not followed), time-outs, refused
//   addresses, TLS and connection errors: retried after a back-off, until PUSH_MAX_ATTEMPTS
//   attempts were made or the next one would come after PUSH_MAX_AGE_SECONDS from the SET's
//   creation; then `failed`, and the SET stays pending for polling.
// Whether an answer says the endpoint itself is down (not just this SET failed) feeds the
// circuit breaker: refused or broken connections, TLS failures, time-outs, and 429, 502, 503,
// 504. A 500 or a 404 says the server is up and this request failed.
import type { AttemptOutcome } from '../db/stores/pushStore.js';
import { parseRetryAfter, retryDelayMs } from './backoff.js';
import type { PostResult } from './transmitter.js';

export interface OutcomePolicy {
  retryBaseMs: number;
  maxAttempts: number;
  maxAgeSeconds: number;
}

export interface Outcome {
  outcome: AttemptOutcome;
  statusCode: number | null;
  /** retry: milliseconds until the next attempt. */
  delayMs: number | null;
  /** rejected: stored as the SET's err / err_description. */
  err: string | null;
  errDescription: string | null;
  /** For the attempt row and the log: why it did not succeed. */
  error: string | null;
  /** The endpoint answered the way a working endpoint does (202 or 400): breaker success. */
  endpointHealthy: boolean;
  /** The answer says the endpoint is down or overloaded (see above). */
  endpointDown: boolean;
  /** 429/503 with a Retry-After: how long the endpoint asked to be left alone (ms). */
  retryAfterMs: number | null;
}

const DOWN_STATUSES = new Set([429, 502, 503, 504]);

/** Refused or broken connections, TLS failures, time-outs, 429/502/503/504. */
export function isEndpointDown(result: PostResult): boolean {
  if (result.kind === 'error') return result.code !== 'address_refused';
  return DOWN_STATUSES.has(result.status);
}

const ERR_MAX = 40;
const DESCRIPTION_MAX = 1000;
const EXCERPT_MAX = 500;

export function decideOutcome(
  result: PostResult,
  ctx: { attempt: number; createdAt: Date; nowMs: number; random?: () => number },
  policy: OutcomePolicy,
): Outcome {
  if (result.kind === 'response' && result.status === 202) {
    return {
      outcome: 'accepted',
      statusCode: 202,
      delayMs: null,
      err: null,
      errDescription: null,
      error: null,
      endpointHealthy: true,
      endpointDown: false,
      retryAfterMs: null,
    };
  }
  if (result.kind === 'response' && result.status === 400) {
    const reason = rfc8935Error(result.body);
    return {
      outcome: 'rejected',
      statusCode: 400,
      delayMs: null,
      err: reason?.err ?? 'http_400',
      errDescription: reason ? reason.description : excerpt(result.body, DESCRIPTION_MAX) || null,
      error: `http 400: ${excerpt(result.body, EXCERPT_MAX) || '(empty body)'}`,
      endpointHealthy: true,
      endpointDown: false,
      retryAfterMs: null,
    };
  }

  const statusCode = result.kind === 'response' ? result.status : null;
  const error =
    result.kind === 'response'
      ? `http ${result.status}${result.body ? `: ${excerpt(result.body, EXCERPT_MAX)}` : ''}`
      : result.message;
  const retryAfterMs =
    result.kind === 'response' && (result.status === 429 || result.status === 503)
      ? parseRetryAfter(result.headers['retry-after'], ctx.nowMs)
      : undefined;
  const delayMs = retryDelayMs({
    attempt: ctx.attempt,
    baseMs: policy.retryBaseMs,
    retryAfterMs,
    ...(ctx.random ? { random: ctx.random } : {}),
  });
  const deadline = ctx.createdAt.getTime() + policy.maxAgeSeconds * 1000;
  const exhausted = ctx.attempt >= policy.maxAttempts || ctx.nowMs + delayMs > deadline;
  return {
    outcome: exhausted ? 'failed' : 'retry',
    statusCode,
    delayMs: exhausted ? null : delayMs,
    err: null,
    errDescription: null,
    error: exhausted
      ? `${error} (no more attempts: ${ctx.attempt >= policy.maxAttempts ? `${ctx.attempt} made` : 'maximum age reached'})`.slice(
          0,
          2000,
        )
      : error.slice(0, 2000),
    endpointHealthy: false,
    endpointDown: isEndpointDown(result),
    retryAfterMs: retryAfterMs ?? null,
  };
}

/** `{"err": "...", "description": "..."}` (RFC 8935 §2.3), or undefined. */
function rfc8935Error(body: string): { err: string; description: string | null } | undefined {
  try {
    const parsed = JSON.parse(body) as unknown;
    if (!parsed || typeof parsed !== 'object') return undefined;
    const { err, description } = parsed as { err?: unknown; description?: unknown };
    if (typeof err !== 'string' || err.length === 0) return undefined;
    return {
      err: err.slice(0, ERR_MAX),
      description: typeof description === 'string' ? description.slice(0, DESCRIPTION_MAX) : null,
    };
  } catch {
    return undefined;
  }
}

/** The start of a body, printable and on one line. */
function excerpt(body: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = body.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}
