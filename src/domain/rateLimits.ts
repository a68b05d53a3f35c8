// Per-client request budgets: a token bucket per key, held in this replica's memory. Cheap on
// the hot path (a Map lookup and some arithmetic, no database round trip), and shared across
// replicas by division: the configured limits are for the whole deployment, and each of
// RATE_LIMIT_REPLICAS replicas enforces its share. A load balancer that spreads a client's
// requests over the replicas gives it about the configured limit; one that pins a client to one
// replica gives it that replica's share (the safe side).
//
// Keys: at /token, the transport certificate (its SHA-256 thumbprint), which is what a caller
// holds before it is authenticated, so nobody can spend another TPP's budget by naming its
// client id; on the API, the authenticated client id.
import type { X509Certificate } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { certificateThumbprint } from '../crypto/certificateThumbprint.js';
import { AppError, detail, OAuthError } from '../errors.js';

const MAX_KEYS = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

/** A token bucket per key: `capacity` at most, refilled at `perSecond`. */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond: number,
    private readonly capacity: number,
    private readonly clock: Clock,
  ) {}

  /** 0 when a request may go ahead (and is counted), else the seconds until one may. */
  take(key: string): number {
    const now = this.clock.now();
    const bucket = this.buckets.get(key);
    let tokens = this.capacity;
    if (bucket) {
      tokens = Math.min(this.capacity, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
      this.buckets.delete(key); // re-inserted below: the Map stays in least-recently-used order
    } else if (this.buckets.size >= MAX_KEYS) {
      // Bounded memory: forget the least recently used keys (a forgotten bucket is full anyway
      // unless that client was busy a moment ago).
      const oldest = [...this.buckets.keys()].slice(0, MAX_KEYS / 10);
      for (const k of oldest) this.buckets.delete(k);
    }
    if (tokens >= 1) {
      this.buckets.set(key, { tokens: tokens - 1, at: now });
      return 0;
    }
    this.buckets.set(key, { tokens, at: now });
    return Math.max(1, Math.ceil((1 - tokens) / this.perSecond));
  }
}

export class RateLimits {
  private readonly tokenBuckets: TokenBuckets | undefined;
  private readonly apiBuckets: TokenBuckets | undefined;

  constructor(config: Config['rateLimits'], clock: Clock) {
    const share = (limit: number) => limit / config.replicas;
    if (config.tokensPerMinute > 0) {
      const perMinute = share(config.tokensPerMinute);
      this.tokenBuckets = new TokenBuckets(perMinute / 60, Math.max(1, perMinute), clock);
    }
    if (config.apiPerSecond > 0) {
      const perSecond = share(config.apiPerSecond);
      this.apiBuckets = new TokenBuckets(perSecond, Math.max(1, perSecond), clock);
    }
  }

  /** /token: 429 `slow_down` (OAuth shape) with Retry-After once the certificate's budget is spent. */
  checkTokenRequest(certificate: X509Certificate): void {
    if (!this.tokenBuckets) return;
    const wait = this.tokenBuckets.take(certificateThumbprint(certificate));
    if (wait > 0) {
      const err = new OAuthError(
        'slow_down',
        'too many token requests: retry after the time in Retry-After',
        `token rate limit reached for certificate ${certificateThumbprint(certificate)}`,
      );
      err.retryAfterSeconds = wait;
      throw err;
    }
  }

  /** The OBIE API: 429 (OBIE error shape) with Retry-After once the client's budget is spent. */
  checkApiRequest(clientId: string): void {
    if (!this.apiBuckets) return;
    const wait = this.apiBuckets.take(clientId);
    if (wait > 0) {
      const message = 'too many requests: retry after the time in Retry-After';
      const err = new AppError(
        'too_many_requests',
        message,
        [detail('UK.OBIE.UnexpectedError', message)],
        `API rate limit reached for client ${clientId}`,
      );
      err.retryAfterSeconds = wait;
      throw err;
    }
  }
}
