// Tokens only for the client's own certificate: every client has a transport identity (its
// certificate subject DN, and optionally pinned certificate thumbprints), /token refuses a
// request over any other certificate whatever the auth method, and production refuses clients
// that have none.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSigningKeyPair, issueCertificate } from '../src/crypto/devPki.js';
import { ClientsStore } from '../src/db/stores/clientsStore.js';
import { Clients } from '../src/domain/clients.js';
import { ManualClock } from '../src/clock.js';
import { AppError } from '../src/errors.js';
import { issueCustomClientCertificate } from './helpers/customCert.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { mtlsAgent } from './helpers/http.js';
import { readPki, startTestServer, testPki, type TestServer } from './helpers/server.js';
import {
  createTestTpp,
  JWT_BEARER,
  postToken,
  signClientAssertion,
  thumbprintOf,
  type TestTpp,
} from './helpers/tpp.js';

const KEK = Buffer.alloc(32, 7).toString('base64');

describe('transport identity at /token', () => {
  let db: TestDatabase;
  let server: TestServer;
  let a: TestTpp;
  let b: TestTpp;
  const agents: { close(): Promise<void> }[] = [];
  const pki = readPki();
  const ca = { certPem: pki.ca, keyPem: fs.readFileSync(testPki().caKey, 'utf8') };

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    a = await createTestTpp(server);
    b = await createTestTpp(server);
    agents.push(a.agent, b.agent);
  });
  afterAll(async () => {
    await Promise.all(agents.map((x) => x.close()));
    await server?.stop();
    await db?.drop();
  });

  const assertionForm = async (tpp: TestTpp) => ({
    grant_type: 'client_credentials',
    client_assertion_type: JWT_BEARER,
    client_assertion: await signClientAssertion(tpp, server),
  });

  function agentFor(cert: { certPem: string; keyPem: string }) {
    const agent = mtlsAgent({ ca: pki.ca, cert: cert.certPem, key: cert.keyPem });
    agents.push(agent);
    return agent;
  }

  it("when TPP A's private_key_jwt assertion is traded over TPP B's certificate, then 401 invalid_client", async () => {
    const res = await postToken(server, b.agent, await assertionForm(a));
    expect(res.status).toBe(401);
    expect(res.json()).toEqual({
      error: 'invalid_client',
      error_description: 'client authentication failed',
    });
    // Over its own certificate the same kind of assertion works.
    expect((await postToken(server, a.agent, await assertionForm(a))).status).toBe(200);
  });

  it('when thumbprints are pinned, then another certificate with the same subject DN is refused', async () => {
    const clientId = `pinned-${Date.now()}`;
    const subject = { commonName: clientId, organization: 'ob-events tests', country: 'GB' };
    const pinned = issueCertificate(ca, { ...subject, usage: 'client' });
    const twin = issueCertificate(ca, { ...subject, usage: 'client' });
    const key = await createSigningKeyPair();
    await server.server.services.clients.register({
      clientId,
      jwks: { keys: [key.publicJwk] },
      tlsSubjectDn: `CN=${clientId},O=ob-events tests,C=GB`,
      tlsCertThumbprints: [thumbprintOf(pinned.certPem)],
    });
    const tpp = { clientId, signingKey: key.privateJwk, kid: key.kid };
    const form = async () => ({
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await signClientAssertion(tpp, server),
    });
    expect((await postToken(server, agentFor(twin), await form())).status).toBe(401);
    expect((await postToken(server, agentFor(pinned), await form())).status).toBe(200);
  });

  it('when a tls_client_auth certificate subject has a title and escaped spaces, then 401 if it is not the registered DN, never 500', async () => {
    const tls = await createTestTpp(server, { authMethod: 'tls_client_auth' });
    agents.push(tls.agent);
    const odd = agentFor(
      issueCustomClientCertificate(`/C=GB/O=ob-events tests/title=Director/CN= ${tls.clientId} `),
    );
    const res = await postToken(server, odd, {
      grant_type: 'client_credentials',
      client_id: tls.clientId,
    });
    expect(res.status).toBe(401);
    expect(res.json()).toMatchObject({ error: 'invalid_client' });
  });

  it('when a tls_client_auth certificate has a multi-valued RDN but the DN registered single RDNs, then 401', async () => {
    const clientId = `mv-${Date.now()}`;
    const key = await createSigningKeyPair();
    await server.server.services.clients.register({
      clientId,
      jwks: { keys: [key.publicJwk] },
      authMethod: 'tls_client_auth',
      tlsSubjectDn: `CN=${clientId},O=ob-events tests,C=GB`,
    });
    const multi = agentFor(issueCustomClientCertificate(`/C=GB/O=ob-events tests+CN=${clientId}`));
    const form = { grant_type: 'client_credentials', client_id: clientId };
    expect((await postToken(server, multi, form)).status).toBe(401);
    const exact = agentFor(issueCustomClientCertificate(`/C=GB/O=ob-events tests/CN=${clientId}`));
    expect((await postToken(server, exact, form)).status).toBe(200);
  });

  it('when a client with no transport identity asks in development mode, then it still gets a token', async () => {
    const key = await createSigningKeyPair();
    const clientId = `legacy-${Date.now()}`;
    await server.server.services.clients.register({ clientId, jwks: { keys: [key.publicJwk] } });
    const tpp = { clientId, signingKey: key.privateJwk, kid: key.kid };
    const res = await postToken(server, a.agent, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await signClientAssertion(tpp, server),
    });
    expect(res.status).toBe(200);
  });

  it('when a thumbprint is malformed, then registration is refused', async () => {
    const key = await createSigningKeyPair();
    await expect(
      server.server.services.clients.register({
        clientId: `bad-pin-${Date.now()}`,
        jwks: { keys: [key.publicJwk] },
        tlsCertThumbprints: ['not-a-thumbprint'],
      }),
    ).rejects.toThrow(/thumbprint/);
  });
});

