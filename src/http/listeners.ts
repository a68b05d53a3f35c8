// The two listeners: the API (HTTPS, client certificate required and verified during the
// handshake) and the admin listener (loopback by default; HTTPS when ADMIN_TLS_* is set).
//
// Both bound what one connection may hold (ConnectionLimits): a TLS handshake, the request
// headers and the whole request each have a deadline; a connection with nothing in flight is
// closed after the idle time-out (between keep-alive requests: the keep-alive time-out), while a
// request in progress (a long poll waits silently up to LONG_POLL_SECONDS) gets that long plus the
// idle time-out; and each listener caps its connections, in all and per client address, so that
// idle or abusive clients cannot exhaust the process's file descriptors.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { RequestListener } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { RequestClasses, ServedApp } from './requestClasses.js';

export interface ConnectionLimits {
  /** Until the request headers are complete (HTTP_HEADERS_TIMEOUT_MS). */
  headersTimeoutMs: number;
  /** Until the whole request (body included) is received (HTTP_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
  /** An open connection between two requests (HTTP_KEEP_ALIVE_TIMEOUT_MS). */
  keepAliveTimeoutMs: number;
  /** A connection with no bytes and no request in flight (HTTP_IDLE_TIMEOUT_MS). */
  idleTimeoutMs: number;
  /** The TLS handshake, API listener only (TLS_HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs: number;
  /** Longest silent wait of a request in progress: the long poll (LONG_POLL_SECONDS). */
  longPollMs: number;
  /** Open connections per listener (HTTP_MAX_CONNECTIONS); 0: no cap. */
  maxConnections: number;
  /** Open connections per client IP address (HTTP_MAX_CONNECTIONS_PER_ADDRESS); 0: no cap. */
  maxConnectionsPerAddress: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 60_000,
  // Longer than typical load balancer idle timeouts, so the balancer closes first.
  keepAliveTimeoutMs: 65_000,
  idleTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  longPollMs: 20_000,
  maxConnections: 4_096,
  maxConnectionsPerAddress: 256,
};

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

export function createApiServer(
  app: RequestListener | ServedApp,
  tls: ApiTlsFiles,
  limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
): https.Server {
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
      handshakeTimeout: limits.handshakeTimeoutMs,
      ...classesOf(app),
    },
    listenerOf(app),
  );
  // TLS 1.2 renegotiation could put another client certificate on a connection whose first one
  // the request checks (clientCertificate.ts) have already read and cached: refuse it.
  server.on('secureConnection', (socket: TLSSocket) => socket.disableRenegotiation());
  applyLimits(server, limits);
  return server;
}

/** Plain HTTP, or HTTPS (server authentication only) when ADMIN_TLS_* files are given. */
export function createAdminServer(
  app: RequestListener | ServedApp,
  tls?: { certFile: string; keyFile: string },
  limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
): http.Server {
  const server = tls
    ? https.createServer(
        {
          cert: fs.readFileSync(tls.certFile),
          key: fs.readFileSync(tls.keyFile),
          minVersion: 'TLSv1.2',
          ciphers: CIPHERS,
          honorCipherOrder: true,
          ...classesOf(app),
        },
        listenerOf(app),
      )
    : http.createServer(classesOf(app), listenerOf(app));
  applyLimits(server, limits);
  return server;
}

// A plain listener (tests) gets node's own classes.
function listenerOf(app: RequestListener | ServedApp): RequestListener {
  return typeof app === 'function' ? app : app.listener;
}

function classesOf(app: RequestListener | ServedApp): Partial<RequestClasses> {
  return typeof app === 'function' ? {} : app.classes;
}

function applyLimits(server: http.Server, limits: ConnectionLimits): void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;
  capPerAddress(server, limits.maxConnectionsPerAddress);
  closeIdle(server, limits);
}

/**
 * Node sets `server.timeout` on each connection as an inactivity timer (restarted by every byte
 * and by each request) and, with a 'timeout' listener, leaves the decision to us: a connection
 * with a request in progress may stay silent up to the long-poll time plus the idle time-out;
 * any other is closed. (Node alone never closes a connection that sends nothing after the
 * handshake: headersTimeout only counts once a request has begun.)
 */
function closeIdle(server: http.Server, limits: ConnectionLimits): void {
  // Each connection's latest request: read only when the connection times out (no per-request
  // listener; a finished response means nothing is in flight).
  const latest = new WeakMap<Socket, { res: http.ServerResponse; since: number }>();
  server.timeout = limits.idleTimeoutMs;
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    latest.set(req.socket, { res, since: Date.now() });
  });
  server.on('timeout', (socket: Socket) => {
    const request = latest.get(socket);
    const budget = limits.longPollMs + limits.idleTimeoutMs;
    if (request && !request.res.writableFinished && Date.now() - request.since < budget) {
      socket.setTimeout(limits.idleTimeoutMs); // check again later
      return;
    }
    socket.destroy();
  });
}

/**
 * Counts open connections per remote address (on the TCP socket, before any TLS work) and
 * destroys those over the cap at once.
 */
function capPerAddress(server: http.Server, max: number): void {
  if (max <= 0) return;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const n = (open.get(address) ?? 0) + 1;
    if (n > max) {
      socket.destroy();
      return;
    }
    open.set(address, n);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
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
