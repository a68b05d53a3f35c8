// The admin listener (/metrics, health, the HMAC APIs): its own address (ADMIN_HOST, loopback by
// default, whatever HOST says) and optional TLS (ADMIN_TLS_CERT_FILE / ADMIN_TLS_KEY_FILE).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, mtlsAgent } from './helpers/http.js';
import { readPki, startTestServer, testPki, type TestServer } from './helpers/server.js';

describe('admin listener', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('when HOST is 0.0.0.0 and ADMIN_HOST is unset, then the admin listener stays on 127.0.0.1', async () => {
    const server = await startTestServer(db, { env: { HOST: '0.0.0.0' } });
    try {
      expect(server.config.http.adminHost).toBe('127.0.0.1');
      expect(server.server.adminAddress).toBe('127.0.0.1');
    } finally {
      await server.stop();
    }
  });

  describe('with ADMIN_TLS_CERT_FILE and ADMIN_TLS_KEY_FILE', () => {
    let server: TestServer;
    const agent = mtlsAgent({ ca: readPki().ca });
    beforeAll(async () => {
      const pki = testPki();
      server = await startTestServer(db, {
        env: { ADMIN_TLS_CERT_FILE: pki.serverCert, ADMIN_TLS_KEY_FILE: pki.serverKey },
      });
    });
    afterAll(async () => {
      await agent.close();
      await server?.stop();
    });

    it('when a client speaks HTTPS, then /health/live and /metrics answer', async () => {
      expect(server.adminUrl).toMatch(/^https:/);
      expect((await call(agent, `${server.adminUrl}/health/live`)).status).toBe(200);
      expect((await call(agent, `${server.adminUrl}/metrics`)).status).toBe(200);
    });

    it('when a client speaks plain HTTP, then it gets no answer', async () => {
      const plain = server.adminUrl.replace('https:', 'http:');
      await expect(fetch(`${plain}/health/live`)).rejects.toThrow();
    });
  });
});
