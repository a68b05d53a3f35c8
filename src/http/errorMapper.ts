// The one place that turns errors into HTTP responses.
// - AppError (src/errors.ts): status by kind, OBErrorResponse1 body in the error model of the
//   route's API version (src/http/errorModels.ts; 401: RFC 6750 header, a body only where the
//   version's profile wants one).
// - OAuthError: RFC 6749 §5.2 JSON for the token endpoint.
// - body-parser and express-openapi-validator errors: the caller's fault, so 4xx.
// - database unreachable (src/db/outage.ts) and ServiceUnavailableError: 503 with Retry-After, in
//   the endpoint's shape (OAuth on /token); the outage is logged once, not per request.
// - anything else: 500 with a generic body; the details go to the log only.
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import {
  AppError,
  OAuthError,
  ServiceUnavailableError,
  UnauthenticatedError,
  type ErrorDetail,
  type ErrorKind,
  type ObErrorCode,
} from '../errors.js';
import { profileOf } from './apiProfiles.js';
import {
  DATABASE_RETRY_AFTER_SECONDS,
  isDatabaseUnavailable,
  type DatabaseOutage,
} from '../db/outage.js';
import { requestContext } from './context.js';

export { obErrorBody, type ObErrorResponse } from './errorModels.js';

const STATUS: Record<ErrorKind, number> = {
  invalid_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  not_acceptable: 406,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  too_many_requests: 429,
  unavailable: 503,
};

const DEFAULT_CODE: Partial<Record<ErrorKind, ObErrorCode>> = {
  invalid_request: 'UK.OBIE.Field.Invalid',
  forbidden: 'UK.OBIE.Header.Invalid',
  not_found: 'UK.OBIE.Resource.NotFound',
  method_not_allowed: 'UK.OBIE.Resource.InvalidFormat',
  not_acceptable: 'UK.OBIE.Header.Invalid',
  conflict: 'UK.OBIE.Rules.ResourceAlreadyExists',
  payload_too_large: 'UK.OBIE.Resource.InvalidFormat',
  unsupported_media_type: 'UK.OBIE.Header.Invalid',
  too_many_requests: 'UK.OBIE.UnexpectedError',
  unavailable: 'UK.OBIE.UnexpectedError',
};

export function sendAppError(res: Response, err: AppError): void {
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  const status = STATUS[err.kind];
  if (err.internalReason) ctx?.log.info({ reason: err.internalReason, status }, err.message);
  if (err.kind === 'method_not_allowed' && err.allow) res.setHeader('Allow', err.allow);
  // The error body of the route's API version (v3.1 outside the versioned paths).
  const errors = profileOf(res).errors;
  if (err.retryAfterSeconds !== undefined) res.setHeader('Retry-After', err.retryAfterSeconds);
  else if (err.kind === 'unavailable') res.setHeader('Retry-After', '5');
  if (err instanceof UnauthenticatedError) {
    res.setHeader('WWW-Authenticate', `Bearer error="${err.bearerError}"`);
    const body = errors.unauthenticatedBody(err, ctx?.interactionId);
    if (body) res.status(401).json(body);
    else res.status(401).end();
    return;
  }
  const details =
    err.details.length > 0
      ? err.details
      : [{ errorCode: DEFAULT_CODE[err.kind] ?? 'UK.OBIE.UnexpectedError', message: err.message }];
  res.status(status).json(errors.body(status, err.message, details, ctx?.interactionId));
}

function sendOAuthError(res: Response, err: OAuthError): void {
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  ctx?.log.info({ reason: err.internalReason, error: err.error }, 'token request refused');
  res.setHeader('Cache-Control', 'no-store');
  if (err.retryAfterSeconds !== undefined) res.setHeader('Retry-After', err.retryAfterSeconds);
  res.status(err.status).json({ error: err.error, error_description: err.description });
}

interface HttpLikeError {
  status?: number;
  statusCode?: number;
  type?: string;
  expose?: boolean;
  errors?: { path?: string; message?: string; errorCode?: string }[];
  headers?: Record<string, string>;
  message?: string;
}

/** Errors from body-parser and express-openapi-validator: 4xx, mapped to our shape. */
function fromHttpError(err: HttpLikeError): AppError | undefined {
  const status = err.status ?? err.statusCode;
  if (status === undefined || status < 400 || status >= 500) return undefined;
  switch (err.type) {
    case 'entity.too.large':
      return new AppError('payload_too_large', 'request body too large');
    case 'entity.parse.failed':
      return new AppError('invalid_request', 'request body is not valid JSON', [
        { errorCode: 'UK.OBIE.Resource.InvalidFormat', message: 'request body is not valid JSON' },
      ]);
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return new AppError('unsupported_media_type', err.message ?? 'unsupported encoding');
  }
  const kind = kindForStatus(status);
  const details = (err.errors ?? []).map(validatorDetail);
  const message =
    kind === 'invalid_request' && details.length > 0
      ? 'the request does not match the API definition'
      : (err.errors?.[0]?.message ?? err.message ?? 'bad request');
  const appError = new AppError(kind, message, kind === 'invalid_request' ? details : []);
  if (kind === 'method_not_allowed' && err.headers?.Allow) appError.allow = err.headers.Allow;
  return appError;
}

function kindForStatus(status: number): ErrorKind {
  switch (status) {
    case 401:
      return 'unauthenticated';
    case 403:
      return 'forbidden';
    case 404:
      return 'not_found';
    case 405:
      return 'method_not_allowed';
    case 406:
      return 'not_acceptable';
    case 409:
      return 'conflict';
    case 413:
      return 'payload_too_large';
    case 415:
      return 'unsupported_media_type';
    case 429:
      return 'too_many_requests';
    default:
      return 'invalid_request';
  }
}

