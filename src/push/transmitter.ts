// One HTTP POST of a SET to a TPP's CallbackUrl (OBIE Real-time Event Notification, §6 of the
// reference): the URL exactly as registered, the stored compact JWS as the body,
// `Content-Type: application/jwt`, `x-fapi-financial-id` and a fresh `x-fapi-interaction-id`.
//
// One keep-alive undici Pool per callback origin (a slow TPP's connections are its own), TLS
// verified against PUSH_CA_FILE or Node's CAs, an optional client certificate, the address
// checked at connect time (safeConnector.ts), no redirects followed (undici's Pool does not
// follow them; a 3xx is just an answer that is not 202), one deadline for the whole exchange,
// and at most MAX_BODY_BYTES of the answer read.
import type dns from 'node:dns';
import { Pool, errors as undiciErrors } from 'undici';
import { AddressRefusedError } from '../net/addressPolicy.js';
import { safeConnector } from './safeConnector.js';

export const MAX_BODY_BYTES = 4096;

export interface TransmitterOptions {
  financialId: string;
  timeoutMs: number;
  /** Connections (and so requests in flight) per origin. */
  connectionsPerOrigin: number;
  allowPrivate: boolean;
  ca?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  lookup?: typeof dns.lookup | undefined;
}

export type PostResult =
  | {
      kind: 'response';
      status: number;
      /** Lower-cased header names; the first value of repeated ones. */
      headers: Record<string, string>;
      /** At most MAX_BODY_BYTES of the body, as UTF-8. */
      body: string;
      truncated: boolean;
      latencyMs: number;
    }
  | {
      kind: 'error';
      /** timeout | address_refused | tls | connection */
      code: 'timeout' | 'address_refused' | 'tls' | 'connection';
      message: string;
      latencyMs: number;
    };

interface PoolEntry {
  pool: Pool;
  lastUsed: number;
  inFlight: number;
}

export class Transmitter {
  private readonly pools = new Map<string, PoolEntry>();
  private readonly connector;
  private closed = false;

  constructor(private readonly opts: TransmitterOptions) {
    this.connector = safeConnector({
      allowPrivate: opts.allowPrivate,
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      timeoutMs: opts.timeoutMs,
      lookup: opts.lookup,
    });
  }

  async post(url: URL, body: string, interactionId: string): Promise<PostResult> {
    const started = performance.now();
    const entry = this.poolFor(url.origin);
    entry.inFlight += 1;
    entry.lastUsed = Date.now();
    // One deadline for connect, request, answer and body (a cleared timer, unlike
    // AbortSignal.timeout, is released at once: memory stays flat at thousands of pushes/s).
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new DeadlineError()), this.opts.timeoutMs);
    try {
      const res = await entry.pool.request({
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        headers: {
          'content-type': 'application/jwt',
          accept: 'application/json',
          'x-fapi-financial-id': this.opts.financialId,
          'x-fapi-interaction-id': interactionId,
        },
        body,
        signal: deadline.signal,
      });
      const { text, truncated } = await readBounded(res.body);
      return {
        kind: 'response',
        status: res.statusCode,
        headers: flatten(res.headers),
        body: text,
        truncated,
        latencyMs: performance.now() - started,
      };
    } catch (err) {
      return {
        kind: 'error',
        ...describeError(err, this.opts.timeoutMs),
        latencyMs: performance.now() - started,
      };
    } finally {
      clearTimeout(timer);
      entry.inFlight -= 1;
      entry.lastUsed = Date.now();
    }
  }

  /** Closes the pools of origins not used for `idleMs` (keeps memory flat with many TPPs). */
  async closeIdle(idleMs: number): Promise<void> {
    const now = Date.now();
    const idle = [...this.pools].filter(([, e]) => e.inFlight === 0 && now - e.lastUsed > idleMs);
    for (const [origin] of idle) this.pools.delete(origin);
    await Promise.all(idle.map(([, e]) => e.pool.close().catch(() => {})));
  }

  get origins(): number {
    return this.pools.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((e) => e.pool.destroy().catch(() => {})));
  }

  private poolFor(origin: string): PoolEntry {
    if (this.closed) throw new Error('transmitter closed');
    let entry = this.pools.get(origin);
    if (!entry) {
      entry = {
        pool: new Pool(origin, {
          connections: this.opts.connectionsPerOrigin,
          pipelining: 1,
          connect: this.connector,
          headersTimeout: this.opts.timeoutMs,
          bodyTimeout: this.opts.timeoutMs,
          keepAliveTimeout: 30_000,
          keepAliveMaxTimeout: 120_000,
          maxHeaderSize: 16_384,
        }),
        lastUsed: Date.now(),
        inFlight: 0,
      };
      this.pools.set(origin, entry);
    }
    return entry;
  }
}

class DeadlineError extends Error {
  override name = 'TimeoutError';
}

/** Reads at most MAX_BODY_BYTES; a longer body is cut (and its connection dropped). */
async function readBounded(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<{
  text: string;
  truncated: boolean;
}> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of body) {
    const room = MAX_BODY_BYTES - size;
    if (chunk.length > room) {
      chunks.push(chunk.subarray(0, room));
      size += room;
      truncated = true;
      break; // ends the iteration, which destroys the body
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return { text: Buffer.concat(chunks, size).toString('utf8'), truncated };
}

function flatten(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    const value = Array.isArray(v) ? v[0] : v;
    if (value !== undefined) out[k.toLowerCase()] = value;
  }
  return out;
}

const TLS_CODES =
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH|ERR_OSSL)/;

function describeError(
  err: unknown,
  timeoutMs: number,
): { code: 'timeout' | 'address_refused' | 'tls' | 'connection'; message: string } {
  const e = err as { name?: string; code?: string; message?: string; cause?: unknown };
  const cause = (e.cause ?? undefined) as { code?: string; message?: string } | undefined;
  if (err instanceof AddressRefusedError || cause instanceof AddressRefusedError) {
    const refused = (err instanceof AddressRefusedError ? err : cause) as AddressRefusedError;
    return { code: 'address_refused', message: `address refused: ${refused.message}` };
  }
  if (
    e.name === 'TimeoutError' ||
    e.name === 'AbortError' ||
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    err instanceof undiciErrors.ConnectTimeoutError
  ) {
    return { code: 'timeout', message: `no answer within ${timeoutMs} ms` };
  }
  const code = e.code ?? cause?.code;
  const message = (e.message ?? String(err)).slice(0, 500);
  if (code && TLS_CODES.test(code)) return { code: 'tls', message: `TLS: ${code}: ${message}` };
  return { code: 'connection', message: code ? `${code}: ${message}` : message };
}
