// Shared steps of the push tests: environment, publishing, reading delivery state.
import type { Knex } from 'knex';
import { parseEventInput } from '../../src/domain/eventInput.js';
import { eventFor } from './fixtures.js';
import { testPki, type TestServer } from './server.js';

/** Push settings that keep tests fast: 50 ms back-off base, 500 ms time-out. */
export function pushEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PUSH_CA_FILE: testPki().caCert,
    PUSH_RETRY_BASE_MS: '50',
    PUSH_TIMEOUT_MS: '500',
    ASPSP_FINANCIAL_ID: 'bank-test-0001',
    ...extra,
  };
}

/** Publishes n events for the client through the server's publisher; returns their jtis. */
export async function publish(server: TestServer, clientId: string, n = 1): Promise<string[]> {
  const inputs = Array.from({ length: n }, () => {
    const r = parseEventInput(eventFor(clientId));
    if (!r.ok) throw new Error('bad fixture');
    return r.event;
  });
  const jtis: string[] = [];
  for (let i = 0; i < inputs.length; i += 500) {
    const outcomes = await server.server.services.publisher.publish(inputs.slice(i, i + 500));
    for (const o of outcomes) {
      if (o.status !== 'created') throw new Error(`not created: ${JSON.stringify(o)}`);
      jtis.push(o.jti);
    }
  }
  return jtis;
}

export interface DeliveryRow {
  jti: string;
  client_id: string;
  state: string;
  leased_until: Date | null;
  push_state: string | null;
  push_attempts: number;
  push_next_at: Date | null;
  resolved_at: Date | null;
  resolution: string | null;
  err: string | null;
  err_description: string | null;
}

export async function delivery(knex: Knex, jti: string): Promise<DeliveryRow> {
  return (await knex('event_deliveries').where({ jti }).first()) as DeliveryRow;
}

export interface AttemptRow {
  jti: string;
  attempt: number;
  attempted_at: Date;
  worker: string;
  callback_url: string;
  interaction_id: string;
  status_code: number | null;
  latency_ms: number;
  outcome: string;
  error: string | null;
}

export async function attempts(knex: Knex, jti: string): Promise<AttemptRow[]> {
  return (await knex('push_attempts').where({ jti }).orderBy('id')) as AttemptRow[];
}

/** Polls `fn` until it returns something other than undefined. */
export async function eventually<T>(
  fn: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until the SET's delivery row satisfies `predicate`; returns it. */
export function deliveryWhen(
  knex: Knex,
  jti: string,
  predicate: (row: DeliveryRow) => boolean,
  timeoutMs = 10_000,
): Promise<DeliveryRow> {
  return eventually(
    async () => {
      const row = await delivery(knex, jti);
      return row && predicate(row) ? row : undefined;
    },
    timeoutMs,
    `delivery state of ${jti}`,
  );
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
