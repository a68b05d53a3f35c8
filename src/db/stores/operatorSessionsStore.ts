// Console sessions (operator_sessions): the cookie carries a random token, the table its SHA-256,
// so a copy of the table does not let anyone in, and any replica can serve the operator.
import type { Knex } from 'knex';

export interface OperatorSession {
  operator: string;
  csrfToken: string;
  expiresAt: Date;
}

export class OperatorSessionsStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): OperatorSessionsStore {
    return new OperatorSessionsStore(knex);
  }

  async insert(tokenHash: string, s: OperatorSession): Promise<void> {
    await this.knex('operator_sessions').insert({
      token_hash: tokenHash,
      operator: s.operator,
      csrf_token: s.csrfToken,
      expires_at: s.expiresAt,
    });
  }

  /** The live session of this token hash; expired ones are deleted on the way. */
  async find(tokenHash: string): Promise<OperatorSession | undefined> {
    await this.knex('operator_sessions').where('expires_at', '<', this.knex.fn.now()).delete();
    const row = (await this.knex('operator_sessions').where({ token_hash: tokenHash }).first()) as
      { operator: string; csrf_token: string; expires_at: Date } | undefined;
    return row
      ? { operator: row.operator, csrfToken: row.csrf_token, expiresAt: row.expires_at }
      : undefined;
  }

  async delete(tokenHash: string): Promise<void> {
    await this.knex('operator_sessions').where({ token_hash: tokenHash }).delete();
  }
}
