// What operators do after the fact, the same from the CLI, the admin API and the console:
//   - history: every push attempt and poll hand-out of a SET, per SET or per TPP;
//   - replay: one SET again (same jti, same bytes, even after it was acknowledged), or a TPP's
//     SETs since time T (bounded by REPLAY_MAX_SETS per call, idempotent);
//   - dead letters: pushes that gave up and SETs the TPP rejected; retry or purge them;
//   - key rotation from the console.
// Every action writes its audit row (who, when, what) in the same transaction as the change, and
// wakes push workers and long polls of the TPP on commit.
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { CHANNELS, notify } from '../db/notifier.js';
import {
  OperationsStore,
  type AuditEntry,
  type ClientOverview,
  type DeadLetter,
  type SetHistory,
} from '../db/stores/operationsStore.js';
import { AppError, detail, invalid } from '../errors.js';
import type { KeyInfo, KeyRing } from './signingKeys.js';

export interface Actor {
  via: 'cli' | 'admin_api' | 'console';
  /** Who: a console operator's name, the CLI's OS user, the admin API caller's actor. */
  name: string;
}

export interface OperationsDeps {
  knex: Knex;
  keys: KeyRing;
  config: Config['operations'];
}

export interface ReplayResult {
  jti: string;
  clientId: string;
  /** replayed: pending again; rearmed: its failed push is due again; already_pending: nothing to do. */
  outcome: 'replayed' | 'rearmed' | 'already_pending';
  /** The TPP has a CallbackUrl: the SET is pushed as well as pollable. */
  push: boolean;
}

export interface ReplaySinceSummary {
  clientId: string;
  since: string;
  limit: number;
  replayed: number;
  rearmed: number;
  more: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** 2026-12-01T10:00, …:00Z, …:00.123+01:00; without a zone: UTC. */
const TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,3})?)?)?(Z|[+-]\d{2}:\d{2})?$/;

export class Operations {
  private readonly store: OperationsStore;

  constructor(private readonly deps: OperationsDeps) {
    this.store = OperationsStore.create(deps.knex);
  }

  get replayMaxSets(): number {
    return this.deps.config.replayMaxSets;
  }

  async history(jti: string): Promise<SetHistory> {
    const h = await this.store.history(parseJti(jti));
    if (!h) throw notFound(`no SET with jti ${jti}`, 'jti');
    return h;
  }

  /** A TPP's SETs with their history, newest first (`before`: the last jti of the page before). */
  async clientHistory(
    clientId: string,
    opts: { since?: Date; before?: string; state?: string; limit: number },
  ): Promise<SetHistory[]> {
    await this.requireClient(clientId);
    return this.store.setsOfClient({
      clientId,
      ...(opts.since ? { from: opts.since } : {}),
      ...(opts.before ? { before: parseJti(opts.before, 'before') } : {}),
      ...(opts.state ? { state: opts.state } : {}),
      limit: opts.limit,
      withHistory: true,
    });
  }

  /** Search by jti, or by subject and/or time window (optionally one TPP); newest first. */
  async search(q: {
    jti?: string;
    subjectId?: string;
    clientId?: string;
    from?: Date;
    to?: Date;
    limit: number;
  }): Promise<SetHistory[]> {
    if (q.jti) {
      const h = await this.store.history(parseJti(q.jti));
      return h ? [h] : [];
    }
    return this.store.setsOfClient({
      ...(q.clientId ? { clientId: q.clientId } : {}),
      ...(q.subjectId ? { subjectId: q.subjectId } : {}),
      ...(q.from ? { from: q.from } : {}),
      ...(q.to ? { to: q.to } : {}),
      limit: q.limit,
      withHistory: false,
    });
  }

  clientsOverview(): Promise<ClientOverview[]> {
    return this.store.clientsOverview();
  }

  /** One SET again: same jti, same bytes, pollable (and pushed when the TPP has a CallbackUrl). */
  async replay(jtiInput: string, actor: Actor, action = 'replay'): Promise<ReplayResult> {
    const jti = parseJti(jtiInput);
    return this.deps.knex.transaction(async (trx) => {
      const store = this.store.in(trx);
      const r = await store.replayOne(jti, this.deps.config.historyMaxPerSet);
      if (!r.found) throw notFound(`no SET with jti ${jti}`, 'jti');
      if (!r.clientActive || !r.outcome) {
        throw conflict(`client ${r.clientId} is not active: its SETs are not delivered`, 'jti');
      }
      await store.audit({
        ...auditActor(actor),
        action,
        clientId: r.clientId!,
        jti,
        detail: { outcome: r.outcome, previous: r.previous },
      });
      if (r.outcome !== 'already_pending') await notify(trx, CHANNELS.published, r.clientId!);
      return { jti, clientId: r.clientId!, outcome: r.outcome, push: r.push ?? false };
    });
  }

