// Resource-server mode against a real authorization server: panva's oidc-provider configured as
// "the bank" (scripts/bankAs.ts) over HTTPS, TPPs getting certificate-bound tokens from it with
// openid-client (private_key_jwt and tls_client_auth), JWT access tokens via a resource
// indicator and opaque ones via introspection, and every refusal the issue lists.
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import type { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bankTokenSource, startBankAs, type BankAs } from '../scripts/bankAs.js';
import type { Clock } from '../src/clock.js';
import { loadConfig } from '../src/config.js';
import { createSigningKeyPair, issueCertificate, type PemPair } from '../src/crypto/devPki.js';
import { AuthServer } from '../src/net/authServer.js';
import { createTppClient, type TppClient } from '../src/tpp/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { thumbprintOf } from './helpers/tpp.js';
import { call, mtlsAgent } from './helpers/http.js';
import { deliveryWhen, eventually, publish, pushEnv } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import {
  startTestServer,
  TEST_PUBLIC_URL,
  testEnv,
  testPki,
  type TestServer,
} from './helpers/server.js';

class OffsetClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

interface Tpp {
  clientId: string;
  cert: PemPair;
  signing: Awaited<ReturnType<typeof createSigningKeyPair>>;
  agent: Agent;
}

const INTROSPECTION_SECRET = 'introspection-secret-0123456789';
const EVENTS_PATH = '/open-banking/v3.1/events';

