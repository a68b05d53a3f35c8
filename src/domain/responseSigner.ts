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
import { createHash } from 'node:crypto';
import { epochSeconds, type Clock } from '../clock.js';
import { signDetached } from '../crypto/detachedJws.js';
import type { ActiveKey } from './signingKeys.js';

export const SIGNATURE_REUSE_MS = 5_000;
const MAX_CACHED = 5_000;

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
  private readonly cache = new Map<string, { signature: string; until: number }>();
  private readonly reuseMs: number;

  constructor(private readonly deps: ResponseSignerDeps) {
    this.reuseMs = deps.reuseMs ?? SIGNATURE_REUSE_MS;
  }

  /** The detached JWS of `text` (UTF-8), as sent in x-jws-signature. */
  async sign(text: string): Promise<string> {
    const key = await this.deps.keys.activeKey();
    const now = this.deps.clock.now();
    const cacheKey = this.reuseMs > 0 ? `${key.kid}:${digest(text)}` : undefined;
    if (cacheKey) {
      const hit = this.cache.get(cacheKey);
      if (hit && hit.until > now) return hit.signature;
    }
    const signature = await signDetached(Buffer.from(text, 'utf8'), key, {
      iss: this.deps.iss,
      tan: this.deps.tan,
      iat: epochSeconds(this.deps.clock),
    });
    if (cacheKey) {
      if (this.cache.size >= MAX_CACHED) this.evictExpired(now);
      this.cache.set(cacheKey, { signature, until: now + this.reuseMs });
    }
    return signature;
  }

  private evictExpired(now: number): void {
    for (const [k, v] of this.cache) if (v.until <= now) this.cache.delete(k);
    if (this.cache.size >= MAX_CACHED) this.cache.clear();
  }
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}
