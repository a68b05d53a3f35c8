// `ob-events deliveries history|replay`, `ob-events dead-letters list|retry|purge`,
// `ob-events audit list`: the operators' after-the-fact tools (src/domain/operations.ts). Every
// action is audited with actor = the OS user running the command (via cli).
import os from 'node:os';
import { parseTime, type Actor } from '../../domain/operations.js';
import { printJson, withServices } from '../context.js';
import { CliError } from '../index.js';

function actor(): Actor {
  let name = process.env.USER ?? 'unknown';
  try {
    name = os.userInfo().username;
  } catch {
    // no passwd entry (containers): the environment's USER
  }
  return { via: 'cli', name };
}

function count(text: string | undefined, option: string, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > max) {
    throw new CliError(`${option} must be a whole number from 1 to ${max}`);
  }
  return n;
}

function time(text: string, option: string): Date {
  try {
    return parseTime(text, option);
  } catch {
    throw new CliError(
      `${option} must be an ISO 8601 time, e.g. 2026-12-01T09:30:00Z (no zone: UTC)`,
    );
  }
}

export interface HistoryOptions {
  jti?: string;
  client?: string;
  clientId?: string;
  since?: string;
  before?: string;
  limit?: string;
}

/** One SET's history (a JSON object), or a TPP's SETs with theirs (a JSON array, newest first). */
export async function deliveriesHistory(o: HistoryOptions): Promise<void> {
  const client = o.client ?? o.clientId;
  if ((o.jti === undefined) === (client === undefined)) {
    throw new CliError('give either --jti JTI or --client ID');
  }
  const limit = count(o.limit, '--limit', 100_000) ?? 100;
  const since = o.since !== undefined ? time(o.since, '--since') : undefined;
  await withServices(async ({ operations }) => {
    if (o.jti !== undefined) {
      printJson(await operations.history(o.jti));
      return;
    }
    printJson(
      await operations.clientHistory(client!, {
        limit,
        ...(since ? { since } : {}),
        ...(o.before !== undefined ? { before: o.before } : {}),
      }),
    );
  });
}

export interface ReplayOptions {
  client?: string;
  clientId?: string;
  since?: string;
  limit?: string;
}

/** `replay JTI`, or `replay --client ID --since T [--limit N]`. */
export async function deliveriesReplay(jti: string | undefined, o: ReplayOptions): Promise<void> {
  const client = o.client ?? o.clientId;
  if (jti !== undefined) {
    if (client !== undefined || o.since !== undefined || o.limit !== undefined) {
      throw new CliError('give either a JTI or --client ID --since T, not both');
    }
    await withServices(async ({ operations }) => printJson(await operations.replay(jti, actor())));
    return;
  }
  if (client === undefined || o.since === undefined) {
    throw new CliError('give a JTI, or --client ID and --since T');
  }
  const since = time(o.since, '--since');
  await withServices(async ({ operations }) => {
    const limit = count(o.limit, '--limit', operations.replayMaxSets);
    printJson(await operations.replaySince(client, since, limit, actor()));
  });
}

export async function deadLettersList(o: {
  client?: string;
  clientId?: string;
  after?: string;
  limit?: string;
}): Promise<void> {
  const limit = count(o.limit, '--limit', 100_000) ?? 100;
  const client = o.client ?? o.clientId;
  await withServices(async ({ operations }) =>
    printJson(
      await operations.deadLetters({
        limit,
        ...(client !== undefined ? { clientId: client } : {}),
        ...(o.after !== undefined ? { after: o.after } : {}),
      }),
    ),
  );
}

export async function deadLettersRetry(jti: string): Promise<void> {
  await withServices(async ({ operations }) =>
    printJson(await operations.retryDeadLetter(jti, actor())),
  );
}

export async function deadLettersPurge(jti: string): Promise<void> {
  await withServices(async ({ operations }) =>
    printJson(await operations.purgeDeadLetter(jti, actor())),
  );
}

export async function auditList(o: { client?: string; limit?: string }): Promise<void> {
  const limit = count(o.limit, '--limit', 100_000) ?? 100;
  await withServices(async ({ operations }) =>
    printJson(
      await operations.auditLog({
        limit,
        ...(o.client !== undefined ? { clientId: o.client } : {}),
      }),
    ),
  );
}