describe('resource-server mode with the bank authorization server', () => {
  const pki = testPki();
  const ca: PemPair = {
    certPem: fs.readFileSync(pki.caCert, 'utf8'),
    keyPem: fs.readFileSync(pki.caKey, 'utf8'),
  };
  const clock = new OffsetClock();
  let db: TestDatabase;
  let as: BankAs;
  let server: TestServer;
  let receiver: Receiver;
  let jwtTpp: Tpp;
  let mtlsTpp: Tpp;
  let unknownTpp: Tpp;
  let unboundTpp: Tpp;
  let otherCert: PemPair;
  let introspectionKey: Awaited<ReturnType<typeof createSigningKeyPair>>;
  let introspectionCert: PemPair;
  const tmp = fs.mkdtempSync('/tmp/ob-events-bank-as-');

  async function makeTpp(prefix: string): Promise<Tpp> {
    const clientId = `${prefix}-${randomBytes(4).toString('hex')}`;
    const cert = issueCertificate(ca, {
      commonName: clientId,
      organization: 'ob-events tests',
      country: 'GB',
      usage: 'client',
    });
    const signing = await createSigningKeyPair();
    const agent = mtlsAgent({ ca: ca.certPem, cert: cert.certPem, key: cert.keyPem });
    return { clientId, cert, signing, agent };
  }

  /** A token for the TPP from the bank's AS (JWT with `resource`, else opaque). */
  async function tokenFor(
    tpp: Tpp,
    opts: { resource?: string; tls?: boolean } = {},
  ): Promise<string> {
    const source = await bankTokenSource({
      issuer: as.issuer,
      clientId: tpp.clientId,
      ca: ca.certPem,
      cert: tpp.cert.certPem,
      key: tpp.cert.keyPem,
      ...(opts.tls ? {} : { signingJwk: tpp.signing.privateJwk }),
      ...(opts.resource ? { resource: opts.resource } : {}),
    });
    try {
      return await source.token();
    } finally {
      await source.close();
    }
  }

  function poll(agent: Agent, token: string) {
    return call(agent, `${server.url}${EVENTS_PATH}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"returnImmediately":true}',
    });
  }

  function expectRefused(res: { status: number; headers: Record<string, unknown> }) {
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  }

  beforeAll(async () => {
    [jwtTpp, mtlsTpp, unknownTpp, unboundTpp] = await Promise.all([
      makeTpp('bank-jwt'),
      makeTpp('bank-mtls'),
      makeTpp('bank-unknown'),
      makeTpp('bank-unbound'),
    ]);
    otherCert = issueCertificate(ca, {
      commonName: 'someone-else',
      organization: 'ob-events tests',
      country: 'GB',
      usage: 'client',
    });
    introspectionKey = await createSigningKeyPair();
    introspectionCert = issueCertificate(ca, {
      commonName: 'ob-events-introspection',
      organization: 'Example Bank',
      country: 'GB',
      usage: 'client',
    });
    as = await startBankAs({
      ca,
      clients: [
        {
          clientId: jwtTpp.clientId,
          method: 'private_key_jwt',
          publicJwk: jwtTpp.signing.publicJwk,
        },
        {
          clientId: mtlsTpp.clientId,
          method: 'tls_client_auth',
          subjectDn: `CN=${mtlsTpp.clientId},O=ob-events tests,C=GB`,
        },
        {
          clientId: unknownTpp.clientId,
          method: 'private_key_jwt',
          publicJwk: unknownTpp.signing.publicJwk,
        },
        {
          clientId: unboundTpp.clientId,
          method: 'private_key_jwt',
          publicJwk: unboundTpp.signing.publicJwk,
          boundTokens: false,
        },
        {
          clientId: 'ob-events-basic',
          method: 'client_secret_basic',
          secret: INTROSPECTION_SECRET,
        },
        {
          clientId: 'ob-events-pkjwt',
          method: 'private_key_jwt',
          publicJwk: introspectionKey.publicJwk,
          boundTokens: false,
        },
        {
          clientId: 'ob-events-mtls',
          method: 'tls_client_auth',
          subjectDn: 'CN=ob-events-introspection,O=Example Bank,C=GB',
          boundTokens: false,
        },
      ],
    });
    db = await createTestDatabase();
    receiver = await startReceiver();
    server = await startTestServer(db, {
      clock,
      env: pushEnv({
        AUTH_ISSUER_URL: as.issuer,
        AUTH_CA_FILE: pki.caCert,
        AUTH_INTROSPECTION_CLIENT_ID: 'ob-events-basic',
        AUTH_INTROSPECTION_CLIENT_SECRET: INTROSPECTION_SECRET,
        AUTH_INTROSPECTION_CACHE_SECONDS: '1',
      }),
    });
    for (const tpp of [jwtTpp, mtlsTpp, unboundTpp]) {
      await server.server.services.clients.register({
        clientId: tpp.clientId,
        jwks: { keys: [tpp.signing.publicJwk] },
      });
    }
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
    await as?.stop();
    await db?.drop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('a TPP with the bank tokens', () => {
    let client: TppClient;
    let closeSource: () => Promise<void>;

    beforeAll(async () => {
      const source = await bankTokenSource({
        issuer: as.issuer,
        clientId: jwtTpp.clientId,
        ca: ca.certPem,
        cert: jwtTpp.cert.certPem,
        key: jwtTpp.cert.keyPem,
        signingJwk: jwtTpp.signing.privateJwk,
        resource: TEST_PUBLIC_URL,
      });
      closeSource = source.close;
      client = createTppClient({
        issuerUrl: TEST_PUBLIC_URL,
        baseUrl: server.url,
        clientId: jwtTpp.clientId,
        cert: jwtTpp.cert.certPem,
        key: jwtTpp.cert.keyPem,
        ca: ca.certPem,
        signingKey: jwtTpp.signing.privateJwk,
        tokenProvider: source.token,
        // The receiver's callback is a v3.1 one (/open-banking/v3.1/event-notifications).
        apiVersion: 'v3.1',
      });
    });
    afterAll(async () => {
      await client?.close();
      await closeSource?.();
    });

    it('when a TPP gets a JWT access token (private_key_jwt, resource indicator) from the bank AS, then it subscribes, receives push, polls and acks on ob-events', async () => {
      const bankToken = await tokenFor(jwtTpp, { resource: TEST_PUBLIC_URL });
      const claims = JSON.parse(Buffer.from(bankToken.split('.')[1]!, 'base64url').toString()) as {
        iss: string;
        aud: string;
        cnf: Record<string, string>;
      };
      expect(claims).toMatchObject({ iss: as.issuer, aud: TEST_PUBLIC_URL });
      expect(claims.cnf['x5t#S256']).toBeTypeOf('string');

      const sub = await client.subscribe({ callbackUrl: receiver.callbackUrl });
      expect(sub.callbackUrl).toBe(receiver.callbackUrl);
      const [pushed] = await publish(server, jwtTpp.clientId, 1);
      await receiver.waitFor((r) => r.accepted.has(pushed!), 20_000, 'push of the SET');
      expect((await client.verifySet(receiver.forJti(pushed!)[0]!.body)).jti).toBe(pushed);

      await client.updateSubscription({ callbackUrl: null });
      const [polled] = await publish(server, jwtTpp.clientId, 1);
      const answer = await client.poll({ returnImmediately: true });
      expect(Object.keys(answer.sets)).toContain(polled);
      await client.poll({ ack: [polled!], returnImmediately: true });
      await deliveryWhen(db.knex, polled!, (r) => r.state === 'acknowledged');
      expect(await client.unsubscribe()).toBe(true);
    });
  });

  it('when a tls_client_auth TPP presents an opaque token, then ob-events introspects it (client_secret_basic) and lets it poll', async () => {
    const token = await tokenFor(mtlsTpp, { tls: true });
    expect(token.split('.')).toHaveLength(1);
    expect((await poll(mtlsTpp.agent, token)).status).toBe(200);
  });

  it('when ob-events authenticates to the introspection endpoint with private_key_jwt or tls_client_auth, then the AS answers it', async () => {
    const token = await tokenFor(mtlsTpp, { tls: true });
    const keyFile = `${tmp}/introspection.key`;
    const certFile = `${tmp}/introspection.crt`;
    const certKeyFile = `${tmp}/introspection-tls.key`;
    const { createPrivateKey } = await import('node:crypto');
    fs.writeFileSync(
      keyFile,
      createPrivateKey({ key: introspectionKey.privateJwk as never, format: 'jwk' }).export({
        type: 'pkcs8',
        format: 'pem',
      }),
    );
    fs.writeFileSync(certFile, introspectionCert.certPem);
    fs.writeFileSync(certKeyFile, introspectionCert.keyPem);
    const base = testEnv(db, { AUTH_ISSUER_URL: as.issuer, AUTH_CA_FILE: pki.caCert });
    const pkjwt = loadConfig({
      ...base,
      AUTH_INTROSPECTION_CLIENT_ID: 'ob-events-pkjwt',
      AUTH_INTROSPECTION_KEY_FILE: keyFile,
      AUTH_INTROSPECTION_KEY_KID: introspectionKey.kid,
    }).authServer!;
    const mtls = loadConfig({
      ...base,
      AUTH_INTROSPECTION_CLIENT_ID: 'ob-events-mtls',
      AUTH_INTROSPECTION_CERT_FILE: certFile,
      AUTH_INTROSPECTION_CERT_KEY_FILE: certKeyFile,
    }).authServer!;
    expect([pkjwt.introspection.method, mtls.introspection.method]).toEqual([
      'private_key_jwt',
      'tls_client_auth',
    ]);
    for (const config of [pkjwt, mtls]) {
      const client = new AuthServer(config, clock);
      expect(await client.introspect(token)).toMatchObject({
        active: true,
        client_id: mtlsTpp.clientId,
      });
      await client.close();
    }
  });

  it('when the TPP asks ob-events for a token or its discovery document, then both are 404 (the bank AS issues tokens); its JWKS is still served', async () => {
    const token = await call(jwtTpp.agent, `${server.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    expect(token.status).toBe(404);
    const bare = await call(jwtTpp.agent, `${server.url}/token`, { method: 'POST' });
    expect(bare.status).toBe(404);
    const discovery = await call(jwtTpp.agent, `${server.url}/.well-known/openid-configuration`);
    expect(discovery.status).toBe(404);
    expect((await call(jwtTpp.agent, `${server.url}/jwks`)).status).toBe(200);
  });

  describe('refusals', () => {
    it('when the JWT names another issuer, then 401', async () => {
      const forged = await signLikeTheBank(as.signingJwk, {
        iss: 'https://other-bank.example',
        client_id: jwtTpp.clientId,
        aud: TEST_PUBLIC_URL,
        cnf: { 'x5t#S256': thumbprintOf(jwtTpp.cert.certPem) },
      });
      expectRefused(await poll(jwtTpp.agent, forged));
    });

    it('when a token comes from another authorization server (other issuer, other keys), then 401', async () => {
      const other = await startBankAs({
        ca,
        clients: [
          {
            clientId: jwtTpp.clientId,
            method: 'private_key_jwt',
            publicJwk: jwtTpp.signing.publicJwk,
          },
        ],
      });
      try {
        const source = await bankTokenSource({
          issuer: other.issuer,
          clientId: jwtTpp.clientId,
          ca: ca.certPem,
          cert: jwtTpp.cert.certPem,
          key: jwtTpp.cert.keyPem,
          signingJwk: jwtTpp.signing.privateJwk,
          resource: TEST_PUBLIC_URL,
        });
        const token = await source.token();
        await source.close();
        expectRefused(await poll(jwtTpp.agent, token));
      } finally {
        await other.stop();
      }
    });

    it('when the JWT is for another audience, then 401', async () => {
      const token = await tokenFor(jwtTpp, { resource: 'https://payments.bank.example' });
      expectRefused(await poll(jwtTpp.agent, token));
    });

    it('when the JWT has expired (beyond the clock tolerance), then 401', async () => {
      const token = await tokenFor(jwtTpp, { resource: TEST_PUBLIC_URL });
      expect((await poll(jwtTpp.agent, token)).status).toBe(200);
      clock.offsetMs = 301_000 + 11_000;
      try {
        expectRefused(await poll(jwtTpp.agent, token));
      } finally {
        clock.offsetMs = 0;
      }
    });

    it('when the token is bound to another certificate than the one on the connection, then 401', async () => {
      const token = await tokenFor(jwtTpp, { resource: TEST_PUBLIC_URL });
      const elsewhere = mtlsAgent({
        ca: ca.certPem,
        cert: otherCert.certPem,
        key: otherCert.keyPem,
      });
      expectRefused(await poll(elsewhere, token));
      const opaque = await tokenFor(mtlsTpp, { tls: true });
      expectRefused(await poll(elsewhere, opaque));
      await elsewhere.close();
    });

    it('when the token is not certificate-bound at all, then 401', async () => {
      const token = await tokenFor(unboundTpp, { resource: TEST_PUBLIC_URL });
      expectRefused(await poll(unboundTpp.agent, token));
    });

    it('when the JWT is signed with a key the bank AS does not publish, then 401', async () => {
      const rogue = await createSigningKeyPair();
      const token = await signLikeTheBank(
        { ...rogue.privateJwk, alg: 'PS256' },
        {
          iss: as.issuer,
          client_id: jwtTpp.clientId,
          aud: TEST_PUBLIC_URL,
          cnf: { 'x5t#S256': thumbprintOf(jwtTpp.cert.certPem) },
        },
      );
      expectRefused(await poll(jwtTpp.agent, token));
    });

    it('when the JWT uses an algorithm that is not pinned (HS256 with a guessable key), then 401', async () => {
      const token = await new SignJWT({ client_id: jwtTpp.clientId, scope: 'accounts' })
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
        .setIssuer(as.issuer)
        .setAudience(TEST_PUBLIC_URL)
        .setExpirationTime('5m')
        .sign(Buffer.from('a'.repeat(32)));
      expectRefused(await poll(jwtTpp.agent, token));
    });

    it('when an opaque token is revoked at the bank AS, then ob-events refuses it within the introspection cache ceiling', async () => {
      const token = await tokenFor(mtlsTpp, { tls: true });
      expect((await poll(mtlsTpp.agent, token)).status).toBe(200);
      const stored = await as.provider.ClientCredentials.find(token);
      await stored!.destroy();
      // AUTH_INTROSPECTION_CACHE_SECONDS=1: refused from at most one second on.
      await eventually(
        async () => ((await poll(mtlsTpp.agent, token)).status === 401 ? true : undefined),
        5_000,
        'the revoked token refused',
      );
      expectRefused(await poll(mtlsTpp.agent, token));
    });

    it('when a TPP the bank AS knows but ob-events does not comes with a valid token, then 403 says it is not registered, and it cannot subscribe', async () => {
      const token = await tokenFor(unknownTpp, { resource: TEST_PUBLIC_URL });
      const res = await poll(unknownTpp.agent, token);
      expect(res.status).toBe(403);
      expect(res.json<{ Errors: { Message: string }[] }>().Errors[0]!.Message).toMatch(
        /not registered with ob-events/,
      );
      const sub = await call(
        unknownTpp.agent,
        `${server.url}/open-banking/v3.1/event-subscriptions`,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ Data: { Version: '3.1' } }),
        },
      );
      expect(sub.status).toBe(403);
      expect(
        await db.knex('event_subscriptions').where({ client_id: unknownTpp.clientId }),
      ).toEqual([]);
    });

    it('when ob-events deletes a TPP the bank AS still serves, then its bank token stops working at once, and works again once it is re-added', async () => {
      const token = await tokenFor(mtlsTpp, { tls: true });
      expect((await poll(mtlsTpp.agent, token)).status).toBe(200);
      await server.server.services.clients.delete(mtlsTpp.clientId);
      // Deleted: refused like a TPP never added (403 saying so).
      expect((await poll(mtlsTpp.agent, token)).status).toBe(403);
      await server.server.services.clients.register({
        clientId: mtlsTpp.clientId,
        jwks: { keys: [mtlsTpp.signing.publicJwk] },
      });
      expect((await poll(mtlsTpp.agent, token)).status).toBe(200);
    });

    it('when the bank AS cannot be reached, then a token it would have to check is a 503 with Retry-After', async () => {
      const token = await tokenFor(mtlsTpp, { tls: true });
      await as.stop();
      const res = await poll(mtlsTpp.agent, token);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
    });
  });
});

async function signLikeTheBank(jwk: JWK, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ scope: 'accounts eventpolling', ...claims })
    .setProtectedHeader({ alg: 'PS256', typ: 'at+jwt', kid: jwk.kid! })
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(await importJWK(jwk, 'PS256'));
}
