// Fixed responses (src/http/fixedResponses.ts): a plain GET of the discovery metadata is answered
// before express with the bytes the express route sends, after the same checks; a request it
// would refuse, and anything not plain, goes to express and is answered exactly as before.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { X509Certificate } from 'node:crypto';
import { Router } from 'express';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createCertificateAuthority, issueCertificate } from '../src/crypto/devPki.js';
import { publishFixedDocuments } from '../src/http/fixedResponses.js';
import { METADATA_PATHS } from '../src/http/routes/discovery.js';
import { createLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/main.js';
import { makeCrl } from './helpers/certs.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { rawHeader, rawRequest } from './helpers/rawHttps.js';
import {
  apiRequestCount,
  readPki,
  serveApiRouters,
  startTestServer,
  testEnv,
  testPki,
  type TestServer,
} from './helpers/server.js';

const pki = readPki();
const tpp = { ca: pki.ca, cert: pki.tppCert, key: pki.tppKey };
const testCa = { certPem: pki.ca, keyPem: fs.readFileSync(testPki().caKey, 'utf8') };
// Not a plain Accept: negotiated by express, so the request takes the express route.
const VIA_EXPRESS = { accept: 'application/json;q=0.9' };

describe('fixed responses: the mechanism', () => {
  let url: string;
  let close: () => Promise<void>;
  let expressCalls = 0;
  const body = '{"fixed":true}';

  beforeAll(async () => {
    const router = Router();
    router.get('/doc', (_req, res) => {
      expressCalls += 1;
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Content-Type', 'application/json; charset=utf-8');
      res.send(body);
    });
    publishFixedDocuments(router, [
      {
        path: '/doc',
        headers: [
          ['Cache-Control', 'no-store'],
          ['Content-Type', 'application/json; charset=utf-8'],
        ],
        body: Buffer.from(body),
      },
    ]);
    ({ url, close } = await serveApiRouters([router]));
  });
  afterAll(async () => close?.());

  it('when a plain GET of a fixed document arrives, then express is not reached and the bytes are those express sends', async () => {
    const headers = { 'x-fapi-interaction-id': 'mechanism-1' };
    const fast = await rawRequest(`${url}/doc`, tpp, { headers });
    expect(expressCalls).toBe(0);
    const slow = await rawRequest(`${url}/doc`, tpp, { headers: { ...headers, ...VIA_EXPRESS } });
    expect(expressCalls).toBe(1);
    expect(fast).toEqual(slow);
    expect(rawHeader(fast.headers, 'strict-transport-security')).toBeDefined();
  });
});

describe('fixed responses: discovery metadata', () => {
  let db: TestDatabase;
  let running: RunningServer;
  let url: string;
  let adminUrl: string;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) {
          lines.push(JSON.parse(l) as Record<string, unknown>);
        }
        done();
      },
    });
    const config = loadConfig(testEnv(db, { LOG_LEVEL: 'info' }));
    const logger = createLogger({ level: 'info', format: 'json', destination: sink });
    running = await startServer({ config, logger });
    url = `https://127.0.0.1:${running.apiPort}`;
    adminUrl = `http://127.0.0.1:${running.adminPort}`;
  });
  afterAll(async () => {
    await running?.stop();
    await db?.drop();
  });

  it('when the metadata is fetched with a plain GET at either path, then status, headers (order and spelling) and body equal the express route', async () => {
    for (const p of METADATA_PATHS) {
      const headers = { 'x-fapi-interaction-id': 'same-bytes-1' };
      const fast = await rawRequest(`${url}${p}`, tpp, { headers });
      const slow = await rawRequest(`${url}${p}`, tpp, { headers: { ...headers, ...VIA_EXPRESS } });
      expect(fast.status).toBe(200);
      expect(fast).toEqual(slow);
    }
  });

  it('when the JWKS is fetched with a plain GET, then its bytes equal the express route, also after a key rotation', async () => {
    const headers = { 'x-fapi-interaction-id': 'jwks-1' };
    const compare = async () => {
      const fast = await rawRequest(`${url}/jwks`, tpp, { headers });
      const slow = await rawRequest(`${url}/jwks`, tpp, {
        headers: { ...headers, ...VIA_EXPRESS },
      });
      expect(fast.status).toBe(200);
      expect(fast).toEqual(slow);
      return JSON.parse(fast.body) as { keys: { kid: string }[] };
    };
    await compare();
    const rotated = await running.services.keys.rotate();
    const after = await compare();
    expect(after.keys.map((k) => k.kid)).toContain(rotated.kid);
  });

  it('when the key set cannot be read, then the JWKS request is answered by express exactly as before', async () => {
    const headers = { 'x-fapi-interaction-id': 'jwks-failure-1' };
    const spy = vi
      .spyOn(running.services.keys, 'publicJwks')
      .mockRejectedValue(new Error('key store unreachable'));
    try {
      const fast = await rawRequest(`${url}/jwks`, tpp, { headers });
      const slow = await rawRequest(`${url}/jwks`, tpp, {
        headers: { ...headers, ...VIA_EXPRESS },
      });
      expect(fast.status).toBeGreaterThanOrEqual(500);
      expect(fast).toEqual(slow);
      // Once for the fast path, once for the express route it fell back to; once for `slow`.
      expect(spy).toHaveBeenCalledTimes(3);
    } finally {
      spy.mockRestore();
    }
  });

  it('when HEAD is sent, then express answers it as before (405 with Allow: GET)', async () => {
    const res = await rawRequest(`${url}${METADATA_PATHS[0]!}`, tpp, { method: 'HEAD' });
    expect(res.status).toBe(405);
    expect(rawHeader(res.headers, 'allow')).toBe('GET');
  });

  it('when the interaction id is usable, then it is echoed; when it is not, then a new UUID is sent', async () => {
    const p = METADATA_PATHS[1]!;
    const echoed = await rawRequest(`${url}${p}`, tpp, {
      headers: { 'x-fapi-interaction-id': 'caller-id-42' },
    });
    expect(rawHeader(echoed.headers, 'x-fapi-interaction-id')).toBe('caller-id-42');
    const replaced = await rawRequest(`${url}${p}`, tpp, {
      headers: { 'x-fapi-interaction-id': 'x'.repeat(129) },
    });
    expect(rawHeader(replaced.headers, 'x-fapi-interaction-id')).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('when the method is POST, then 405 with Allow: GET as before', async () => {
    const res = await rawRequest(`${url}${METADATA_PATHS[0]!}`, tpp, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(rawHeader(res.headers, 'allow')).toBe('GET');
  });

  it('when a query string is added, then express validates it and refuses the unknown parameter (400)', async () => {
    const res = await rawRequest(`${url}${METADATA_PATHS[0]!}?x=1`, tpp);
    expect(res.status).toBe(400);
  });

  it('when the metadata is answered before express, then it is counted in the same metrics series and logged at info', async () => {
    const p = METADATA_PATHS[0]!;
    const count = () => apiRequestCount(adminUrl, { route: p, method: 'GET', status: 200 });
    const before = await count();
    await rawRequest(`${url}${p}`, tpp, { headers: { 'x-fapi-interaction-id': 'logged-1' } });
    expect(await count()).toBe(before + 1);
    const line = lines.find((l) => l.interactionId === 'logged-1');
    expect(line).toMatchObject({ level: 30, msg: 'request', method: 'GET', path: p, status: 200 });
    expect(typeof line?.ms).toBe('number');
  });
});

describe('fixed responses: refused exactly as before', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-fixed-'));
  const crlFile = path.join(dir, 'tpp-ca.crl');
  const revoked = issueCertificate(testCa, { commonName: 'revoked-fixed', usage: 'client' });
  fs.writeFileSync(crlFile, makeCrl(testCa, [new X509Certificate(revoked.certPem).serialNumber]));
  const proxyCa = createCertificateAuthority('proxy CA (fixed responses)');
  const proxyCaFile = path.join(dir, 'proxy-ca.crt');
  fs.writeFileSync(proxyCaFile, proxyCa.certPem);
  const proxyCert = issueCertificate(proxyCa, { commonName: 'edge-proxy', usage: 'client' });
  const proxy = { ca: pki.ca, cert: proxyCert.certPem, key: proxyCert.keyPem };
  const HEADER = 'x-ssl-client-cert';
  let db: TestDatabase;
  let server: TestServer;
  const p = METADATA_PATHS[0]!;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: {
        CLIENT_CERT_HEADER: HEADER,
        TRUSTED_PROXIES: '127.0.0.1/32',
        PROXY_CA_FILE: proxyCaFile,
        CRL_FILES: crlFile,
      },
    });
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The refusal express gives for the same request (a query string always goes to express). */
  const expectRefusedAsBefore = async (
    identity: { ca: string; cert?: string; key?: string },
    headers: Record<string, string> = {},
  ) => {
    const h = { 'x-fapi-interaction-id': 'refused-1', ...headers };
    for (const path of [p, '/jwks']) {
      const res = await rawRequest(`${server.url}${path}`, identity, { headers: h });
      const viaExpress = await rawRequest(`${server.url}${path}?x=1`, identity, { headers: h });
      expect(res.status).toBe(401);
      expect(res).toEqual(viaExpress);
    }
  };

  it('when the client certificate is revoked, then discovery and the JWKS are refused (401) as before', async () => {
    await expectRefusedAsBefore({ ca: pki.ca, cert: revoked.certPem, key: revoked.keyPem });
  });

  it('when the forwarded certificate is revoked, then discovery and the JWKS are refused (401) as before', async () => {
    await expectRefusedAsBefore(proxy, { [HEADER]: encodeURIComponent(revoked.certPem) });
  });

  it('when the proxy sends no certificate header, then discovery and the JWKS are refused (401) as before', async () => {
    await expectRefusedAsBefore(proxy);
  });

  it('when a connection has no client certificate in proxy mode, then discovery and the JWKS are refused (401) as before', async () => {
    await expectRefusedAsBefore({ ca: pki.ca });
  });

  it('when the proxy forwards a good certificate, then discovery is answered', async () => {
    const res = await rawRequest(`${server.url}${p}`, proxy, {
      headers: { [HEADER]: encodeURIComponent(pki.tppCert) },
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toHaveProperty('issuer');
  });
});
