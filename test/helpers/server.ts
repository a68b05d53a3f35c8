// Starts ob-events in this process on port 0 with the test PKI and a test database.
import fs from 'node:fs';
import path from 'node:path';
import type { JWK } from 'jose';
import { inject } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { loadConfig, type Config } from '../../src/config.js';
import { devPkiFiles } from '../../src/crypto/devPki.js';
import type { AddressInfo } from 'node:net';
import type { Router } from 'express';
import { createApiApp } from '../../src/http/apiApp.js';
import { closeGracefully, createApiServer, listen } from '../../src/http/listeners.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/main.js';
import type { TestDatabase } from './db.js';

export const TEST_PUBLIC_URL = 'https://ob-events.test';

export interface TestServer {
  /** https://127.0.0.1:<port> */
  url: string;
  adminUrl: string;
  config: Config;
  server: RunningServer;
  stop(): Promise<void>;
}

export function testPki() {
  return devPkiFiles(inject('pkiDir'));
}

/** Environment for loadConfig pointing at the test PKI and database. */
export function testEnv(
  db: TestDatabase,
  env: Record<string, string> = {},
): Record<string, string> {
  const pki = testPki();
  return {
    HOST: '127.0.0.1',
    PORT: '0',
    ADMIN_PORT: '0',
    PUBLIC_URL: TEST_PUBLIC_URL,
    TLS_CERT_FILE: pki.serverCert,
    TLS_KEY_FILE: pki.serverKey,
    TLS_CLIENT_CA_FILE: pki.caCert,
    CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    LOG_FORMAT: 'json',
    SIGNING_WORKERS: '1',
    // Every API response is checked against openapi/openapi.yaml: a mismatch answers 500.
    VALIDATE_RESPONSES: 'true',
    // Tests mint many tokens over one certificate; the limits have their own tests (rateLimits).
    RATE_LIMIT_TOKENS_PER_MINUTE: '100000',
    RATE_LIMIT_API_PER_SECOND: '100000',
    ...db.env,
    ...env,
  };
}

export async function startTestServer(
  db: TestDatabase,
  opts: { env?: Record<string, string>; clock?: Clock } = {},
): Promise<TestServer> {
  const config = loadConfig(testEnv(db, opts.env));
  const logger =
    config.log.level === 'silent'
      ? silentLogger()
      : createLogger({ level: config.log.level, format: 'json' });
  const server = await startServer({
    config,
    logger,
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  return {
    url: `https://127.0.0.1:${server.apiPort}`,
    adminUrl: `${config.http.adminTls ? 'https' : 'http'}://127.0.0.1:${server.adminPort}`,
    config,
    server,
    stop: () => server.stop(),
  };
}

/** The API app over these routers alone, on mTLS with the test PKI: its URL and how to close it. */
export async function serveApiRouters(
  routers: Router[],
  logger = silentLogger(),
): Promise<{ url: string; close: () => Promise<void> }> {
  const p = testPki();
  const server = createApiServer(createApiApp({ logger, routers }), {
    certFile: p.serverCert,
    keyFile: p.serverKey,
    clientCaFile: p.caCert,
    allowConnectionsWithoutCertificate: false,
  });
  const address: AddressInfo = await listen(server, '127.0.0.1', 0);
  return {
    url: `https://127.0.0.1:${address.port}`,
    close: () => closeGracefully(server, 1_000),
  };
}

/** The count of ob_events_http_requests_total on the API listener for one route, method and status. */
export async function apiRequestCount(
  adminUrl: string,
  series: { route: string; method: string; status: number },
): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('ob_events_http_requests_total{') &&
        l.includes('listener="api"') &&
        l.includes(`route="${series.route}"`) &&
        l.includes(`method="${series.method}"`) &&
        l.includes(`status="${series.status}"`),
    );
  return line ? Number(line.split(' ').pop()) : 0;
}

export function readPki() {
  const pki = testPki();
  const read = (p: string) => fs.readFileSync(p, 'utf8');
  return {
    ca: read(pki.caCert),
    tppCert: read(pki.tppCert),
    tppKey: read(pki.tppKey),
    tppJwksPath: pki.tppJwks,
    tppPrivateJwk: JSON.parse(read(pki.tppPrivateJwk)) as JWK,
    dir: path.dirname(pki.caCert),
  };
}
