// Who may use the operator console: one configured credential (OPERATOR_PASSWORD or
// OPERATOR_PASSWORD_FILE) and the name the operator gives at log-in, recorded in the audit trail.
// Sessions live in the database (any replica serves them) for SESSION_HOURS, end at log-out, and
// carry the synchronizer token that every console form must send back (CSRF).
// OIDC against the bank's identity provider is the bank-grade option (README "Operator console").
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { OperatorSessionsStore } from '../db/stores/operatorSessionsStore.js';

export const SESSION_HOURS = 8;

export interface OperatorAuthDeps {
  store: OperatorSessionsStore;
  clock: Clock;
  /** The credential, read when first needed (undefined: the console is off). */
  credential: () => string | undefined;
}

export interface ConsoleSession {
  operator: string;
  csrfToken: string;
}

export class OperatorAuth {
  private cached: { value: string | undefined } | undefined;

  constructor(private readonly deps: OperatorAuthDeps) {}

  get enabled(): boolean {
    return this.credential() !== undefined;
  }

  /** A new session token (for the cookie) when the password is right; else undefined. */
  async login(operator: string, password: string): Promise<{ token: string } | undefined> {
    const expected = this.credential();
    if (expected === undefined) return undefined;
    // Compare digests: equal length, constant time, whatever was typed.
    const ok = timingSafeEqual(sha256(password), sha256(expected));
    if (!ok) return undefined;
    const token = randomBytes(32).toString('base64url');
    await this.deps.store.insert(hashHex(token), {
      operator,
      csrfToken: randomBytes(32).toString('base64url'),
      expiresAt: new Date(this.deps.clock.now() + SESSION_HOURS * 3_600_000),
    });
    return { token };
  }

  async session(token: string | undefined): Promise<ConsoleSession | undefined> {
    if (!token || token.length > 100 || !this.enabled) return undefined;
    const s = await this.deps.store.find(hashHex(token));
    return s ? { operator: s.operator, csrfToken: s.csrfToken } : undefined;
  }

  async logout(token: string): Promise<void> {
    await this.deps.store.delete(hashHex(token));
  }

  private credential(): string | undefined {
    this.cached ??= { value: this.deps.credential() };
    return this.cached.value;
  }
}

/** Constant-time comparison of two strings (CSRF tokens). */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function hashHex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
