// The retry arithmetic of push: full-jitter back-off, Retry-After, and when retrying ends.
import { describe, expect, it } from 'vitest';
import {
  backoffDelayMs,
  MAX_BACKOFF_MS,
  parseRetryAfter,
  retryDelayMs,
} from '../src/push/backoff.js';
import { decideOutcome, isEndpointDown } from '../src/push/outcome.js';
import type { PostResult } from '../src/push/transmitter.js';

const policy = { retryBaseMs: 1000, maxAttempts: 10, maxAgeSeconds: 86_400 };
const now = Date.parse('2026-11-23T12:00:00Z');
const response = (status: number, headers: Record<string, string> = {}, body = ''): PostResult => ({
  kind: 'response',
  status,
  headers,
  body,
  truncated: false,
  latencyMs: 5,
});

describe('push back-off', () => {
  it('when attempt n failed, then the delay is between 0 and base·2^(n-1), capped at one hour', () => {
    expect(backoffDelayMs(1, 1000, () => 0.999)).toBe(999);
    expect(backoffDelayMs(3, 1000, () => 0.999)).toBe(3996);
    expect(backoffDelayMs(3, 1000, () => 0)).toBe(0);
    expect(backoffDelayMs(40, 1000, () => 0.999)).toBe(Math.floor(0.999 * MAX_BACKOFF_MS));
  });

  it('when Retry-After is given in seconds or as an HTTP date, then it is read as a delay; anything else is ignored', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(new Date(now + 30_000).toUTCString(), now)).toBe(30_000);
    expect(parseRetryAfter(new Date(now - 30_000).toUTCString(), now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('when Retry-After asks for longer than the back-off, then it wins; when shorter, the back-off does', () => {
    expect(retryDelayMs({ attempt: 1, baseMs: 1000, retryAfterMs: 5_000, random: () => 0.5 })).toBe(
      5_000,
    );
    expect(retryDelayMs({ attempt: 5, baseMs: 1000, retryAfterMs: 100, random: () => 0.5 })).toBe(
      8_000,
    );
  });
});

describe('push outcome', () => {
  const ctx = (attempt: number, ageMs = 0) => ({
    attempt,
    createdAt: new Date(now - ageMs),
    nowMs: now,
    random: () => 0.5,
  });

  it('when the TPP answers 202, then the SET is accepted', () => {
    expect(decideOutcome(response(202), ctx(1), policy)).toMatchObject({
      outcome: 'accepted',
      endpointHealthy: true,
    });
  });

  it('when the TPP answers 400 with an over-long err, then it is cut to 40 characters', () => {
    const o = decideOutcome(
      response(400, {}, JSON.stringify({ err: 'x'.repeat(60) })),
      ctx(1),
      policy,
    );
    expect(o).toMatchObject({ outcome: 'rejected', err: 'x'.repeat(40), errDescription: null });
  });

  it('when a 3xx or other 4xx comes back, then it is retried like a 5xx (redirects are not followed)', () => {
    expect(
      decideOutcome(response(302, { location: 'https://elsewhere.example/' }), ctx(1), policy),
    ).toMatchObject({
      outcome: 'retry',
      statusCode: 302,
      delayMs: 500,
      endpointHealthy: false,
    });
    expect(decideOutcome(response(404), ctx(1), policy).outcome).toBe('retry');
  });

  it('when Retry-After comes with a 500, then it is not taken as a floor', () => {
    expect(decideOutcome(response(500, { 'retry-after': '60' }), ctx(1), policy).delayMs).toBe(500);
    expect(decideOutcome(response(503, { 'retry-after': '60' }), ctx(1), policy).delayMs).toBe(
      60_000,
    );
  });

  it('when the last attempt fails, or the next would come after the maximum age, then the push has failed', () => {
    expect(decideOutcome(response(500), ctx(10), policy)).toMatchObject({
      outcome: 'failed',
      delayMs: null,
    });
    const old = decideOutcome(response(429, { 'retry-after': '3600' }), ctx(2, 86_000_000), policy);
    expect(old.outcome).toBe('failed');
    expect(old.error).toMatch(/maximum age reached/);
  });

  it('when the connection fails, then the error text is kept and the SET retried', () => {
    const o = decideOutcome(
      {
        kind: 'error',
        code: 'connection',
        message: 'ECONNREFUSED: connect ECONNREFUSED',
        latencyMs: 1,
      },
      ctx(1),
      policy,
    );
    expect(o).toMatchObject({
      outcome: 'retry',
      statusCode: null,
      error: 'ECONNREFUSED: connect ECONNREFUSED',
    });
  });
});

describe('push breaker signals', () => {
  const error = (code: 'timeout' | 'address_refused' | 'tls' | 'connection'): PostResult => ({
    kind: 'error',
    code,
    message: code,
    latencyMs: 1,
  });

  it('when the endpoint refuses, breaks, times out, or answers 429/502/503/504, then it counts as down', () => {
    for (const r of [error('connection'), error('timeout'), error('tls')])
      expect(isEndpointDown(r)).toBe(true);
    for (const status of [429, 502, 503, 504]) expect(isEndpointDown(response(status))).toBe(true);
  });

  it('when the endpoint answers 500, 404 or a redirect, or our address policy refused it, then only that SET failed', () => {
    for (const status of [500, 404, 302, 202, 400])
      expect(isEndpointDown(response(status))).toBe(false);
    expect(isEndpointDown(error('address_refused'))).toBe(false);
  });

  it('when a 503 or 429 carries Retry-After, then the outcome says how long the endpoint asked for', () => {
    const o = decideOutcome(
      response(503, { 'retry-after': '2' }),
      { attempt: 1, createdAt: new Date(now), nowMs: now },
      policy,
    );
    expect(o).toMatchObject({ endpointDown: true, retryAfterMs: 2_000 });
    expect(
      decideOutcome(
        response(500, { 'retry-after': '2' }),
        { attempt: 1, createdAt: new Date(now), nowMs: now },
        policy,
      ).retryAfterMs,
    ).toBeNull();
  });
});
