// Authentication of the bank's own systems on the admin API (/admin/v1/*):
//   x-ob-events-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(ADMIN_API_SECRET, message)>
//   message = "<t>\n<METHOD>\n<path and query as sent>\n" followed by the exact raw body
// The method and path are signed too, so a captured signature cannot be replayed against another
// endpoint or query. The timestamp must be within five minutes of now (replays of old requests
// fail) and the MAC is compared in constant time. Nothing of the secret or of the computed MAC is
// ever logged.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Clock } from '../../clock.js';
import { AppError, detail } from '../../errors.js';

export const SIGNATURE_HEADER = 'x-ob-events-signature';
export const TOLERANCE_SECONDS = 300;

export interface AdminRequestToSign {
  secret: string;
  method: string;
  /** Path and query exactly as sent, e.g. `/admin/v1/deliveries?state=failed`. */
  path: string;
  body: Buffer | string;
  /** Unix seconds; default now. */
  timestamp?: number;
}

export function adminSignature(r: Required<AdminRequestToSign>): string {
  return createHmac('sha256', r.secret)
    .update(`${r.timestamp}\n${r.method.toUpperCase()}\n${r.path}\n`)
    .update(r.body)
    .digest('hex');
}

/** The header value a bank system sends (also used by tests, the demo and the benchmarks). */
export function signAdminRequest(r: AdminRequestToSign): string {
  const timestamp = r.timestamp ?? Math.floor(Date.now() / 1000);
  return `t=${timestamp},v1=${adminSignature({ ...r, timestamp })}`;
}

/** Needs the raw body in `req.rawBody` (see the admin events route's body parser). */
export function requireAdminSignature(secret: string | undefined, clock: Clock): RequestHandler {
  return (req, _res, next) => {
    if (!secret) {
      next(
        new AppError('unavailable', 'the publishing API is disabled: ADMIN_API_SECRET is not set'),
      );
      return;
    }
    const header = req.get(SIGNATURE_HEADER);
    if (!header) {
      next(new AdminAuthError(`missing ${SIGNATURE_HEADER} header`));
      return;
    }
    const parts = new Map(
      header.split(',').map((p) => {
        const i = p.indexOf('=');
        return [p.slice(0, i).trim(), p.slice(i + 1).trim()] as const;
      }),
    );
    const t = Number(parts.get('t'));
    const given = parts.get('v1') ?? '';
    if (!Number.isInteger(t) || !/^[0-9a-f]{64}$/i.test(given)) {
      next(new AdminAuthError(`malformed ${SIGNATURE_HEADER} header`));
      return;
    }
    if (Math.abs(clock.now() / 1000 - t) > TOLERANCE_SECONDS) {
      next(new AdminAuthError('signature timestamp outside the five-minute tolerance'));
      return;
    }
    const raw = (req as { rawBody?: Buffer }).rawBody ?? Buffer.alloc(0);
    const expected = Buffer.from(
      adminSignature({
        secret,
        timestamp: t,
        method: req.method,
        path: req.originalUrl,
        body: raw,
      }),
      'hex',
    );
    if (!timingSafeEqual(expected, Buffer.from(given, 'hex'))) {
      next(new AdminAuthError('signature does not match the body'));
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
          `${SIGNATURE_HEADER} is missing, stale or wrong`,
          SIGNATURE_HEADER,
        ),
      ],
      reason,
    );
  }
}
