// The closed set of errors the domain and the HTTP layer raise on purpose. Each has a stable
// `kind` the one error mapper (src/http/errorMapper.ts) turns into a status code and a body;
// anything else that is thrown is an internal error (500, generic body, details only logged).

/** `UK.OBIE.*` error codes we emit (OBIE namespaced enumeration, 3.1.11). */
export type ObErrorCode =
  | 'UK.OBIE.Field.Expected'
  | 'UK.OBIE.Field.Invalid'
  | 'UK.OBIE.Field.Missing'
  | 'UK.OBIE.Field.Unexpected'
  | 'UK.OBIE.Header.Invalid'
  | 'UK.OBIE.Header.Missing'
  | 'UK.OBIE.Resource.ConsentMismatch'
  | 'UK.OBIE.Resource.InvalidFormat'
  | 'UK.OBIE.Resource.NotFound'
  | 'UK.OBIE.Rules.ResourceAlreadyExists'
  | 'UK.OBIE.Signature.Invalid'
  | 'UK.OBIE.Signature.InvalidClaim'
  | 'UK.OBIE.Signature.Malformed'
  | 'UK.OBIE.Signature.Missing'
  | 'UK.OBIE.Signature.MissingClaim'
  | 'UK.OBIE.Signature.Unexpected'
  | 'UK.OBIE.Unsupported.EventType'
  | 'UK.OBIE.UnexpectedError';

export interface ErrorDetail {
  errorCode: ObErrorCode;
  message: string;
  /** JSON path of the offending field, or the header name. */
  path?: string;
  url?: string;
}

export type ErrorKind =
  | 'invalid_request' // 400
  | 'unauthenticated' // 401, no body (resource server)
  | 'forbidden' // 403
  | 'not_found' // 404: no such route
  | 'method_not_allowed' // 405
  | 'not_acceptable' // 406
  | 'conflict' // 409
  | 'payload_too_large' // 413
  | 'unsupported_media_type' // 415
  | 'too_many_requests' // 429
  | 'unavailable'; // 503

export class AppError extends Error {
  /** For method_not_allowed: the Allow header value. */
  allow?: string;
  /** For too_many_requests and unavailable: the Retry-After header value, in seconds. */
  retryAfterSeconds?: number;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly details: ErrorDetail[] = [],
    /** Logged, never sent to the caller. */
    readonly internalReason?: string,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

/** 400 with one OBIE error entry. */
export function invalid(errorCode: ObErrorCode, message: string, path?: string): AppError {
  return new AppError('invalid_request', message, [detail(errorCode, message, path)]);
}

export function detail(errorCode: ObErrorCode, message: string, path?: string): ErrorDetail {
  return path === undefined ? { errorCode, message } : { errorCode, message, path };
}

/**
 * 401 at a protected resource (RFC 6750 §3): the mapper answers with
 * `WWW-Authenticate: Bearer error="invalid_token"` and no body. `internalReason` is only logged.
 */
export class UnauthenticatedError extends AppError {
  constructor(
    internalReason: string,
    readonly bearerError: 'invalid_token' | 'invalid_request' = 'invalid_token',
    /** A genuine access token past its `exp`: OBIE v4.0 answers it with an error body. */
    readonly expired = false,
  ) {
    super('unauthenticated', 'authentication required', [], internalReason);
    this.name = 'UnauthenticatedError';
  }
}

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  // RFC 8628 §3.5's code for a client asking too often; answered with 429 and Retry-After.
  | 'slow_down';

/**
 * Token endpoint errors (RFC 6749 §5.2): a JSON body `{error, error_description}` rather than
 * OBErrorResponse1. `description` is safe to show; `internalReason` says which check failed.
 */
export class OAuthError extends Error {
  readonly status: number;
  /** With slow_down: the Retry-After header value, in seconds. */
  retryAfterSeconds?: number;
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly internalReason: string = description,
  ) {
    super(`${error}: ${description}`);
    this.name = 'OAuthError';
    this.status = error === 'invalid_client' ? 401 : error === 'slow_down' ? 429 : 400;
  }
}

/**
 * 503 with `Retry-After`: a dependency this request needs (the database, the signing workers)
 * is not available right now; the request may succeed if repeated later. `internalReason` is
 * only logged.
 */
export class ServiceUnavailableError extends AppError {
  constructor(
    message: string,
    override readonly retryAfterSeconds: number,
    internalReason?: string,
  ) {
    super('unavailable', message, [], internalReason);
    this.name = 'ServiceUnavailableError';
  }
}
