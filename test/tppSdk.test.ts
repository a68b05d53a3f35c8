// The TPP SDK (src/tpp) against a real server: discovery with an issuer that is not the address
// connected to, subscriptions, the raw poll, and events(): verification, acknowledgement, JWKS
// rotation, SETs that fail verification, abort.
import { createPrivateKey, type JsonWebKey } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { TppError, type InvalidSet, type VerifiedSet } from '../src/tpp/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { subscribe } from './helpers/fixtures.js';
import { readPki, startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';
import {
  claimsLike,
  deliveryState,
  insertDelivery,
  publishFor,
  sdkClient,
  signSet,
  storedSet,
  tamper,
} from './helpers/tppSdk.js';

describe('TPP SDK', () => {
  let db: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: { LONG_POLL_SECONDS: '10', POLL_LEASE_SECONDS: '30' },
    });
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  async function subscribedTpp(): Promise<TestTpp> {
    const tpp = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId);
    return tpp;
  }

  describe('discovery', () => {
    it('when only baseUrl is given, then the issuer is what discovery says, though it is not the address connected to', async () => {
      const tpp = await createTestTpp(server);
      const client = sdkClient(server, tpp, { issuerUrl: undefined });
      expect((await client.discover()).issuer).toBe(TEST_PUBLIC_URL);
      expect(await client.accessToken()).toMatch(/^ey/);
      await client.close();
    });

    it('when the configured issuer is not the one discovery names, then every call fails with issuer_mismatch', async () => {
      const tpp = await createTestTpp(server);
      const client = sdkClient(server, tpp, { issuerUrl: 'https://other-bank.example' });
      await expect(client.poll()).rejects.toMatchObject({ code: 'issuer_mismatch' });
      await client.close();
    });
  });

  describe('subscriptions', () => {
    it('when a TPP subscribes, reads, updates and unsubscribes with the SDK, then each call is signed and its answer checked', async () => {
      const tpp = await createTestTpp(server);
      const client = sdkClient(server, tpp);
      expect(await client.getSubscription()).toBeUndefined();
      const created = await client.subscribe({ eventTypes: ['UK.OBIE.Resource-Update'] });
      expect(created).toMatchObject({ version: '3.1', eventTypes: ['UK.OBIE.Resource-Update'] });
      expect(created.callbackUrl).toBeUndefined();
      expect(await client.getSubscription()).toEqual(created);

      const callbackUrl = 'https://localhost:9/open-banking/v3.1/event-notifications';
      const updated = await client.updateSubscription({ callbackUrl, eventTypes: null });
      expect(updated).toEqual({ id: created.id, callbackUrl, version: '3.1' });
      const row = await db.knex('event_subscriptions').where({ client_id: tpp.clientId }).first();
      expect(row).toMatchObject({ callback_url: callbackUrl, event_types: null });

      await expect(client.subscribe()).rejects.toMatchObject({ code: 'http_status', status: 409 });
      expect(await client.unsubscribe()).toBe(true);
      expect(await client.getSubscription()).toBeUndefined();
      expect(await client.unsubscribe()).toBe(false);
      await client.close();
    });

    it('when no apiVersion is given, then the SDK uses v4.0 (path, Version 4.0, U-codes), and v3.1 still works for another TPP', async () => {
      const tpp = await createTestTpp(server);
      const client = sdkClient(server, tpp, { apiVersion: undefined });
      const created = await client.subscribe();
      expect(created.version).toBe('4.0');
      expect(await client.getSubscription()).toEqual(created);
      const refused = client.subscribe();
      await expect(refused).rejects.toMatchObject({ code: 'http_status', status: 409 });
      await expect(refused).rejects.toSatisfy((e: TppError) => e.body!.includes('"U029"'));
      // The v4.0 subscription is not reachable through v3.1.
      const old = sdkClient(server, tpp, { apiVersion: 'v3.1' });
      await expect(old.getSubscription()).rejects.toMatchObject({ status: 403 });
      expect(await client.unsubscribe()).toBe(true);
      await Promise.all([client.close(), old.close()]);
    });

    it('when the request signature names another signer, then the server refuses the subscription', async () => {
      const tpp = await createTestTpp(server);
      const client = sdkClient(server, tpp, { signingIss: 'someone-else' });
      const refused = client.subscribe();
      await expect(refused).rejects.toMatchObject({ code: 'http_status', status: 400 });
      await expect(refused).rejects.toSatisfy((e: TppError) =>
        e.body!.includes('UK.OBIE.Signature.InvalidClaim'),
      );
      expect(await client.getSubscription()).toBeUndefined();
      await client.close();
    });
  });

  describe('poll', () => {
    it('when SETs wait, then poll returns them raw with moreAvailable', async () => {
      const tpp = await subscribedTpp();
      const client = sdkClient(server, tpp);
      const jtis = await publishFor(server, tpp.clientId, 3);
      const answer = await client.poll({ maxEvents: 2, returnImmediately: true });
      expect(Object.keys(answer.sets)).toEqual(jtis.slice(0, 2));
      expect(answer.moreAvailable).toBe(true);
      expect(answer.sets[jtis[0]!]).toBe(await storedSet(db, jtis[0]!));
      await client.close();
    });
  });

  describe('events()', () => {
    it('when SETs wait, then events() yields them verified, in order, and acknowledges each once the consumer moves on', async () => {
      const tpp = await subscribedTpp();
      const client = sdkClient(server, tpp);
      const jtis = await publishFor(server, tpp.clientId, 3, {
        type: 'UK.OBIE.Consent-Access-Revoked',
      });
      const seen: VerifiedSet[] = [];
      for await (const event of client.events({ drain: true, maxEvents: 2 })) {
        // Moving on from the first acknowledges it with the next poll, not before.
        if (seen.length === 0) expect((await deliveryState(db, event.jti))?.state).toBe('pending');
        seen.push(event);
      }
      expect(seen.map((e) => e.jti)).toEqual(jtis);
      expect(seen[0]).toMatchObject({
        eventTypes: ['UK.OBIE.Consent-Access-Revoked'],
        header: { alg: 'PS256', typ: 'JOSE' },
        claims: { iss: TEST_PUBLIC_URL, aud: tpp.clientId, jti: jtis[0] },
        jws: await storedSet(db, jtis[0]!),
      });
      for (const jti of jtis)
        expect(await deliveryState(db, jti)).toMatchObject({
          state: 'acknowledged',
          resolution: 'ack',
        });
      await client.close();
    });

    it('when the server rotates its signing key between two events, then the iterator refetches the JWKS and yields both', async () => {
      const tpp = await subscribedTpp();
      const client = sdkClient(server, tpp);
      const invalid: InvalidSet[] = [];
      const controller = new AbortController();
      const seen: VerifiedSet[] = [];
      const [first] = await publishFor(server, tpp.clientId, 1);
      for await (const event of client.events({
        signal: controller.signal,
        onInvalidSet: (s) => invalid.push(s),
      })) {
        seen.push(event);
        if (seen.length === 1) {
          await server.server.services.keys.rotate();
          await publishFor(server, tpp.clientId, 1);
        } else {
          controller.abort();
        }
      }
      expect(invalid).toEqual([]);
      expect(seen).toHaveLength(2);
      expect(seen[0]!.jti).toBe(first);
      expect(seen[1]!.header.kid).not.toBe(seen[0]!.header.kid);
      expect(seen[1]!.header.kid).toBe((await server.server.services.keys.activeKey()).kid);
      for (const e of seen) expect((await deliveryState(db, e.jti))?.state).toBe('acknowledged');
      await client.close();
    });

    it('when SETs fail verification, then none is yielded and each goes back in setErrs with its RFC 8935 code', async () => {
      const tpp = await subscribedTpp();
      const other = await subscribedTpp();
      const client = sdkClient(server, tpp);
      const [good] = await publishFor(server, tpp.clientId, 1);
      const [foreignJti] = await publishFor(server, other.clientId, 1);
      const real = await storedSet(db, good!);
      const serverKey = await server.server.services.keys.activeKey();
      const stranger = await createSigningKeyPair();
      const strangerKey = {
        kid: stranger.kid,
        privateKey: createPrivateKey({ key: stranger.privateJwk as JsonWebKey, format: 'jwk' }),
      };

      const cases: { jti: string; jws: string; err: string }[] = [];
      const add = async (
        err: string,
        make: (claims: ReturnType<typeof claimsLike>) => Promise<string> | string,
      ) => {
        const claims = claimsLike(real);
        cases.push({ jti: claims.jti, jws: await make(claims), err });
      };
      await add('invalid_key', (c) => tamper(real, { jti: c.jti, sub: 'https://evil.example/' }));
      await add('invalid_key', (c) => signSet(c, strangerKey));
      await add('invalid_key', (c) => signSet(c, { ...strangerKey, kid: serverKey.kid }));
      await add('invalid_issuer', (c) =>
        signSet({ ...c, iss: 'https://other-bank.example' }, serverKey),
      );
      await add('invalid_audience', (c) => signSet({ ...c, aud: other.clientId }, serverKey));
      await add('invalid_request', (c) => signSet(c, serverKey, { typ: 'JWT' }));
      await add('invalid_request', (c) => signSet({ ...c, events: {} }, serverKey));
      await add('invalid_request', () => 'not-a-jws');
      for (const c of cases) await insertDelivery(db, tpp.clientId, c.jti, c.jws);
      // A valid SET of another client stored under this client: its aud is wrong.
      const foreign = await storedSet(db, foreignJti!);
      const misfiled = claimsLike(real).jti;
      await insertDelivery(db, tpp.clientId, misfiled, foreign);
      cases.push({ jti: misfiled, jws: foreign, err: 'invalid_audience' });

      const invalid: InvalidSet[] = [];
      const seen: string[] = [];
      for await (const event of client.events({
        drain: true,
        maxEvents: 20,
        onInvalidSet: (s) => invalid.push(s),
      })) {
        seen.push(event.jti);
      }
      expect(seen).toEqual([good]);
      expect(invalid.map((i) => [i.jti, i.err])).toEqual(cases.map((c) => [c.jti, c.err]));
      for (const c of cases) {
        expect(await deliveryState(db, c.jti)).toMatchObject({
          state: 'errored',
          resolution: 'set_err',
          err: c.err,
        });
      }
      expect((await deliveryState(db, good!))?.state).toBe('acknowledged');
      await client.close();
    });

    it('when the signal aborts while the consumer holds an event, then the iteration ends and every consumed event is acknowledged', async () => {
      const tpp = await subscribedTpp();
      const client = sdkClient(server, tpp);
      const jtis = await publishFor(server, tpp.clientId, 3);
      const controller = new AbortController();
      const seen: string[] = [];
      for await (const event of client.events({ signal: controller.signal })) {
        seen.push(event.jti);
        if (seen.length === 2) controller.abort();
      }
      expect(seen).toEqual(jtis.slice(0, 2));
      expect((await deliveryState(db, jtis[0]!))?.state).toBe('acknowledged');
      expect((await deliveryState(db, jtis[1]!))?.state).toBe('acknowledged');
      expect((await deliveryState(db, jtis[2]!))?.state).toBe('pending'); // never handed out
      await client.close();
    });

    it('when the signal aborts during a long poll, then the iterator ends at once', async () => {
      const tpp = await subscribedTpp();
      const client = sdkClient(server, tpp);
      await client.accessToken();
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const started = Date.now();
      for await (const _ of client.events({ signal: controller.signal }))
        throw new Error('nothing was published');
      expect(Date.now() - started).toBeLessThan(1_500); // the long poll would hold 10 s
      await client.close();
    });

    it('when the consumer breaks out of the loop, then the events it moved past are acknowledged and the one in hand is not', async () => {
      const tpp = await subscribedTpp();
      const client = sdkClient(server, tpp);
      const jtis = await publishFor(server, tpp.clientId, 3);
      const seen: string[] = [];
      for await (const event of client.events()) {
        seen.push(event.jti);
        if (seen.length === 2) break;
      }
      expect(seen).toEqual(jtis.slice(0, 2));
      expect((await deliveryState(db, jtis[0]!))?.state).toBe('acknowledged');
      expect((await deliveryState(db, jtis[1]!))?.state).toBe('pending'); // back after the lease
      await client.close();
    });

    it('when a poll is refused (not a transient failure), then the iteration ends with the error', async () => {
      const tpp = await subscribedTpp();
      const client = sdkClient(server, tpp);
      const iterate = async () => {
        for await (const _ of client.events({ maxEvents: -1 })) throw new Error('unexpected event');
      };
      await expect(iterate()).rejects.toMatchObject({ code: 'http_status', status: 400 });
      await client.close();
    });
  });

  it('when the signing key is not a private key, then createTppClient refuses it', () => {
    const pki = readPki();
    const { d: _d, ...publicJwk } = pki.tppPrivateJwk;
    expect(() =>
      sdkClient(server, {
        clientId: 'x',
        certPem: pki.tppCert,
        keyPem: pki.tppKey,
        signingKey: publicJwk,
      } as TestTpp),
    ).toThrow(TppError);
  });
});
