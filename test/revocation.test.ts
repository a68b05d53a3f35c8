// CRL_FILES on a running server: a revoked client certificate is refused in both modes (after
// the TLS handshake, and in the proxy header path), and replacing the CRL file takes effect
// without a restart.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueCertificate } from '../src/crypto/devPki.js';
import { makeCrl } from './helpers/certs.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, mtlsAgent } from './helpers/http.js';
import { readPki, startTestServer, testPki, type TestServer } from './helpers/server.js';

const pki = readPki();
const testCa = { certPem: pki.ca, keyPem: fs.readFileSync(testPki().caKey, 'utf8') };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-revocation-'));
const crlFile = path.join(dir, 'tpp-ca.crl');
const serialOf = (pem: string) => new X509Certificate(pem).serialNumber;

/** Replaces the CRL file the way an operator's job would: write aside, then rename. */
function publishCrl(serials: string[]): void {
  const tmp = `${crlFile}.tmp`;
  fs.writeFileSync(tmp, makeCrl(testCa, serials));
  fs.renameSync(tmp, crlFile);
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('CRL revocation: direct mTLS (after the handshake)', () => {
  let db: TestDatabase;
  let server: TestServer;
  const revoked = issueCertificate(testCa, { commonName: 'revoked-tpp', usage: 'client' });
  const later = issueCertificate(testCa, { commonName: 'revoked-later', usage: 'client' });
  const good = issueCertificate(testCa, { commonName: 'good-tpp', usage: 'client' });
  const agent = (c: { certPem: string; keyPem: string }) =>
    mtlsAgent({ ca: pki.ca, cert: c.certPem, key: c.keyPem });
  const agents = { revoked: agent(revoked), later: agent(later), good: agent(good) };

  beforeAll(async () => {
    publishCrl([serialOf(revoked.certPem)]);
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: { CRL_FILES: crlFile, CRL_RELOAD_SECONDS: '1' },
    });
  });
  afterAll(async () => {
    await Promise.all(Object.values(agents).map((a) => a.close()));
    await server?.stop();
    await db?.drop();
  });

  it("when the client certificate is in its CA's CRL, then 401", async () => {
    expect((await call(agents.revoked, `${server.url}/jwks`)).status).toBe(401);
    expect((await call(agents.good, `${server.url}/jwks`)).status).toBe(200);
  });

  it('when the CRL file is replaced with one that revokes a certificate, then it is refused without a restart', async () => {
    expect((await call(agents.later, `${server.url}/jwks`)).status).toBe(200);
    publishCrl([serialOf(revoked.certPem), serialOf(later.certPem)]);
    // Same keep-alive connection: revocation is checked per request, not per handshake.
    await eventually(
      async () => (await call(agents.later, `${server.url}/jwks`)).status === 401,
      'the new CRL to apply',
    );
    expect((await call(agents.good, `${server.url}/jwks`)).status).toBe(200);
  });
});

describe('CRL revocation: proxy mode (header path)', () => {
  let db: TestDatabase;
  let server: TestServer;
  const proxyCa = createCertificateAuthority('proxy CA (revocation test)');
  const proxyCaFile = path.join(dir, 'proxy-ca.crt');
  fs.writeFileSync(proxyCaFile, proxyCa.certPem);
  const proxyCert = issueCertificate(proxyCa, { commonName: 'edge-proxy', usage: 'client' });
  const proxy = mtlsAgent({ ca: pki.ca, cert: proxyCert.certPem, key: proxyCert.keyPem });
  const revoked = issueCertificate(testCa, { commonName: 'revoked-behind-proxy', usage: 'client' });
  const good = issueCertificate(testCa, { commonName: 'good-behind-proxy', usage: 'client' });
  const via = (pem: string) =>
    call(proxy, `${server.url}/jwks`, {
      headers: { 'x-ssl-client-cert': encodeURIComponent(pem) },
    });

  beforeAll(async () => {
    publishCrl([serialOf(revoked.certPem)]);
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: {
        CLIENT_CERT_HEADER: 'x-ssl-client-cert',
        TRUSTED_PROXIES: '127.0.0.1/32',
        PROXY_CA_FILE: proxyCaFile,
        CRL_FILES: crlFile,
        CRL_RELOAD_SECONDS: '1',
      },
    });
  });
  afterAll(async () => {
    await proxy.close();
    await server?.stop();
    await db?.drop();
  });

  it("when the forwarded certificate is in its CA's CRL, then 401", async () => {
    expect((await via(revoked.certPem)).status).toBe(401);
    expect((await via(good.certPem)).status).toBe(200);
  });

  it('when the CRL file is replaced with one that revokes the forwarded certificate, then it is refused without a restart', async () => {
    publishCrl([serialOf(revoked.certPem), serialOf(good.certPem)]);
    await eventually(async () => (await via(good.certPem)).status === 401, 'the new CRL to apply');
  });
});

describe('CRL revocation: start-up', () => {
  it('when a CRL file is unreadable, then the server refuses to start', async () => {
    const db = await createTestDatabase();
    const bad = path.join(dir, 'bad.crl');
    fs.writeFileSync(bad, 'not a CRL');
    try {
      await expect(startTestServer(db, { env: { CRL_FILES: bad } })).rejects.toThrow(
        /bad\.crl: not a readable CRL/,
      );
    } finally {
      await db.drop();
    }
  });
});
