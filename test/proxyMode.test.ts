// Behind a TLS-terminating proxy: the client certificate comes from CLIENT_CERT_HEADER, only on
// connections that present a proxy certificate (PROXY_CA_FILE) from TRUSTED_PROXIES, exactly
// once, and is checked as the handshake would have checked it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueCertificate } from '../src/crypto/devPki.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, mtlsAgent, type TestResponse } from './helpers/http.js';
import { readPki, startTestServer, testPki, type TestServer } from './helpers/server.js';
import {
  createTestTpp,
  JWT_BEARER,
  postToken,
  signClientAssertion,
  thumbprintOf,
  type TestTpp,
} from './helpers/tpp.js';

const HEADER = 'x-ssl-client-cert';
const pki = readPki();
const testCa = { certPem: pki.ca, keyPem: fs.readFileSync(testPki().caKey, 'utf8') };

// The proxies' own CA, apart from the TPPs' CA, and the certificate our proxy connects with.
const proxyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-proxy-ca-'));
const proxyCa = createCertificateAuthority('proxy CA');
const proxyCaFile = path.join(proxyDir, 'proxy-ca.crt');
fs.writeFileSync(proxyCaFile, proxyCa.certPem);
const proxyCert = issueCertificate(proxyCa, { commonName: 'edge-proxy', usage: 'client' });
const proxyEnv = (trusted: string) => ({
  CLIENT_CERT_HEADER: HEADER,
  TRUSTED_PROXIES: trusted,
  PROXY_CA_FILE: proxyCaFile,
});

/** What nginx's $ssl_client_escaped_cert puts in the header. */
const escaped = (pem: string) => encodeURIComponent(pem);

function expectNoCertificate(res: TestResponse): void {
  expect(res.status).toBe(401);
}

describe('proxy mode: request from a trusted proxy', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  // The proxy terminates the TPP's TLS and connects to us with its own client certificate.
  const proxy = mtlsAgent({ ca: pki.ca, cert: proxyCert.certPem, key: proxyCert.keyPem });
  const noCertificate = mtlsAgent({ ca: pki.ca });

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: proxyEnv('127.0.0.1/32') });
    tpp = await createTestTpp(server);
  });
  afterAll(async () => {
    await proxy.close();
    await noCertificate.close();
    await tpp?.agent.close();
    await server?.stop();
    await db?.drop();
  });

  async function tokenVia(headerValue: string | undefined, agent = proxy) {
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await signClientAssertion(tpp, server),
    }).toString();
    return call(agent, `${server.url}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(headerValue === undefined ? {} : { [HEADER]: headerValue }),
      },
      body,
    });
  }

  it("when the proxy forwards the TPP's certificate, then the token is bound to that certificate", async () => {
    const res = await tokenVia(escaped(tpp.certPem));
    expect(res.status).toBe(200);
    const cnf = decodeJwt(res.json<{ access_token: string }>().access_token).cnf as Record<
      string,
      string
    >;
    expect(cnf['x5t#S256']).toBe(thumbprintOf(tpp.certPem));
  });

  it('when the proxy sends no certificate header, then 401', async () => {
    expectNoCertificate(await tokenVia(undefined));
  });

  it('when the forwarded certificate comes from a CA we do not trust, then 401', async () => {
    const rogue = issueCertificate(createCertificateAuthority('rogue CA'), {
      commonName: tpp.clientId,
      usage: 'client',
    });
    expectNoCertificate(await tokenVia(escaped(rogue.certPem)));
  });

  it('when the forwarded certificate has expired, then 401', async () => {
    const expired = issueCertificate(testCa, {
      commonName: tpp.clientId,
      usage: 'client',
      notBefore: new Date(Date.now() - 3 * 86_400_000),
      validDays: 1,
    });
    expectNoCertificate(await tokenVia(escaped(expired.certPem)));
  });

  it('when the forwarded certificate is a server certificate (no clientAuth usage), then 401', async () => {
    const serverCert = issueCertificate(testCa, { commonName: 'localhost', usage: 'server' });
    expectNoCertificate(await tokenVia(escaped(serverCert.certPem)));
  });

  it('when the header is not a certificate, then 401', async () => {
    expectNoCertificate(await tokenVia('not%20a%20certificate'));
    expectNoCertificate(await tokenVia('%E0%A4%A'));
  });

  it('when the request carries two instances of the certificate header, then 401', async () => {
    const other = issueCertificate(testCa, { commonName: 'someone-else', usage: 'client' });
    const res = await request(`${server.url}/token`, {
      dispatcher: proxy,
      method: 'POST',
      headers: [
        'content-type',
        'application/x-www-form-urlencoded',
        HEADER,
        escaped(tpp.certPem),
        HEADER,
        escaped(other.certPem),
      ],
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: JWT_BEARER,
        client_assertion: await signClientAssertion(tpp, server),
      }).toString(),
    });
    await res.body.text();
    expect(res.statusCode).toBe(401);
  });

  it('when a connection from a trusted address has no proxy certificate, then the header is not read (401)', async () => {
    expectNoCertificate(await tokenVia(escaped(tpp.certPem), noCertificate));
  });

  it("when a TPP connects from a trusted address with its own certificate and names another TPP's in the header, then the header is ignored", async () => {
    const other = issueCertificate(testCa, { commonName: 'someone-else', usage: 'client' });
    const res = await tokenVia(escaped(other.certPem), tpp.agent);
    expect(res.status).toBe(200);
    const cnf = decodeJwt(res.json<{ access_token: string }>().access_token).cnf as Record<
      string,
      string
    >;
    expect(cnf['x5t#S256']).toBe(thumbprintOf(tpp.certPem));
  });

  it('when the forwarded certificate is the proxy certificate itself, then 401', async () => {
    expectNoCertificate(await tokenVia(escaped(proxyCert.certPem)));
  });
});

describe('proxy mode: a proxy certificate from an address outside TRUSTED_PROXIES', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  const proxy = mtlsAgent({ ca: pki.ca, cert: proxyCert.certPem, key: proxyCert.keyPem });

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: proxyEnv('10.9.8.0/24') });
    tpp = await createTestTpp(server);
  });
  afterAll(async () => {
    await proxy.close();
    await tpp?.agent.close();
    await server?.stop();
    await db?.drop();
  });

  it('when the proxy certificate connects from an address not in TRUSTED_PROXIES, then 401', async () => {
    const res = await call(proxy, `${server.url}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        [HEADER]: escaped(tpp.certPem),
      },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: JWT_BEARER,
        client_assertion: await signClientAssertion(tpp, server),
      }).toString(),
    });
    expectNoCertificate(res);
  });
});

