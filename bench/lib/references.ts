// The references every benchmark measures in the same run, so that its figures read as ratios
// (machines differ; ratios travel):
// - a bare `node:https` server with ob-events' TLS settings (client certificate required, the same
//   CA, certificate, ciphers), answering fixed bytes: what a request costs before any of our code;
// - raw PS256 signing on one core: the one signature a token or a signed response needs;
// - a pg-only drain: the lease-and-ack statement of aggregated polling, called straight from a
//   pg pool, no HTTP (see polling.bench.ts).
import { spawn } from 'node:child_process';
import { constants, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { API_TLS_OPTIONS } from '../../src/http/listeners.js';
import type { DevPkiFiles } from '../../src/crypto/devPki.js';
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
const body = Buffer.from(process.env.BARE_BODY, 'base64');
const tls = JSON.parse(process.env.BARE_TLS);
const server = https.createServer(
  { ...tls, cert: fs.readFileSync(process.env.BARE_CERT), key: fs.readFileSync(process.env.BARE_KEY),
    ca: fs.readFileSync(process.env.BARE_CA), requestCert: true, rejectUnauthorized: true },
  (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': process.env.BARE_TYPE, 'content-length': body.length });
    res.end(body);
  },
);
server.keepAliveTimeout = 65000;
server.listen(Number(process.env.BARE_PORT), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

/** Starts the bare server in its own process (so its CPU can be read like the server's). */
export async function startBareHttpsServer(
  pki: DevPkiFiles,
  body: Buffer,
  contentType: string,
): Promise<BareServer> {
  const [port] = await freePorts(1);
  const child = spawn(process.execPath, ['-e', BARE_SERVER], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      BARE_BODY: body.toString('base64'),
      BARE_TYPE: contentType,
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

/**
 * PS256 signatures per second on one core: synchronous signing on this thread, of a payload the
 * size of an access token, with a 2048-bit key as ob-events uses.
 */
export function rawPs256PerSecond(durationMs: number): number {
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
  const started = performance.now();
  let n = 0;
  while (performance.now() - started < durationMs) {
    once();
    n += 1;
  }
  return (n / (performance.now() - started)) * 1000;
}
