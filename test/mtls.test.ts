// The API listener: mutual TLS, interaction ids, security headers and the error shape.
import { once } from 'node:events';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueCertificate } from '../src/crypto/devPki.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, mtlsAgent } from './helpers/http.js';
import { expectObieShape } from './helpers/obieSchema.js';
import { readPki, startTestServer, type TestServer } from './helpers/server.js';

describe('API listener', () => {
  let db: TestDatabase;
  let server: TestServer;
  const pki = readPki();
  const tpp = mtlsAgent({ ca: pki.ca, cert: pki.tppCert, key: pki.tppKey });

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
  });
  afterAll(async () => {
    await tpp.close();
    await server?.stop();
    await db?.drop();
  });

  it('when a TPP presents a certificate from the trusted CA, then the request reaches the app', async () => {
    const res = await call(tpp, `${server.url}/no-such-endpoint`);
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json<{ Code: string; Id: string; Errors: { ErrorCode: string }[] }>();
    expect(body.Code).toBe('404 Not Found');
    expect(body.Errors[0]?.ErrorCode).toBe('UK.OBIE.Resource.NotFound');
    expect(body.Id).toBe(res.headers['x-fapi-interaction-id']);
    expectObieShape('OBErrorResponse1', body);
  });

  it('when no client certificate is presented, then the TLS handshake fails and nothing is served', async () => {
    const anonymous = mtlsAgent({ ca: pki.ca });
    await expect(call(anonymous, `${server.url}/no-such-endpoint`)).rejects.toThrow();
    await anonymous.close();
  });

  it('when the client certificate comes from an untrusted CA, then the handshake fails', async () => {
    const rogueCa = createCertificateAuthority('rogue CA');
    const rogue = issueCertificate(rogueCa, { commonName: 'demo-tpp', usage: 'client' });
    const agent = mtlsAgent({ ca: pki.ca, cert: rogue.certPem, key: rogue.keyPem });
    await expect(call(agent, `${server.url}/no-such-endpoint`)).rejects.toThrow();
    await agent.close();
  });

  it('when a client asks to renegotiate TLS (to swap certificates mid-connection), then it is refused', async () => {
    const url = new URL(server.url);
    const socket = tls.connect({
      host: url.hostname,
      port: Number(url.port),
      ca: pki.ca,
      cert: pki.tppCert,
      key: pki.tppKey,
      maxVersion: 'TLSv1.2', // TLS 1.3 has no renegotiation at all
      servername: 'localhost',
    });
    await once(socket, 'secureConnect');
    const outcome = await new Promise<string>((resolve) => {
      socket.once('error', (err) => resolve(`error: ${err.message}`));
      socket.once('close', () => resolve('closed'));
      const asked = socket.renegotiate({}, (err) => {
        if (!err) resolve('renegotiated');
      });
      if (!asked) resolve('not sent');
      // The server meets the new handshake when it reads what follows.
      socket.write('GET /.well-known/openid-configuration HTTP/1.1\r\nHost: localhost\r\n\r\n');
      socket.once('data', () => resolve('answered'));
    });
    socket.destroy();
    expect(outcome).toMatch(/^(error|closed)/);
  });

  it('when the caller sends x-fapi-interaction-id, then the response echoes it', async () => {
    const id = '93bac548-d2de-4546-b106-880a5018460d';
    const res = await call(tpp, `${server.url}/x`, { headers: { 'x-fapi-interaction-id': id } });
    expect(res.headers['x-fapi-interaction-id']).toBe(id);
  });

  it('when the caller sends no interaction id, then the response carries a new UUID', async () => {
    const res = await call(tpp, `${server.url}/x`);
    expect(res.headers['x-fapi-interaction-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('when any response is sent, then it carries the helmet security headers', async () => {
    const res = await call(tpp, `${server.url}/x`);
    expect(res.headers['strict-transport-security']).toBeDefined();
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-powered-by']).toBeUndefined();
  });
});
