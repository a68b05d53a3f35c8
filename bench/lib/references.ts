// The references every benchmark measures in the same run, so that its figures read as ratios
// (machines differ; ratios travel):
// - a bare `node:https` server with ob-events' TLS settings (client certificate required, the same
//   CA, certificate, ciphers), answering fixed bytes: what a request costs before any of our code.
//   Given a real response of ours (responseOf), it answers the same status line, headers (in the
//   same order and spelling) and body, and handles x-fapi-interaction-id as ours does (echoes a
//   usable one, else makes a UUID): like for like;
// - raw PS256 signing on one core: the one signature a token or a signed response needs;
// - a pg-only drain: the lease-and-ack statement of aggregated polling, called straight from a
//   pg pool, no HTTP (see polling.bench.ts).
import { spawn } from 'node:child_process';
import { constants, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { API_TLS_OPTIONS } from '../../src/http/listeners.js';
import type { DevPkiFiles } from '../../src/crypto/devPki.js';
import type { Agent } from 'undici';
import { mtlsAgent } from './load.js';
import { freePorts, processCpuMs } from './server.js';

export interface BareServer {
  url: string;
  pid: number;
  cpuMs(): { mainThread: number; otherThreads: number };
  stop(): Promise<void>;
}

// The child reads everything from its environment: no file of its own to build or lint.
const BARE_SERVER = `
const https = require('node:https');
const fs = require('node:fs');
const { randomUUID } = require('node:crypto');
const body = Buffer.from(process.env.BARE_BODY, 'base64');
const tls = JSON.parse(process.env.BARE_TLS);
const head = process.env.BARE_HEADERS ? JSON.parse(process.env.BARE_HEADERS) : undefined;
const idAt = head ? head.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'x-fapi-interaction-id') : -1;
const USABLE = /^[\\x21-\\x7e]{1,128}$/;
const server = https.createServer(
  { ...tls, cert: fs.readFileSync(process.env.BARE_CERT), key: fs.readFileSync(process.env.BARE_KEY),
    ca: fs.readFileSync(process.env.BARE_CA), requestCert: true, rejectUnauthorized: true },
  (req, res) => {
    req.resume();
    if (head) {
      const headers = head.slice();
      if (idAt >= 0) {
        const given = req.headers['x-fapi-interaction-id'];
        headers[idAt + 1] = given !== undefined && USABLE.test(given) ? given : randomUUID();
      }
      res.writeHead(200, headers);
    } else {
      res.writeHead(200, { 'content-type': process.env.BARE_TYPE, 'content-length': body.length });
    }
    res.end(body);
  },
);
server.keepAliveTimeout = 65000;
server.listen(Number(process.env.BARE_PORT), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

/**
 * Starts the bare server in its own process (so its CPU can be read like the server's). With
 * `headers` (raw name/value pairs, as from responseOf) it sends those instead of a bare
 * content-type and content-length.
 */
export function startBareHttpsServer(
  pki: DevPkiFiles,
  body: Buffer,
  contentType: string,
  headers?: string[],
): Promise<BareServer> {
  return startChildServer(pki, BARE_SERVER, {
    BARE_BODY: body.toString('base64'),
    BARE_TYPE: contentType,
    ...(headers ? { BARE_HEADERS: JSON.stringify(headers) } : {}),
  });
}

/**
 * Runs `script` (CommonJS, `node -e`) in a child process with ob-events' TLS settings and the dev
 * PKI's server certificate in its environment (BARE_TLS, BARE_CERT, BARE_KEY, BARE_CA) and a free
 * BARE_PORT; the script prints a line once it listens.
 */
export async function startChildServer(
  pki: DevPkiFiles,
  script: string,
  env: Record<string, string>,
): Promise<BareServer> {
  const [port] = await freePorts(1);
  const child = spawn(process.execPath, ['-e', script], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...env,
      BARE_TLS: JSON.stringify(API_TLS_OPTIONS),
      BARE_CERT: pki.serverCert,
      BARE_KEY: pki.serverKey,
      BARE_CA: pki.caCert,
      BARE_PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bare server exited (${code})`)));
    child.stdout.once('data', () => resolve());
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    url: `https://127.0.0.1:${port}`,
    pid: child.pid!,
    cpuMs: () => processCpuMs(child.pid!),
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A bare server replaying our answer, and an agent to load it with (as the TPP connects). */
export interface BareReplica {
  server: BareServer;
  agent: Agent;
  stop(): Promise<void>;
}

/**
 * The like-for-like reference of a GET: records our answer at `url` (status, headers, body) and
 * starts a bare server sending exactly that, with an mTLS agent of `connections` connections.
 */
export async function bareReplicaOf(
  url: string,
  pki: DevPkiFiles,
  requestHeaders: Record<string, string>,
  connections: number,
): Promise<BareReplica> {
  const ours = await responseOf(url, pki, requestHeaders);
  const server = await startBareHttpsServer(pki, ours.body, 'application/json', ours.headers);
  const agent = mtlsAgent({ caCert: pki.caCert, cert: pki.tppCert, key: pki.tppKey }, connections);
  return {
    server,
    agent,
    stop: async () => {
      await agent.close();
      await server.stop();
    },
  };
}

export interface RecordedResponse {
  status: number;
  /** Raw header name/value pairs as sent, minus those node adds itself (Date, Connection, Keep-Alive). */
  headers: string[];
  body: Buffer;
}

// Node's http server writes these on every response: the bare server adds its own.
const ADDED_BY_NODE = new Set(['date', 'connection', 'keep-alive']);

/**
 * One GET over mTLS with the demo TPP's certificate (and `headers`, e.g. an Authorization), as
 * received (header spelling and order kept).
 */
export function responseOf(
  url: string,
  pki: DevPkiFiles,
  headers: Record<string, string> = {},
): Promise<RecordedResponse> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      {
        ca: fs.readFileSync(pki.caCert),
        cert: fs.readFileSync(pki.tppCert),
        key: fs.readFileSync(pki.tppKey),
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const kept: string[] = [];
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            if (!ADDED_BY_NODE.has(res.rawHeaders[i]!.toLowerCase())) {
              kept.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: kept, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

/**
 * PS256 signatures per second on one core: synchronous signing on this thread, of a payload the
 * size of an access token, with a 2048-bit key as ob-events uses.
 */
export function rawPs256PerSecond(durationMs: number): number {
  return rawPs256Meter()(durationMs);
}

/** rawPs256PerSecond with the key made once: for short slices measured between rounds. */
export function rawPs256Meter(): (durationMs: number) => number {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const payload = Buffer.from(
    `eyJhbGciOiJQUzI1NiIsImtpZCI6ImsxIn0.${Buffer.from(
      JSON.stringify({ iss: 'https://bank.example', sub: 'tpp', jti: randomUUID(), scope: 'x' }),
    ).toString('base64url')}`,
  );
  const once = () =>
    sign('sha256', payload, {
      key: privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    });
  for (let i = 0; i < 50; i++) once(); // warm-up
  return (durationMs) => {
    const started = performance.now();
    let n = 0;
    while (performance.now() - started < durationMs) {
      once();
      n += 1;
    }
    return (n / (performance.now() - started)) * 1000;
  };
}