describe('transport identity in production mode', () => {
  let db: TestDatabase;
  let server: TestServer;
  const agents: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: { OB_EVENTS_MODE: 'production', KEY_ENCRYPTION_KEY: KEK },
    });
  });
  afterAll(async () => {
    await Promise.all(agents.map((x) => x.close()));
    await server?.stop();
    await db?.drop();
  });

  it('when a client is registered without DN or thumbprint, then registration is refused', async () => {
    const key = await createSigningKeyPair();
    const err = await server.server.services.clients
      .register({ clientId: `none-${Date.now()}`, jwks: { keys: [key.publicJwk] } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).message).toMatch(/transport identity/);
  });

  it('when a stored client has no transport identity (registered before), then /token refuses it', async () => {
    const key = await createSigningKeyPair();
    const clientId = `old-${Date.now()}`;
    // Registered as development mode allowed (the row predates the rule).
    await new Clients({
      store: ClientsStore.create(db.knex),
      knex: db.knex,
      clock: new ManualClock(Date.now()),
    }).register({ clientId, jwks: { keys: [key.publicJwk] } });
    const pki = readPki();
    const agent = mtlsAgent({ ca: pki.ca, cert: pki.tppCert, key: pki.tppKey });
    agents.push(agent);
    const res = await postToken(server, agent, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await signClientAssertion(
        { clientId, signingKey: key.privateJwk, kid: key.kid },
        server,
      ),
    });
    expect(res.status).toBe(401);
  });

  it("when a client's registered DN is changed, then its old certificate gets no token right after one was issued over it", async () => {
    const tpp = await createTestTpp(server);
    agents.push(tpp.agent);
    await expect(tpp.accessToken()).resolves.toBeTruthy();
    // Updating a client clears this replica's cache: the new DN applies to the next request.
    await server.server.services.clients.update(tpp.clientId, {
      tlsSubjectDn: `CN=${tpp.clientId}-renamed,O=ob-events tests,C=GB`,
    });
    await expect(tpp.accessToken()).rejects.toThrow(/401/);
  });

  it('when a client registers its subject DN, then it gets tokens over that certificate', async () => {
    const tpp = await createTestTpp(server);
    agents.push(tpp.agent);
    await expect(tpp.accessToken()).resolves.toBeTruthy();
  });
});