/**
 * express-openapi-validator reports paths like `body/Data/EventTypes/0` (older versions
 * `.body.Data.Version`); OBIE wants `Data.EventTypes[0]`, and a header's or query parameter's
 * own name.
 */
function validatorDetail(e: { path?: string; message?: string; errorCode?: string }): ErrorDetail {
  const raw = e.path ?? '';
  const location = /^[./]?(body|query|path|headers)(?=$|[./])/.exec(raw)?.[1];
  const segments = raw
    .replace(/^[./]?(body|query|path|headers)/, '')
    .split(/[./]/)
    .filter((s) => s !== '');
  const missing = /must have required property/.test(e.message ?? '');
  const additional = /must NOT have additional properties/.test(e.message ?? '');
  if (additional) {
    const m = /additional properties.*'([^']+)'/.exec(e.message ?? '');
    if (m?.[1] && segments.at(-1) !== m[1]) segments.push(m[1]);
  }
  const path = segments.reduce(
    (p, s) => (/^\d+$/.test(s) ? `${p}[${s}]` : p ? `${p}.${s}` : s),
    '',
  );
  let errorCode: ObErrorCode = 'UK.OBIE.Field.Invalid';
  if (location === 'headers')
    errorCode = missing ? 'UK.OBIE.Header.Missing' : 'UK.OBIE.Header.Invalid';
  else if (missing) errorCode = 'UK.OBIE.Field.Missing';
  else if (additional || /^Unknown query parameter/.test(e.message ?? ''))
    errorCode = 'UK.OBIE.Field.Unexpected';
  const d: ErrorDetail = { errorCode, message: e.message ?? 'invalid' };
  if (path) d.path = path;
  return d;
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new AppError('not_found', `no endpoint ${req.method} ${req.path}`));
};

/** Mounted after the routes of a path: the path exists, the method does not. */
export function methodNotAllowed(allowed: string[]): RequestHandler {
  return (req, _res, next) => {
    const err = new AppError('method_not_allowed', `${req.method} is not allowed here`);
    err.allow = allowed.join(', ');
    next(err);
  };
}

// Backstop: Postgres refused a value a caller sent (bad encoding, NUL, text that is not the
// column's type). The boundaries check values first (src/storableText.ts); should one slip
// through, it is still the caller's 400, not a 500.
const REFUSED_VALUE_SQLSTATES = new Set(['22021', '22P05', '22P02']);

function isRefusedValue(err: unknown): err is { code: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && REFUSED_VALUE_SQLSTATES.has(code);
}

function sendRefusedValue(req: Request, res: Response, err: { code: string }): void {
  const reason = `database refused a value (SQLSTATE ${err.code})`;
  const message = 'a value in the request cannot be accepted';
  if (req.path === '/token') {
    sendOAuthError(res, new OAuthError('invalid_request', message, reason));
    return;
  }
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  ctx?.log.warn({ err }, reason);
  sendAppError(res, new AppError('invalid_request', message));
}

/** Set on `res.locals.errorShape` by routes whose errors are OAuth JSON (the token endpoint). */
export const OAUTH_ERROR_SHAPE = 'oauth';

/**
 * Where the one DatabaseOutage of the process hangs (`app.locals`), so that every app reports
 * to it.
 */
export const DATABASE_OUTAGE_LOCAL = 'databaseOutage';

function asServiceUnavailable(
  err: unknown,
  app: { locals: Record<string, unknown> },
): ServiceUnavailableError | undefined {
  if (err instanceof ServiceUnavailableError) return err;
  if (!isDatabaseUnavailable(err)) return undefined;
  (app.locals[DATABASE_OUTAGE_LOCAL] as DatabaseOutage | undefined)?.report(err);
  return new ServiceUnavailableError(
    'the service is temporarily unavailable; retry later',
    DATABASE_RETRY_AFTER_SECONDS,
  );
}

function sendServiceUnavailable(res: Response, err: ServiceUnavailableError): void {
  res.setHeader('Retry-After', String(err.retryAfterSeconds));
  if (res.locals.errorShape !== OAUTH_ERROR_SHAPE) {
    sendAppError(res, err);
    return;
  }
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  if (err.internalReason) ctx?.log.info({ reason: err.internalReason, status: 503 }, err.message);
  res.setHeader('Cache-Control', 'no-store');
  res.status(503).json({ error: 'temporarily_unavailable', error_description: err.message });
}

export const errorMapper: ErrorRequestHandler = (err: unknown, req, res, next) => {
  if (res.headersSent) {
    next(err);
    return;
  }
  const unavailable = asServiceUnavailable(err, req.app);
  if (unavailable) {
    sendServiceUnavailable(res, unavailable);
    return;
  }
  if (err instanceof AppError) {
    sendAppError(res, err);
    return;
  }
  if (err instanceof OAuthError) {
    sendOAuthError(res, err);
    return;
  }
  const mapped =
    typeof err === 'object' && err !== null ? fromHttpError(err as HttpLikeError) : undefined;
  if (mapped) {
    sendAppError(res, mapped);
    return;
  }
  if (isRefusedValue(err)) {
    sendRefusedValue(req, res, err);
    return;
  }
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  ctx?.log.error({ err }, 'unexpected error');
  res.status(500).json(
    profileOf(res).errors.body(
      500,
      'unexpected error',
      [
        {
          errorCode: 'UK.OBIE.UnexpectedError',
          message: 'an unexpected error occurred; quote the Id when reporting it',
        },
      ],
      ctx?.interactionId,
    ),
  );
};
