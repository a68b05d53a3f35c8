// The issuer's public keys (its JWKS), for SETs and response signatures.
//
// Fetched on first use and again after MAX_AGE_MS. A `kid` that is not in the keys held triggers
// one refetch (the server rotated its key): a kid that was still missing after a refetch is not
// fetched for again for MISSED_KID_TTL_MS, and there are at most REFETCHES_PER_MINUTE such
// refetches, so a stream of made-up kids (anyone can POST to a push endpoint) cannot turn the
// TPP into a flood of JWKS requests.
import { importJWK, type CryptoKey, type JSONWebKeySet, type JWK } from 'jose';
import { isRecord } from './transport.js';

const MAX_AGE_MS = 10 * 60_000;
const MISSED_KID_TTL_MS = 60_000;
const REFETCHES_PER_MINUTE = 10;

export type VerificationKey = CryptoKey | Uint8Array;

export class JwksKeys {
  private jwks: { keys: JWK[]; fetchedAt: number } | undefined;
  private fetching: Promise<JWK[]> | undefined;
  private readonly imported = new WeakMap<JWK, Map<string, Promise<VerificationKey | undefined>>>();
  private readonly missed = new Map<string, number>();
  private refetches: number[] = [];

  /**
   * `source`: a fixed JWK Set, or a function fetching the current one.
   * `now`: milliseconds since the epoch.
   */
  constructor(
    private readonly source: JSONWebKeySet | (() => Promise<JSONWebKeySet>),
    private readonly now: () => number = Date.now,
  ) {
    if (typeof source !== 'function') this.jwks = { keys: usableKeys(source), fetchedAt: Infinity };
  }

  /** The key `kid` for `alg`, refetching the JWKS once when the kid is unknown; or undefined. */
  async key(kid: string, alg: string): Promise<VerificationKey | undefined> {
    let jwk = find(await this.current(), kid);
    if (!jwk && this.mayRefetchFor(kid)) {
      jwk = find(await this.fetch(), kid);
      if (!jwk) this.missed.set(kid, this.now());
    }
    if (!jwk || !usableFor(jwk, alg)) return undefined;
    let byAlg = this.imported.get(jwk);
    if (!byAlg) this.imported.set(jwk, (byAlg = new Map()));
    let key = byAlg.get(alg);
    if (!key) {
      key = importJWK(jwk, alg).catch(() => undefined);
      byAlg.set(alg, key);
    }
    return key;
  }

  private async current(): Promise<JWK[]> {
    if (this.jwks && this.now() - this.jwks.fetchedAt < MAX_AGE_MS) return this.jwks.keys;
    return this.fetch();
  }

  private mayRefetchFor(kid: string): boolean {
    if (typeof this.source !== 'function') return false;
    const now = this.now();
    const missedAt = this.missed.get(kid);
    if (missedAt !== undefined && now - missedAt < MISSED_KID_TTL_MS) return false;
    this.refetches = this.refetches.filter((t) => now - t < 60_000);
    if (this.refetches.length >= REFETCHES_PER_MINUTE) return false;
    this.refetches.push(now);
    return true;
  }

  private fetch(): Promise<JWK[]> {
    const source = this.source;
    if (typeof source !== 'function') return Promise.resolve(this.jwks?.keys ?? []);
    // Concurrent callers share one request.
    this.fetching ??= source()
      .then((set) => {
        const keys = usableKeys(set);
        this.jwks = { keys, fetchedAt: this.now() };
        if (this.missed.size > 1_000) this.missed.clear();
        return keys;
      })
      .finally(() => (this.fetching = undefined));
    return this.fetching;
  }
}

function usableKeys(set: unknown): JWK[] {
  if (!isRecord(set) || !Array.isArray(set.keys)) throw new Error('not a JWK Set: no "keys" array');
  return set.keys.filter(
    (k): k is JWK => isRecord(k) && typeof k.kid === 'string' && typeof k.kty === 'string',
  );
}

function find(keys: JWK[], kid: string): JWK | undefined {
  return keys.find((k) => k.kid === kid);
}

function usableFor(jwk: JWK, alg: string): boolean {
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.key_ops !== undefined && !jwk.key_ops.includes('verify')) return false;
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  if (jwk.d !== undefined) return false; // a private key has no business in a published JWKS
  if (alg.startsWith('PS') || alg.startsWith('RS')) return jwk.kty === 'RSA';
  if (alg === 'ES256') return jwk.kty === 'EC' && jwk.crv === 'P-256';
  return false;
}
