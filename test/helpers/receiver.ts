// A TPP's event-notification endpoint for push tests: a real local HTTPS server with the test
// PKI's server certificate (localhost / 127.0.0.1), recording every request and answering from
// a script: a status per request, a delay, a hang (never answers), Retry-After.
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { testPki } from './server.js';

export const NOTIFICATIONS_PATH = '/open-banking/v3.1/event-notifications';

export interface ReceivedPush {
  /** The SET's jti (from its payload), or null when the body is not a JWS. */
  jti: string | null;
  body: string;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** performance.now() when the request arrived. */
  at: number;
  /** What the script answered (null: hung). */
  status: number | null;
}

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** Answer after this long. */
  delayMs?: number;
  /** Never answer (the sender must time out). */
  hang?: boolean;
}

/** Decides each answer; `nth` counts requests for the same jti from 1. */
export type Script = (req: { jti: string | null; nth: number; index: number }) => Reply;

export interface Receiver {
  port: number;
  /** The CallbackUrl to register: https://localhost:<port>/open-banking/v3.1/event-notifications */
  callbackUrl: string;
  requests: ReceivedPush[];
  /** jti → how many times it was answered 202. */
  accepted: Map<string, number>;
  setScript(script: Script): void;
  /** Resolves when `predicate` holds (checked on every request and every 20 ms). */
  waitFor(predicate: (r: Receiver) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Requests for one jti. */
  forJti(jti: string): ReceivedPush[];
  close(): Promise<void>;
}

export const always202: Script = () => ({ status: 202 });

export function jtiOf(compactJws: string): string | null {
  const payload = compactJws.split('.')[1];
  if (!payload) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {
      jti?: unknown;
    };
    return typeof claims.jti === 'string' ? claims.jti : null;
  } catch {
    return null;
  }
}

export async function startReceiver(
  script: Script = always202,
  opts: { host?: string; cert?: string; key?: string } = {},
): Promise<Receiver> {
  const pki = opts.cert && opts.key ? undefined : testPki();
  let current = script;
  const requests: ReceivedPush[] = [];
  const accepted = new Map<string, number>();
  const perJti = new Map<string, number>();
  const waiters = new Set<() => void>();
  const server = https.createServer(
    {
      cert: opts.cert ?? fs.readFileSync(pki!.serverCert),
      key: opts.key ?? fs.readFileSync(pki!.serverKey),
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const jti = jtiOf(body);
        const nth = jti ? (perJti.get(jti) ?? 0) + 1 : 1;
        if (jti) perJti.set(jti, nth);
        const reply = current({ jti, nth, index: requests.length });
        const record: ReceivedPush = {
          jti,
          body,
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          at: performance.now(),
          status: reply.hang ? null : (reply.status ?? 202),
        };
        requests.push(record);
        const answer = () => {
          if (record.status === 202 && jti) accepted.set(jti, (accepted.get(jti) ?? 0) + 1);
          res.writeHead(record.status!, { ...reply.headers });
          res.end(reply.body ?? '');
          notify();
        };
        notify();
        if (reply.hang) return;
        if (reply.delayMs) setTimeout(answer, reply.delayMs);
        else answer();
      });
    },
  );
  server.keepAliveTimeout = 60_000;
  const notify = () => {
    for (const w of waiters) w();
  };
  await new Promise<void>((resolve) => server.listen(0, opts.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const receiver: Receiver = {
    port,
    callbackUrl: `https://localhost:${port}${NOTIFICATIONS_PATH}`,
    requests,
    accepted,
    setScript: (s) => {
      current = s;
    },
    forJti: (jti) => requests.filter((r) => r.jti === jti),
    waitFor: (predicate, timeoutMs = 10_000, what = 'condition') =>
      new Promise<void>((resolve, reject) => {
        if (predicate(receiver)) {
          resolve();
          return;
        }
        const check = () => {
          if (!predicate(receiver)) return;
          cleanup();
          resolve();
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `receiver: timed out waiting for ${what} (${requests.length} requests so far)`,
            ),
          );
        }, timeoutMs);
        const poll = setInterval(check, 20);
        const cleanup = () => {
          clearTimeout(timer);
          clearInterval(poll);
          waiters.delete(check);
        };
        waiters.add(check);
      }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return receiver;
}
