// When to try a SET again. Exponential back-off with full jitter (a random delay between 0 and
// base·2^(attempt-1), capped): retries of many SETs spread out instead of arriving at a
// recovering TPP together. A Retry-After header (429/503) is a floor under that delay.

/** No single back-off step is longer than this, however many attempts were made. */
export const MAX_BACKOFF_MS = 60 * 60 * 1000;

/** Full-jitter delay after attempt number `attempt` (1 = the first attempt failed). */
export function backoffDelayMs(
  attempt: number,
  baseMs: number,
  random: () => number = Math.random,
  capMs = MAX_BACKOFF_MS,
): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
  return Math.floor(random() * ceiling);
}

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Returns milliseconds from
 * `nowMs`, or undefined when absent or unparseable. A date in the past means "now" (0).
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v), 365 * 24 * 3600) * 1000;
  const date = Date.parse(v);
  if (Number.isNaN(date) || !/[a-z]/i.test(v)) return undefined;
  return Math.max(0, date - nowMs);
}

/** The delay before the next attempt: the jittered back-off, at least what Retry-After asks. */
export function retryDelayMs(opts: {
  attempt: number;
  baseMs: number;
  retryAfterMs: number | undefined;
  random?: () => number;
}): number {
  const jitter = backoffDelayMs(opts.attempt, opts.baseMs, opts.random);
  return Math.max(jitter, opts.retryAfterMs ?? 0);
}
