// The TPP's `/event-notifications` endpoint (OBIE real-time push; RFC 8935 for the answers):
// a node `(req, res)` handler for http(s).createServer, or a route in express.
//
//   POST, Content-Type application/jwt (OBIE) or application/secevent+jwt (RFC 8935), body = one
//   compact JWS of at most `maxBodyBytes`
//   → SET verified → `onEvent(event)` resolves   → 202, empty body
//   → not acceptable (type, size, SET)           → 400 {"err": <RFC 8935 code>, "description": ...}
//   → `onEvent` throws                           → 500, empty body: the server retries later
//   → another method                             → 405
//
// Nothing is deduplicated here: the server delivers at least once, and a redelivered SET has
// the same jti and bytes as before. Deduplicate on `event.jti` in `onEvent`.
// With express, mount it before any body parser for these types (or let express.text / express.raw
// read the body first: a string or Buffer in req.body is used as it is).
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  SetVerificationError,
  type SetErrorCode,
  type SetVerifier,
  type VerifiedSet,
} from './setVerifier.js';

export type PushEventHandler = (event: VerifiedSet, req: IncomingMessage) => void | Promise<void>;

export interface PushHandlerOptions {
  /** Largest accepted body; default 64 KiB (an ob-events SET is about 1 KiB). */
  maxBodyBytes?: number;
  /** Told about each refused push (the 400 answer's err and description). */
  onRejected?: (
    rejection: { err: SetErrorCode; description: string },
    req: IncomingMessage,
  ) => void;
  /** Told when `onEvent` throws or the SET cannot be checked now (answered 500); default: console.error. */
  onError?: (err: unknown, req: IncomingMessage) => void;
}

const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
const MEDIA_TYPES = new Set(['application/jwt', 'application/secevent+jwt']);

class Refused extends Error {
  constructor(
    readonly err: SetErrorCode,
    readonly description: string,
  ) {
    super(description);
  }
}

export function createPushHandler(
  verifier: SetVerifier | (() => Promise<SetVerifier>),
  onEvent: PushEventHandler,
  opts: PushHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const maxBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const getVerifier = typeof verifier === 'function' ? verifier : () => Promise.resolve(verifier);
  const onError =
    opts.onError ??
    ((err: unknown) => console.error('ob-events/tpp pushHandler: answered 500:', err));

  return async (req, res) => {
    const interactionId = req.headers['x-fapi-interaction-id'];
    if (typeof interactionId === 'string') res.setHeader('x-fapi-interaction-id', interactionId);
    if (req.method !== 'POST') {
      req.resume();
      res.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    let event: VerifiedSet;
    try {
      checkMediaType(req.headers['content-type']);
      const jws = (await readBody(req, maxBytes)).trim();
      event = await (await getVerifier()).verify(jws);
    } catch (err) {
      if (err instanceof Refused || err instanceof SetVerificationError) {
        const rejection = { err: err.err, description: err.description };
        opts.onRejected?.(rejection, req);
        refuse(req, res, rejection);
        return;
      }
      // The JWKS could not be fetched, or similar: not the SET's fault, so let the server retry.
      onError(err, req);
      res.writeHead(500).end();
      return;
    }
    try {
      await onEvent(event, req);
    } catch (err) {
      onError(err, req);
      res.writeHead(500).end();
      return;
    }
    res.writeHead(202).end();
  };
}

function checkMediaType(header: string | undefined): void {
  const type = header?.split(';')[0]?.trim().toLowerCase();
  if (type === undefined || !MEDIA_TYPES.has(type)) {
    throw new Refused(
      'invalid_request',
      `Content-Type must be application/jwt or application/secevent+jwt, not ${header ?? 'absent'}`,
    );
  }
}

async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  // Already read by a body parser (express.text / express.raw)?
  const parsed = (req as { body?: unknown }).body;
  if (typeof parsed === 'string' || Buffer.isBuffer(parsed)) {
    if (Buffer.byteLength(parsed) > maxBytes) throw tooLarge(maxBytes);
    return parsed.toString();
  }
  if (req.readableEnded)
    throw new Refused('invalid_request', 'the request body was already consumed');
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxBytes);
  // Events rather than `for await`: leaving an async iteration destroys the request, and with
  // it the socket the 400 answer must go out on.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      cleanup();
      req.resume(); // discard the rest
      reject(tooLarge(maxBytes));
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      req.off('data', onData).off('end', onEnd).off('error', onError);
    };
    req.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

function tooLarge(maxBytes: number): Refused {
  return new Refused('invalid_request', `the body is larger than ${maxBytes} bytes`);
}

function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  rejection: { err: SetErrorCode; description: string },
): void {
  const body = JSON.stringify(rejection);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-language': 'en',
    'content-length': Buffer.byteLength(body),
  };
  // A body left unread (too large, wrong type) would otherwise be read into the next request.
  if (!req.readableEnded) headers.connection = 'close';
  res.writeHead(400, headers).end(body);
  req.resume();
}
