// Authentication of the bank's own systems on the admin API (/admin/v1/*):
//   x-ob-events-signature: t=<unix seconds>[,n=<nonce>],v1=<hex HMAC-SHA256(ADMIN_API_SECRET, message)>
//   message = "<t>\n<METHOD>\n<path and query as sent>\n" followed by the exact raw body;
//   with a nonce the first line is "<t>.<n>" (a retry of the same body in the same second then
//   still gets a MAC of its own).
// The method and path are signed too, so a captured signature cannot be replayed against another
// endpoint or query. The rules, in the order they run:
//   1. before any of the body is read: the header is present and canonical (t a plain decimal
//      number, v1 64 hex digits, nothing else), t is at most five minutes old and at most 30 s in
//      the future, and Content-Length is within the route's limit; a refusal here closes the
//      connection, so an unauthenticated caller cannot make us read a large body;
//   2. the body is read (the route's limit);
//   3. the MAC is compared in constant time;
//   4. the MAC must not have been accepted before (admin_request_macs, shared by every replica,
//      kept until t leaves the window): a captured request cannot be replayed.
// Nothing of the secret or of the computed MAC is ever logged.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import express, { type Request, type RequestHandler } from 'express';
import type { Clock } from '../../clock.js';
import { AppError, detail } from '../../errors.js';

export const SIGNATURE_HEADER = 'x-ob-events-signature';
/** How old a signed timestamp may be. */
export const TOLERANCE_SECONDS = 300;
/** How far in the future a signed timestamp may be (the signer's clock running ahead). */
export const FUTURE_SKEW_SECONDS = 30;

export interface AdminRequestToSign {
  secret: string;
  method: string;
  /** Path and query exactly as sent, e.g. `/admin/v1/deliveries?state=failed`. */
  path: string;
  body: Buffer | string;
  /** Unix seconds; default now. */
  timestamp?: number;
  /** Default: 16 random bytes (base64url); null: no nonce (the original header form). */
  nonce?: string | null;
}

export function adminSignature(r: Required<AdminRequestToSign>): string {
  const first = r.nonce === null ? `${r.timestamp}` : `${r.timestamp}.${r.nonce}`;
  return createHmac('sha256', r.secret)
    .update(`${first}\n${r.method.toUpperCase()}\n${r.path}\n`)
    .update(r.body)
    .digest('hex');
}

/** The header value a bank system sends (also used by tests, the demo and the benchmarks). */
export function signAdminRequest(r: AdminRequestToSign): string {
  const timestamp = r.timestamp ?? Math.floor(Date.now() / 1000);
  const nonce = r.nonce === undefined ? randomBytes(16).toString('base64url') : r.nonce;
  const mac = adminSignature({ ...r, timestamp, nonce });
  return nonce === null ? `t=${timestamp},v1=${mac}` : `t=${timestamp},n=${nonce},v1=${mac}`;
}

/** Where accepted MACs are remembered (AdminRequestMacsStore). */
export interface AdminReplayCache {
  remember(mac: Buffer, expiresAt: Date): Promise<boolean>;
}

export interface AdminSignatureDeps {
  secret: string | undefined;
  clock: Clock;
  replays: AdminReplayCache;
}

interface ParsedSignature {
  t: number;
  nonce: string | null;
  mac: Buffer;
}

type WithSignature = Request & { adminSignature?: ParsedSignature; rawBody?: Buffer };

const CANONICAL_T = /^(0|[1-9][0-9]{0,11})$/;
const NONCE = /^[A-Za-z0-9_-]{16,64}$/;
const HEX_MAC = /^[0-9a-f]{64}$/i;

/**
 * The handlers that authenticate an admin request, in order; the raw body is then in
 * `req.rawBody`. `maxBodyBytes` is the route's body limit (checked against Content-Length
 * before reading, and while reading).
 */
export function adminSignatureSteps(
  deps: AdminSignatureDeps,
  maxBodyBytes: number,
): RequestHandler[] {
  return [
    checkSignatureHeader(deps, maxBodyBytes),
    express.raw({ type: () => true, limit: maxBodyBytes }),
    (req, _res, next) => {
      (req as WithSignature).rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      next();
    },
    verifySignature(deps),
  ];
}

