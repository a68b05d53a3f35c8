// For the TPP SDK tests: an SDK client for a test TPP, publishing, and SETs made by hand (signed
// with the server's key or a stranger's) stored as deliveries, the way a broken or hostile
// transmitter would hand them out.
import { CompactSign, decodeJwt, type KeyObject } from 'jose';
import { v7 as uuidv7 } from 'uuid';
import { parseEventInput } from '../../src/domain/eventInput.js';
import { createTppClient, type TppClient, type TppClientOptions } from '../../src/tpp/index.js';
import type { TestDatabase } from './db.js';
import { eventFor } from './fixtures.js';
import { readPki, TEST_PUBLIC_URL, type TestServer } from './server.js';
import type { TestTpp } from './tpp.js';

export function sdkClient(
  server: TestServer,
  tpp: TestTpp,
  opts: Partial<TppClientOptions> = {},
): TppClient {
  return createTppClient({
    issuerUrl: TEST_PUBLIC_URL,
    baseUrl: server.url,
    clientId: tpp.clientId,
    cert: tpp.certPem,
    key: tpp.keyPem,
    ca: readPki().ca,
    signingKey: tpp.signingKey,
    // The SDK's tests of v3.1 behaviour; test/apiVersions.test.ts and tppSdk's own default test
    // cover v4.0.
    apiVersion: 'v3.1',
    ...opts,
  });
}

/** Publishes `n` events for the client through the publisher; returns their jtis in order. */
export async function publishFor(
  server: TestServer,
  clientId: string,
  n: number,
  overrides: Record<string, unknown> = {},
): Promise<string[]> {
  const inputs = Array.from({ length: n }, () => {
    const r = parseEventInput(eventFor(clientId, overrides));
    if (!r.ok) throw new Error(`bad fixture: ${JSON.stringify(r.problems)}`);
    return r.event;
  });
  const outcomes = await server.server.services.publisher.publish(inputs);
  return outcomes.map((o) => {
    if (o.status !== 'created') throw new Error(`not created: ${JSON.stringify(o)}`);
    return o.jti;
  });
}

export async function storedSet(db: TestDatabase, jti: string): Promise<string> {
  const row = await db.knex('events').where({ jti }).first<{ set_jws: string }>('set_jws');
  if (!row) throw new Error(`no SET ${jti}`);
  return row.set_jws;
}

/** Claims like the server's (from a real SET), with `changes` applied and a new jti. */
export function claimsLike(jws: string, changes: Record<string, unknown> = {}) {
  return { ...decodeJwt(jws), jti: uuidv7(), ...changes } as Record<string, unknown> & {
    jti: string;
  };
}

/** A compact JWS over `claims` with `key` (the server's active key, or a stranger's). */
export async function signSet(
  claims: Record<string, unknown>,
  key: { kid: string; privateKey: KeyObject },
  header: Record<string, unknown> = {},
): Promise<string> {
  return new CompactSign(Buffer.from(JSON.stringify(claims)))
    .setProtectedHeader({ alg: 'PS256', kid: key.kid, typ: 'JOSE', ...header })
    .sign(key.privateKey);
}

/** The same SET with its payload replaced (header and signature kept). */
export function tamper(jws: string, changes: Record<string, unknown>): string {
  const [header, , signature] = jws.split('.');
  const claims = { ...decodeJwt(jws), ...changes };
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
}

/** Stores `jws` as a pending delivery of `jti` to the client, as if the publisher had. */
export async function insertDelivery(
  db: TestDatabase,
  clientId: string,
  jti: string,
  jws: string,
): Promise<void> {
  await db.knex('events').insert({
    jti,
    client_id: clientId,
    event_types: ['UK.OBIE.Resource-Update'],
    subject_id: 'forged',
    subject_type: 'domestic-payment',
    txn: jti,
    kid: 'forged',
    set_jws: jws,
  });
  await db.knex('event_deliveries').insert({ jti, client_id: clientId });
}

export async function deliveryState(db: TestDatabase, jti: string) {
  return db
    .knex('event_deliveries')
    .where({ jti })
    .first<{ state: string; err: string | null; resolution: string | null }>(
      'state',
      'err',
      'resolution',
    );
}
