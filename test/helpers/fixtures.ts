// Rows a test needs before the behaviour it checks: clients and subscriptions written directly.
import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { createSigningKeyPair } from '../../src/crypto/devPki.js';
import type { TestServer } from './server.js';

/** Registers a private_key_jwt client with a fresh signing key; returns its id. */
export async function registerClient(
  server: TestServer,
  clientId = `tpp-${randomBytes(5).toString('hex')}`,
): Promise<string> {
  const key = await createSigningKeyPair();
  await server.server.services.clients.register({ clientId, jwks: { keys: [key.publicJwk] } });
  return clientId;
}

export async function subscribe(
  knex: Knex,
  clientId: string,
  opts: { version?: string; eventTypes?: string[] | null; callbackUrl?: string | null } = {},
): Promise<string> {
  const id = `es_${randomBytes(8).toString('hex')}`;
  await knex('event_subscriptions').insert({
    subscription_id: id,
    client_id: clientId,
    version: opts.version ?? '3.1',
    event_types: opts.eventTypes ?? null,
    callback_url: opts.callbackUrl ?? null,
  });
  return id;
}

/** A valid event for the admin API / publisher (override any member). */
export function eventFor(
  clientId: string,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const id = `pmt-${randomBytes(4).toString('hex')}`;
  return {
    clientId,
    type: 'UK.OBIE.Resource-Update',
    subject: {
      id,
      type: 'domestic-payment',
      links: [
        {
          version: 'v3.1',
          link: `https://bank.example/open-banking/v3.1/pisp/domestic-payments/${id}`,
        },
      ],
    },
    ...overrides,
  };
}
