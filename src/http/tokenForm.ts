// POST /token's form body, read without body-parser in the case every TPP sends: a UTF-8 form of
// known length (Content-Length within the limit, no Content-Encoding) whose parameter names are
// plain words, each value percent-encoded. body-parser's generic path (content negotiation, an
// iconv decoder, raw-body's stream bookkeeping, qs) was a tenth of a token request's event-loop
// time; this is a few string operations.
//
// It gives exactly what `express.urlencoded({ extended: false })` gives (qs with depth 0: `+` is a
// space, an undecodable escape stays as written, a repeated name becomes an array, empty names
// and `__proto__` are dropped). Anything else (another charset, a compressed or chunked body, a
// name with brackets or escapes, more parameters than allowed) is handed to body-parser itself,
// with the bytes already read, so those requests keep its exact answers (415, 413, ...).
//
// A body may also have been read ahead of express (directToken.ts): then its bytes, or the error
// reading them gave, are what this reader goes on with.
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { Request, RequestHandler } from 'express';

export interface TokenFormOptions {
  limitBytes: number;
  maxFields: number;
  /** body-parser's urlencoded parser with the same limits: what every other body goes to. */
  fallback: RequestHandler;
}

type Form = Record<string, string | string[]>;

// A parameter name read as is: no escapes, no brackets (qs would reinterpret those).
const PLAIN_NAME = /^[A-Za-z0-9_-]+$/;
const UTF8_FORM = /^application\/x-www-form-urlencoded\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

export function tokenFormReader(opts: TokenFormOptions): RequestHandler {
  return (req, res, next) => {
    const read = (err?: Error, bytes?: Buffer) => {
      if (err) {
        next(err);
        return;
      }
      const form = parsePlainForm(bytes!, opts.maxFields);
      if (form) {
        req.body = form;
        next();
      } else {
        replay(opts.fallback, req, bytes!, res, next);
      }
    };
    const ahead = (req as ReadAhead)[READ_AHEAD];
    if (ahead) {
      read(ahead.error, ahead.bytes);
      return;
    }
    const length = plainBodyLength(req, opts.limitBytes);
    if (length === undefined) {
      opts.fallback(req, res, next);
      return;
    }
    readBody(req, length, read);
  };
}

const READ_AHEAD = Symbol('tokenFormReadAhead');
type ReadAhead = IncomingMessage & { [READ_AHEAD]?: { error?: Error; bytes?: Buffer } };

/**
 * Hands a body read ahead of express (by plainBodyLength's rules, with readBody) to this reader:
 * it goes on with these bytes, or this error, as if it had read them itself.
 */
export function setReadAhead(req: IncomingMessage, error?: Error, bytes?: Buffer): void {
  (req as ReadAhead)[READ_AHEAD] = error ? { error } : { bytes: bytes! };
}

/** Content-Length when the body may be read here; undefined sends it to body-parser. */
export function plainBodyLength(req: IncomingMessage, limit: number): number | undefined {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined || req.readableEnded) return undefined;
  const encoding = h['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return undefined;
  if (!UTF8_FORM.test(h['content-type'] ?? '')) return undefined;
  const declared = h['content-length'];
  if (declared === undefined || !/^\d+$/.test(declared)) return undefined;
  const length = Number(declared);
  return length <= limit ? length : undefined;
}

/** An error with the status body-parser would give (the token route maps it to OAuth). */
function bodyError(status: number, message: string): Error {
  return Object.assign(new Error(message), { status, statusCode: status, expose: true });
}

export function readBody(
  req: IncomingMessage,
  length: number,
  done: (err?: Error, bytes?: Buffer) => void,
): void {
  const chunks: Buffer[] = [];
  let received = 0;
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    chunks.push(chunk);
  };
  const onEnd = () => {
    cleanup();
    if (received !== length) done(bodyError(400, 'request size did not match content length'));
    else done(undefined, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received));
  };
  const onAborted = (err?: Error) => {
    cleanup();
    done(err ?? bodyError(400, 'request aborted'));
  };
  const onClose = () => {
    if (!req.complete) onAborted(bodyError(400, 'request aborted'));
  };
  const cleanup = () => {
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onAborted);
    req.off('close', onClose);
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onAborted);
  req.on('close', onClose);
}

/**
 * qs (depth 0, utf-8) for a body whose names are all plain words; undefined for anything else.
 * body-parser counts `&`-separated parts before parsing and refuses more than the limit: such a
 * body is left to it.
 */
export function parsePlainForm(bytes: Buffer, maxFields: number): Form | undefined {
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // iconv-lite drops a BOM
  const form: Form = {};
  if (text.length === 0) return form;
  const parts = text.split('&');
  if (parts.length > maxFields) return undefined;
  for (const part of parts) {
    if (part === '') continue;
    // qs splits at `]=` when there is one: a part holding a bracket is not plain.
    if (part.includes(']') || part.includes('[')) return undefined;
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    if (!PLAIN_NAME.test(name) || name === '__proto__') return undefined;
    const value = eq === -1 ? '' : decodeValue(part.slice(eq + 1));
    // Own members only: `constructor` or `toString` is a parameter like any other.
    const existing = Object.hasOwn(form, name) ? form[name] : undefined;
    if (existing === undefined) form[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else form[name] = [existing, value];
  }
  return form;
}

function decodeValue(encoded: string): string {
  // %5B and %5D are turned into brackets by qs before anything else: same result once decoded.
  const spaced = encoded.includes('+') ? encoded.replace(/\+/g, ' ') : encoded;
  if (!spaced.includes('%')) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced; // qs keeps an escape it cannot decode as written
  }
}

/**
 * body-parser, on the bytes already read: a stream of them that carries the request's headers
 * (what body-parser and raw-body look at), and whatever body it parses copied to the request.
 */
function replay(
  parser: RequestHandler,
  req: Request,
  bytes: Buffer,
  res: Parameters<RequestHandler>[1],
  next: (err?: unknown) => void,
): void {
  const copy = Object.assign(
    Readable.from(bytes.length > 0 ? [bytes] : [], { objectMode: false }),
    {
      headers: req.headers,
      // on-finished (body-parser's "already read?") looks at these: not finished yet.
      complete: false,
      socket: { readable: true },
    },
  );
  parser(copy as unknown as Request, res, (err?: unknown) => {
    if (err === undefined) req.body = (copy as unknown as Request).body as unknown;
    next(err);
  });
}