  /**
   * A TPP's SETs created at or after `since` (the "we lost our database" recovery), at most
   * `limit` (≤ REPLAY_MAX_SETS) per call; `more` says to call again.
   */
  async replaySince(
    clientId: string,
    since: Date,
    limit: number | undefined,
    actor: Actor,
  ): Promise<ReplaySinceSummary> {
    const max = this.deps.config.replayMaxSets;
    const n = limit ?? max;
    if (!Number.isInteger(n) || n < 1 || n > max) {
      throw invalid(
        'UK.OBIE.Field.Invalid',
        `limit must be a whole number from 1 to ${max}`,
        'limit',
      );
    }
    if (since.getTime() > Date.now()) {
      throw invalid('UK.OBIE.Field.Invalid', 'since must not be in the future', 'since');
    }
    return this.deps.knex.transaction(async (trx) => {
      const store = this.store.in(trx);
      const client = await trx('clients').where({ client_id: clientId }).first('status');
      if (!client) throw notFound(`no client ${clientId}`, 'clientId');
      if ((client as { status: string }).status !== 'active') {
        throw conflict(`client ${clientId} is not active: its SETs are not delivered`, 'clientId');
      }
      const r = await store.replaySince(clientId, since, n, this.deps.config.historyMaxPerSet);
      const summary = { clientId, since: since.toISOString(), limit: n, ...r };
      await store.audit({
        ...auditActor(actor),
        action: 'replay_since',
        clientId,
        jti: null,
        detail: {
          since: summary.since,
          limit: n,
          replayed: r.replayed,
          rearmed: r.rearmed,
          more: r.more,
        },
      });
      if (r.replayed + r.rearmed > 0) await notify(trx, CHANNELS.published, clientId);
      return summary;
    });
  }

  async deadLetters(f: {
    clientId?: string;
    after?: string;
    limit: number;
  }): Promise<DeadLetter[]> {
    if (f.clientId !== undefined) parseClientId(f.clientId);
    return this.store.deadLetters({
      ...f,
      ...(f.after !== undefined ? { after: parseJti(f.after, 'after') } : {}),
    });
  }

  /** A dead letter delivered again: a failed push is due now, a rejected SET is pending again. */
  async retryDeadLetter(jtiInput: string, actor: Actor): Promise<ReplayResult> {
    const jti = parseJti(jtiInput);
    if (!(await this.store.isDeadLetter(jti))) await this.notADeadLetter(jti);
    return this.replay(jti, actor, 'dead_letter_retry');
  }

  /** A dead letter taken out of delivery for good (kept for the record until retention). */
  async purgeDeadLetter(
    jtiInput: string,
    actor: Actor,
  ): Promise<{ jti: string; status: 'purged' }> {
    const jti = parseJti(jtiInput);
    return this.deps.knex.transaction(async (trx) => {
      const store = this.store.in(trx);
      const r = await store.purge(jti);
      if (!r) return this.notADeadLetter(jti);
      await store.audit({
        ...auditActor(actor),
        action: 'dead_letter_purge',
        clientId: r.clientId,
        jti,
        detail: { previousState: r.state },
      });
      return { jti, status: 'purged' as const };
    });
  }

  async rotateKeys(actor: Actor): Promise<KeyInfo> {
    const key = await this.deps.keys.rotate();
    await this.store.audit({
      ...auditActor(actor),
      action: 'keys_rotate',
      clientId: null,
      jti: null,
      detail: { kid: key.kid },
    });
    return key;
  }

  listKeys(): Promise<KeyInfo[]> {
    return this.deps.keys.list();
  }

  /** Console log-ins, successful or not, go to the audit trail too. */
  async recordLogin(actor: Actor, ok: boolean, detailInfo: Record<string, unknown>): Promise<void> {
    await this.store.audit({
      ...auditActor(actor),
      action: ok ? 'console_login' : 'console_login_failed',
      clientId: null,
      jti: null,
      detail: detailInfo,
    });
  }

  auditLog(f: { clientId?: string; before?: number; limit: number }): Promise<AuditEntry[]> {
    return this.store.auditLog(f);
  }

  private async requireClient(clientId: string): Promise<void> {
    parseClientId(clientId);
    if (!(await this.store.clientExists(clientId)))
      throw notFound(`no client ${clientId}`, 'clientId');
  }

  private async notADeadLetter(jti: string): Promise<never> {
    const s = await this.store.summary(jti);
    if (!s) throw notFound(`no SET with jti ${jti}`, 'jti');
    throw conflict(
      `SET ${jti} is not a dead letter (state ${s.state}${s.pushState ? `, push ${s.pushState}` : ''})`,
      'jti',
    );
  }
}

function auditActor(actor: Actor): { actor: string; via: Actor['via'] } {
  const name = actor.name
    .trim()
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f]/g, '')
    .slice(0, 200);
  return { actor: name || 'unknown', via: actor.via };
}

export function parseJti(value: string, field = 'jti'): string {
  if (!UUID.test(value))
    throw invalid('UK.OBIE.Field.Invalid', `${field} must be a jti (UUID)`, field);
  return value.toLowerCase();
}

export function parseClientId(value: string, field = 'clientId'): string {
  if (!CLIENT_ID.test(value)) {
    throw invalid('UK.OBIE.Field.Invalid', `${field} is not a valid client id`, field);
  }
  return value;
}

/** ISO 8601 date or date-time; without a zone it is UTC. */
export function parseTime(value: string, field: string): Date {
  const m = TIME.exec(value.trim());
  const date = m
    ? new Date(
        `${m[1]}-${m[2]}-${m[3]}T${m[4] ?? '00'}:${m[5] ?? '00'}:${m[6] ?? '00'}${m[7] ?? ''}${m[8] ?? 'Z'}`,
      )
    : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      `${field} must be an ISO 8601 time, e.g. 2026-12-01T09:30:00Z (no zone: UTC)`,
      field,
    );
  }
  return date;
}

function notFound(message: string, path: string): AppError {
  return new AppError('not_found', message, [detail('UK.OBIE.Resource.NotFound', message, path)]);
}

function conflict(message: string, path: string): AppError {
  return new AppError('conflict', message, [detail('UK.OBIE.Field.Invalid', message, path)]);
}
