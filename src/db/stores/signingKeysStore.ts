// Rows of signing_keys. The one-active invariant is also a unique index, so two replicas that
// race to create the first key cannot both succeed.
import type { Knex } from 'knex';
import type { JWK } from 'jose';

export const SIGNING_KEYS = 'signing_keys';

export type KeyStatus = 'active' | 'retiring' | 'retired';

interface SigningKeyRow {
  kid: string;
  alg: string;
  public_jwk: JWK;
  private_key: string | null;
  source: 'generated' | 'file';
  status: KeyStatus;
  created_at: Date;
  activated_at: Date | null;
  retiring_since: Date | null;
  retire_after: Date | null;
}

export interface StoredSigningKey {
  kid: string;
  alg: string;
  publicJwk: JWK;
  /** Private JWK JSON or sealed envelope; null for file keys. */
  privateKey: string | null;
  source: 'generated' | 'file';
  status: KeyStatus;
  createdAt: Date;
  activatedAt: Date | null;
  retiringSince: Date | null;
  retireAfter: Date | null;
}

function toKey(r: SigningKeyRow): StoredSigningKey {
  return {
    kid: r.kid,
    alg: r.alg,
    publicJwk: r.public_jwk,
    privateKey: r.private_key,
    source: r.source,
    status: r.status,
    createdAt: r.created_at,
    activatedAt: r.activated_at,
    retiringSince: r.retiring_since,
    retireAfter: r.retire_after,
  };
}

export class SigningKeysStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): SigningKeysStore {
    return new SigningKeysStore(knex);
  }

  /** The same store, running its statements in `trx`. */
  in(trx: Knex.Transaction): SigningKeysStore {
    return new SigningKeysStore(trx);
  }

  async list(): Promise<StoredSigningKey[]> {
    const rows = await this.knex<SigningKeyRow>(SIGNING_KEYS)
      .select('*')
      .orderBy('created_at', 'desc');
    return rows.map(toKey);
  }

  /** The active key and those still published (retiring). */
  async published(): Promise<StoredSigningKey[]> {
    const rows = await this.knex<SigningKeyRow>(SIGNING_KEYS)
      .select('*')
      .whereIn('status', ['active', 'retiring'])
      .orderBy('created_at', 'desc');
    return rows.map(toKey);
  }

  async active(): Promise<StoredSigningKey | undefined> {
    const row = await this.knex<SigningKeyRow>(SIGNING_KEYS).where({ status: 'active' }).first();
    return row ? toKey(row) : undefined;
  }

  async find(kid: string): Promise<StoredSigningKey | undefined> {
    const row = await this.knex<SigningKeyRow>(SIGNING_KEYS).where({ kid }).first();
    return row ? toKey(row) : undefined;
  }

  /**
   * Makes `key` the active key: the current active one becomes retiring until `retireAfter`.
   * When `key.kid` already exists (a file key seen before) it is re-activated, not duplicated.
   * Returns false when another process changed the active key at the same moment.
   */
  async activate(
    key: { kid: string; publicJwk: JWK; privateKey: string | null; source: 'generated' | 'file' },
    retireAfter: Date,
  ): Promise<boolean> {
    try {
      await this.knex.transaction(async (trx) => {
        await trx(SIGNING_KEYS)
          .where({ status: 'active' })
          .whereNot({ kid: key.kid })
          // A retiring key only verifies: its private half is erased, not kept at rest.
          .update({
            status: 'retiring',
            retiring_since: trx.fn.now(),
            retire_after: retireAfter,
            private_key: null,
          });
        await trx(SIGNING_KEYS)
          .insert({
            kid: key.kid,
            alg: 'PS256',
            public_jwk: JSON.stringify(key.publicJwk),
            private_key: key.privateKey,
            source: key.source,
            status: 'active',
            activated_at: trx.fn.now(),
          })
          .onConflict('kid')
          .merge({
            status: 'active',
            activated_at: trx.fn.now(),
            retiring_since: null,
            retire_after: null,
          });
      });
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === '23505') return false; // unique: someone else activated one
      throw err;
    }
  }

  /**
   * Replaces a stored private key (sealing a plaintext one) only if it is still `expected`, so
   * two replicas sealing at the same time cannot overwrite each other. True when replaced.
   */
  async replacePrivateKey(kid: string, expected: string, replacement: string): Promise<boolean> {
    const n = await this.knex<SigningKeyRow>(SIGNING_KEYS)
      .where({ kid, private_key: expected })
      .update({ private_key: replacement });
    return n === 1;
  }

  /**
   * Retiring keys whose overlap has ended and that no pending SET still needs: they leave /jwks.
   * Returns the kids retired.
   */
  async retireExpired(now: Date): Promise<string[]> {
    const rows = await this.knex.raw<{ rows: { kid: string }[] }>(
      `UPDATE signing_keys k SET status = 'retired'
        WHERE k.status = 'retiring' AND k.retire_after <= :now
          AND NOT EXISTS (
            SELECT 1 FROM events e JOIN event_deliveries d ON d.jti = e.jti
             WHERE e.kid = k.kid AND d.state = 'pending')
        RETURNING k.kid`,
      { now },
    );
    return rows.rows.map((r) => r.kid);
  }
}