describe('proxy mode: start-up', () => {
  it("when PROXY_CA_FILE holds the TPPs' CA too, then the server refuses to start", async () => {
    const db = await createTestDatabase();
    try {
      await expect(
        startTestServer(db, {
          env: { ...proxyEnv('127.0.0.1/32'), PROXY_CA_FILE: testPki().caCert },
        }),
      ).rejects.toThrow(/PROXY_CA_FILE must be a CA of its own/);
    } finally {
      await db.drop();
    }
  });
});

describe('proxy mode: request from an address that is not a trusted proxy', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  let other: TestTpp;
  const anonymous = mtlsAgent({ ca: pki.ca });

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: proxyEnv('10.9.8.0/24') });
    tpp = await createTestTpp(server);
    other = await createTestTpp(server);
  });
  afterAll(async () => {
    await anonymous.close();
    await Promise.all([tpp?.agent.close(), other?.agent.close()]);
    await server?.stop();
    await db?.drop();
  });

  const form = async () => ({
    grant_type: 'client_credentials',
    client_assertion_type: JWT_BEARER,
    client_assertion: await signClientAssertion(tpp, server),
  });

  it('when the certificate header comes from an untrusted address without a TLS certificate, then it is ignored and the request refused', async () => {
    const res = await call(anonymous, `${server.url}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        [HEADER]: escaped(tpp.certPem),
      },
      body: new URLSearchParams(await form()).toString(),
    });
    expectNoCertificate(res);
  });

  it("when a directly connected TPP sends the header naming another TPP's certificate, then the token is bound to its own", async () => {
    const res = await call(tpp.agent, `${server.url}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        [HEADER]: escaped(other.certPem),
      },
      body: new URLSearchParams(await form()).toString(),
    });
    expect(res.status).toBe(200);
    const cnf = decodeJwt(res.json<{ access_token: string }>().access_token).cnf as Record<
      string,
      string
    >;
    expect(cnf['x5t#S256']).toBe(thumbprintOf(tpp.certPem));
  });

  it('when a TPP connects directly with its verified certificate, then it works as without proxy mode', async () => {
    const res = await postToken(server, tpp.agent, await form());
    expect(res.status).toBe(200);
  });
});
