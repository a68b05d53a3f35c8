// The two listeners: the API (HTTPS, client certificate required and verified during the
// handshake) and the admin listener (loopback by default; HTTPS when ADMIN_TLS_* is set).
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';

// TLS 1.3 suites plus the TLS 1.2 AEAD suites recommended by BCP 195 / FAPI.
const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
].join(':');

/** The API listener's TLS settings beyond its files (the benchmarks' bare reference uses them too). */
export const API_TLS_OPTIONS = {
  minVersion: 'TLSv1.2',
  ciphers: CIPHERS,
  honorCipherOrder: true,
} as const;

export interface ApiTlsFiles {
  certFile: string;
  keyFile: string;
  clientCaFile: string;
  /** Proxy mode: the handshake accepts connections without a client certificate (see clientCertificate.ts). */
  allowConnectionsWithoutCertificate: boolean;
  /** Proxy mode: PROXY_CA_FILE, trusted in the handshake beside the client CAs (for the proxy's certificate). */
  proxyCaFile?: string | undefined;
}

export function createApiServer(app: RequestListener, tls: ApiTlsFiles): https.Server {
  const server = https.createServer(
    {
      cert: fs.readFileSync(tls.certFile),
      key: fs.readFileSync(tls.keyFile),
      ca: [
        fs.readFileSync(tls.clientCaFile),
        ...(tls.proxyCaFile ? [fs.readFileSync(tls.proxyCaFile)] : []),
      ],
      requestCert: true,
      rejectUnauthorized: !tls.allowConnectionsWithoutCertificate,
      ...API_TLS_OPTIONS,
    },
    app,
  );
  tuneTimeouts(server);
  return server;
}

/** Plain HTTP, or HTTPS (server authentication only) when ADMIN_TLS_* files are given. */
export function createAdminServer(
  app: RequestListener,
  tls?: { certFile: string; keyFile: string },
): http.Server {
  const server = tls
    ? https.createServer(
        {
          cert: fs.readFileSync(tls.certFile),
          key: fs.readFileSync(tls.keyFile),
          minVersion: 'TLSv1.2',
          ciphers: CIPHERS,
          honorCipherOrder: true,
        },
        app,
      )
    : http.createServer(app);
  tuneTimeouts(server);
  return server;
}

function tuneTimeouts(server: http.Server): void {
  // Longer than typical load balancer idle timeouts, so the balancer closes first.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
}

export function listen(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Stops accepting, lets requests in flight finish, and after `timeoutMs` cuts what is left.
 * Idle keep-alive connections are closed at once, and so is each connection whose last response
 * finishes while draining: `server.close()` alone would wait for those until the keep-alive
 * timeout (65 s), so one keep-alive client would hold every shutdown to the full timeout.
 */
export function closeGracefully(server: http.Server, timeoutMs: number): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    // A request that arrives on an open keep-alive connection while draining is still served,
    // but told the connection closes after it.
    const closeAfterResponse = (_req: http.IncomingMessage, res: http.ServerResponse) => {
      if (!res.headersSent) res.setHeader('connection', 'close');
    };
    server.prependListener('request', closeAfterResponse);
    const sweep = setInterval(() => server.closeIdleConnections(), 25);
    sweep.unref();
    const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      clearInterval(sweep);
      server.off('request', closeAfterResponse);
      resolve();
    });
    server.closeIdleConnections();
  });
}
