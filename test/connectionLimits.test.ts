// What one connection may hold on a listener: idle connections (a TLS connection that completed
// its handshake and sends nothing; a TCP connection that never starts the handshake) are
// closed, a request in progress may stay silent for the long-poll time, and connections are
// capped per client address and per listener. Real TLS sockets against createApiServer.
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import {
  closeGracefully,
  createApiServer,
  DEFAULT_CONNECTION_LIMITS,
  listen,
  type ConnectionLimits,
} from '../src/http/listeners.js';
import { testPki } from './helpers/server.js';

const servers: http.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => closeGracefully(s, 0)));
});

async function apiServer(limits: Partial<ConnectionLimits>, handler?: http.RequestListener) {
  const pki = testPki();
  const server = createApiServer(
    handler ?? ((_req, res) => res.end('ok')),
    {
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      clientCaFile: pki.caCert,
      allowConnectionsWithoutCertificate: true,
    },
    { ...DEFAULT_CONNECTION_LIMITS, ...limits },
  );
  servers.push(server);
  const { port } = await listen(server, '127.0.0.1', 0);
  return port;
}

/** A TLS connection that completes its handshake; resolves with the socket once it is secure. */
function tlsConnect(port: number, localAddress = '127.0.0.1'): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const tcp = net.connect({ port, host: '127.0.0.1', localAddress });
    const socket = tls.connect({
      socket: tcp,
      ca: fs.readFileSync(testPki().caCert),
      servername: 'localhost',
    });
    sockets.push(tcp, socket);
    tcp.once('error', reject);
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake completed')));
  });
}

function closed(socket: net.Socket, withinMs: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), withinMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** One GET over an established TLS socket; resolves with the status line. */
function get(socket: tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      data += c;
      if (data.includes('\r\n')) resolve(data.split('\r\n')[0]!);
    });
    socket.once('error', reject);
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
  });
}

describe('connection limits', () => {
  it('when a TLS connection completes its handshake and sends nothing, then it is closed after the idle time-out', async () => {
    const port = await apiServer({ idleTimeoutMs: 1_000 });
    const idle = await tlsConnect(port);
    expect(await closed(idle, 10_000)).toBe(true);
  });

  it('when a TCP connection never starts the TLS handshake, then it is closed after the handshake time-out', async () => {
    const port = await apiServer({ handshakeTimeoutMs: 1_000 });
    const raw = net.connect(port, '127.0.0.1');
    sockets.push(raw);
    raw.on('error', () => {});
    expect(await closed(raw, 10_000)).toBe(true);
  });

  it('when a request stays silent for longer than the idle time-out but within the long-poll time, then it is answered', async () => {
    const port = await apiServer({ idleTimeoutMs: 1_000, longPollMs: 5_000 }, (_req, res) => {
      setTimeout(() => res.end('late'), 2_500); // a long poll that waits, then answers
    });
    const socket = await tlsConnect(port);
    expect(await get(socket)).toBe('HTTP/1.1 200 OK');
  });

  it('when one address opens more connections than its cap, then the extra ones are refused while other addresses still connect', async () => {
    const port = await apiServer({ maxConnectionsPerAddress: 3 });
    const held = await Promise.all([tlsConnect(port), tlsConnect(port), tlsConnect(port)]);
    await expect(tlsConnect(port)).rejects.toThrow();
    // Another client address (Linux routes all of 127.0.0.0/8 to loopback) is not affected.
    const other = await tlsConnect(port, '127.0.0.2');
    expect(await get(other)).toBe('HTTP/1.1 200 OK');
    // The capped address gets a connection again once one of its own closes.
    held[0]!.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const again = await tlsConnect(port);
    expect(await get(again)).toBe('HTTP/1.1 200 OK');
  });

  it('when the listener holds its maximum of connections, then a further one is refused', async () => {
    const port = await apiServer({ maxConnections: 2, maxConnectionsPerAddress: 0 });
    await Promise.all([tlsConnect(port), tlsConnect(port, '127.0.0.2')]);
    await expect(tlsConnect(port, '127.0.0.3')).rejects.toThrow();
  });
});
