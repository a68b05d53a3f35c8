// Our detached `x-jws-signature` on 200/201 subscription responses (OBIE R/W Message Signing,
// 3.1.4+ header; DECISIONS.md "Response signatures"): PS256 with the active signing key, whose
// kid is in /jwks;
//   http://openbanking.org.uk/iss = ASPSP_FINANCIAL_ID (the ASPSP signs as its OB organisation
//                                   id, {{org-id}} in the R/W profile)
//   http://openbanking.org.uk/tan = OB_TRUST_ANCHOR
//   http://openbanking.org.uk/iat = when the signature was made
//
// A PS256 signature costs about half a millisecond of CPU, more than the rest of a GET. The same
// bytes signed with the same key within a few seconds get the same signature again: its iat is
// then at most SIGNATURE_REUSE_MS old, still "in the past and recent" to any verifier.
//
// The reuse cache is keyed by the text itself (a Map hashes a string once, far cheaper than the
// SHA-256 it replaces) and remembers the kid it was signed with: a rotated key signs afresh.
// Texts longer than MAX_CACHED_TEXT are keyed by their SHA-256 (in a map of their own), so the
// cache stays small.
import { createHash } from 'node:crypto';
import { epochSeconds, type Clock } from '../clock.js';
import { signDetached } from '../crypto/detachedJws.js';
import type { ActiveKey } from './signingKeys.js';

export const SIGNATURE_REUSE_MS = 5_000;
const MAX_CACHED = 5_000;
const MAX_CACHED_TEXT = 4_096;

export interface ResponseSignerDeps {
  keys: { activeKey(): Promise<ActiveKey> };
  /** ASPSP_FINANCIAL_ID. */
  iss: string;
  /** OB_TRUST_ANCHOR. */
  tan: string;
  clock: Clock;
  /** How long a signature of identical bytes is reused; 0 signs every response afresh. */
  reuseMs?: number;
}

export class ResponseSigner {
  /** Short texts, by the text itself. */
  private readonly byText = new Map<string, Reused>();
  /** Long texts, by their SHA-256. */
  private readonly byDigest = new Map<string, Reused>();
  private readonly reuseMs: number;

  constructor(private readonly deps: ResponseSignerDeps) {
    this.reuseMs = deps.reuseMs ?? SIGNATURE_REUSE_MS;
  }

  /** The detached JWS of `text` (UTF-8), as sent in x-jws-signature. */
  async sign(text: string): Promise<string> {
    const key = await this.deps.keys.activeKey();
    const now = this.deps.clock.now();
    const short = text.length <= MAX_CACHED_TEXT;
    const cache = short ? this.byText : this.byDigest;
    const cacheKey = this.reuseMs > 0 ? (short ? text : digest(text)) : undefined;
    if (cacheKey !== undefined) {
      const hit = cache.get(cacheKey);
      if (hit && hit.until > now && hit.kid === key.kid) return hit.signature;
    }
    const signature = await signDetached(Buffer.from(text, 'utf8'), key, {
      iss: this.deps.iss,
      tan: this.deps.tan,
      iat: epochSeconds(this.deps.clock),
    });
    if (cacheKey !== undefined) {
      if (cache.size >= MAX_CACHED) evictExpired(cache, now);
      cache.set(cacheKey, { kid: key.kid, signature, until: now + this.reuseMs });
    }
    return signature;
  }
}

interface Reused {
  kid: string;
  signature: string;
  until: number;
}

function evictExpired(cache: Map<string, Reused>, now: number): void {
  for (const [k, v] of cache) if (v.until <= now) cache.delete(k);
  if (cache.size >= MAX_CACHED) cache.clear();
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}
