// helmet's response headers, computed once. With its defaults helmet sets the same static values
// on every response through a dozen small middlewares; running helmet() once at start against a
// response that only records what is done to it keeps helmet the source of truth, and each
// request then gets the recorded steps replayed by one middleware (the fixed responses of
// fixedResponses.ts send the same headers).
import type { RequestHandler } from 'express';
import helmet from 'helmet';

/** One recorded step: a header set to `value`, or removed (`value` undefined). */
export interface HeaderStep {
  name: string;
  value: string | undefined;
}

export function helmetHeaderSteps(): HeaderStep[] {
  const steps: HeaderStep[] = [];
  const recorder = {
    setHeader(name: string, value: unknown) {
      steps.push({ name, value: String(value) });
    },
    removeHeader(name: string) {
      steps.push({ name, value: undefined });
    },
  };
  let outcome: unknown = 'pending';
  helmet()({} as never, recorder as never, (err?: unknown) => (outcome = err));
  // Defaults only: every step is synchronous and static (no nonce, nothing read from the request).
  if (outcome !== undefined)
    throw new Error(`helmet did not finish synchronously: ${String(outcome)}`);
  return steps;
}

/** The headers helmet sets, in its order (what a fixed response sends). */
export function securityHeaderPairs(steps: readonly HeaderStep[]): [string, string][] {
  const out: [string, string][] = [];
  for (const { name, value } of steps) if (value !== undefined) out.push([name, value]);
  return out;
}

/** Replays helmet's steps on every response. */
export function securityHeaders(steps: readonly HeaderStep[]): RequestHandler {
  return (_req, res, next) => {
    for (const { name, value } of steps) {
      if (value === undefined) res.removeHeader(name);
      else res.setHeader(name, value);
    }
    next();
  };
}
