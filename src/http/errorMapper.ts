// The one place that turns errors into HTTP responses.
// - AppError (src/errors.ts): status by kind, OBErrorResponse1 body (401: no body, RFC 6750 header).
// - OAuthError: RFC 6749 §5.2 JSON for the token endpoint.
// - body-parser and express-openapi-validator errors: the caller's fault, so 4xx.
// - database unreachable (src/db/outage.ts) and ServiceUnavailableError: 503 with Retry-After, in
//   the endpoint's shape (OAuth on /token); the outage is logged once, not per request.
// - anything else: 500 with a generic body; the details go to the log only.
import { STATUS_CODES } from 'node:http';
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import {
  AppError,
  OAuthError,
  ServiceUnavailableError,
  UnauthenticatedError,
  type ErrorDetail,
  type ErrorKind,
  type ObErrorCode,
} from '../errors.js';
import {
  DATABASE_RETRY_AFTER_SECONDS,
  isDatabaseUnavailable,
  type DatabaseOutage,
} from '../db/outage.js';
import { requestContext } from './context.js';

export interface ObErrorResponse {
  Code: string;
  Id?: string;
  Message: string;
  Errors: { ErrorCode: string; Message: string; Path?: string; Url?: string }[];
}

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

export function obErrorBody(
  status: number,
  message: string,
  details: ErrorDetail[],
  interactionId?: string,
): ObErrorResponse {
  const body: ObErrorResponse = {
    Code: `${status} ${STATUS_CODES[status] ?? 'Error'}`.slice(0, 40),
    Message: clip(message, 500),
    Errors: details.map((d) => {
      const e: ObErrorResponse['Errors'][number] = {
        ErrorCode: d.errorCode,
        Message: clip(d.message, 500),
      };
      if (d.path) e.Path = clip(d.path, 500);
      if (d.url) e.Url = d.url;
      return e;
    }),
  };
  if (interactionId) body.Id = interactionId.slice(0, 40);
  return body;
}

function clip(s: string, max: number): string {
  const t = s.length === 0 ? 'error' : s;
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

export function sendAppError(res: Response, err: AppError): void {
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  const status = STATUS[err.kind];
  if (err.internalReason) ctx?.log.info({ reason: err.internalReason, status }, err.message);
  if (err.kind === 'method_not_allowed' && err.allow) res.setHeader('Allow', err.allow);
  if (err instanceof UnauthenticatedError) {
    res.setHeader('WWW-Authenticate', `Bearer error="${err.bearerError}"`);
    res.status(401).end();
    return;
  }
  const details =
    err.details.length > 0
      ? err.details
      : [{ errorCode: DEFAULT_CODE[err.kind] ?? 'UK.OBIE.UnexpectedError', message: err.message }];
  res.status(status).json(obErrorBody(status, err.message, details, ctx?.interactionId));
}

function sendOAuthError(res: Response, err: OAuthError): void {
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  ctx?.log.info({ reason: err.internalReason, error: err.error }, 'token request refused');
  res.setHeader('Cache-Control', 'no-store');
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
  const ctx = res.locals.ctx ? requestContext(res) : undefined;
  ctx?.log.error({ err }, 'unexpected error');
  res.status(500).json(
    obErrorBody(
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