function checkSignatureHeader(deps: AdminSignatureDeps, maxBodyBytes: number): RequestHandler {
  return (req, res, next) => {
    const refuse = (err: AppError) => {
      // The body stays unread: closing the connection keeps Node from draining it.
      res.setHeader('connection', 'close');
      next(err);
    };
    if (!deps.secret) {
      refuse(
        new AppError('unavailable', 'the publishing API is disabled: ADMIN_API_SECRET is not set'),
      );
      return;
    }
    const parsed = parseSignatureHeader(req.headers[SIGNATURE_HEADER]);
    if (typeof parsed === 'string') {
      refuse(new AdminAuthError(parsed));
      return;
    }
    const now = deps.clock.now() / 1000;
    if (parsed.t < now - TOLERANCE_SECONDS) {
      refuse(new AdminAuthError('signature timestamp older than five minutes'));
      return;
    }
    if (parsed.t > now + FUTURE_SKEW_SECONDS) {
      refuse(new AdminAuthError(`signature timestamp more than ${FUTURE_SKEW_SECONDS} s ahead`));
      return;
    }
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > maxBodyBytes) {
      refuse(new AppError('payload_too_large', `request body larger than ${maxBodyBytes} bytes`));
      return;
    }
    (req as WithSignature).adminSignature = parsed;
    next();
  };
}

/** The parsed header, or why it is refused. */
function parseSignatureHeader(value: string | string[] | undefined): ParsedSignature | string {
  if (value === undefined) return `missing ${SIGNATURE_HEADER} header`;
  if (Array.isArray(value)) return `more than one ${SIGNATURE_HEADER} header`;
  const fields = new Map<string, string>();
  for (const part of value.split(',')) {
    const i = part.indexOf('=');
    const key = i < 0 ? part : part.slice(0, i);
    if (i < 0 || fields.has(key) || !['t', 'n', 'v1'].includes(key)) {
      return `malformed ${SIGNATURE_HEADER} header`;
    }
    fields.set(key, part.slice(i + 1));
  }
  const t = fields.get('t');
  const nonce = fields.get('n');
  const mac = fields.get('v1');
  if (
    t === undefined ||
    !CANONICAL_T.test(t) ||
    mac === undefined ||
    !HEX_MAC.test(mac) ||
    (nonce !== undefined && !NONCE.test(nonce))
  ) {
    return `malformed ${SIGNATURE_HEADER} header (t must be decimal seconds, v1 64 hex digits)`;
  }
  return { t: Number(t), nonce: nonce ?? null, mac: Buffer.from(mac, 'hex') };
}

function verifySignature(deps: AdminSignatureDeps): RequestHandler {
  return async (req, _res, next) => {
    const r = req as WithSignature;
    const sig = r.adminSignature!;
    const expected = Buffer.from(
      adminSignature({
        secret: deps.secret!,
        timestamp: sig.t,
        nonce: sig.nonce,
        method: req.method,
        path: req.originalUrl,
        body: r.rawBody ?? Buffer.alloc(0),
      }),
      'hex',
    );
    if (!timingSafeEqual(expected, sig.mac)) {
      next(new AdminAuthError('signature does not match the body'));
      return;
    }
    // Remembered until the timestamp can no longer be accepted anyway.
    const expiresAt = new Date((sig.t + TOLERANCE_SECONDS + 1) * 1000);
    if (!(await deps.replays.remember(sig.mac, expiresAt))) {
      next(new AdminAuthError('replay: this signature was already used'));
      return;
    }
    next();
  };
}

/** 401 with an OBErrorResponse1 body; the precise reason is only logged. */
class AdminAuthError extends AppError {
  constructor(reason: string) {
    super(
      'unauthenticated',
      'request signature refused',
      [
        detail(
          'UK.OBIE.Header.Invalid',
          `${SIGNATURE_HEADER} is missing, stale, reused or wrong`,
          SIGNATURE_HEADER,
        ),
      ],
      reason,
    );
  }
}
