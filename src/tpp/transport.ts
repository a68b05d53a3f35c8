// HTTP for the TPP SDK: one undici Agent doing mutual TLS with the TPP's transport certificate
// (every call to ob-events, the JWKS included, goes over it), bounded response bodies, and one
// error type whose `code` callers switch on.
import { Agent, request } from 'undici';

export type PemInput = string | Buffer;

export interface TlsIdentity {
  /** The TPP's transport certificate (PEM), presented to the server. */
  cert: PemInput;
  /** Its private key (PEM). */
  key: PemInput;
  /** CAs trusted for the server's certificate (PEM); default: Node's bundled CAs. */
  ca?: PemInput | PemInput[];
  /** TLS server name to check the certificate against, when it is not the URL's host. */
  servername?: string;
}

export type TppErrorCode =
  /** The server answered with an unexpected HTTP status (see `status` and `body`). */
  | 'http_status'
  /** The server's answer is not what the API defines. */
  | 'invalid_response'
  /** Discovery named another issuer than the one configured. */
  | 'issuer_mismatch'
  /** The token endpoint refused the client (see `status` and `body`). */
  | 'token_refused'
  /** A subscription response's x-jws-signature is missing or does not verify. */
  | 'response_signature'
  /** The options or the key material cannot work. */
  | 'configuration';

export class TppError extends Error {
  override name = 'TppError';
  constructor(
    readonly code: TppErrorCode,
    message: string,
    /** HTTP status, for `http_status` and `token_refused`. */
    readonly status?: number,
    /** The response body (first 2,000 characters), for `http_status` and `token_refused`. */
    readonly body?: string,
  ) {
    super(message);
  }
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

// A poll answer of 1,000 SETs is about 2 MB; anything far beyond is not an ob-events answer.
const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

export function createAgent(tls: TlsIdentity): Agent {
  return new Agent({
    connect: {
      cert: tls.cert,
      key: tls.key,
      ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
      ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
    },
    // Long polls hold a request for up to LONG_POLL_SECONDS (at most 300): wait a little longer.
    headersTimeout: 330_000,
    bodyTimeout: 330_000,
  });
}

export async function send(
  agent: Agent,
  url: string,
  init: {
    method: 'GET' | 'POST' | 'PUT' | 'DELETE';
    headers?: Record<string, string>;
    body?: string;
    signal?: AbortSignal;
    maxBytes?: number;
  },
): Promise<HttpResponse> {
  const res = await request(url, {
    dispatcher: agent,
    method: init.method,
    headers: init.headers ?? {},
    body: init.body ?? null,
    ...(init.signal ? { signal: init.signal } : {}),
  });
  const max = init.maxBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > max) {
      res.body.destroy();
      throw new TppError(
        'invalid_response',
        `the response from ${url} is larger than ${max} bytes`,
      );
    }
    chunks.push(chunk as Buffer);
  }
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
}

/** The body as JSON, or an `invalid_response` TppError. */
export function jsonBody(res: HttpResponse, what: string): unknown {
  try {
    return JSON.parse(res.body.toString('utf8')) as unknown;
  } catch {
    throw new TppError('invalid_response', `${what}: the response body is not JSON`);
  }
}

/** A TppError for an answer with an unexpected status. */
export function statusError(res: HttpResponse, what: string): TppError {
  const body = res.body.toString('utf8').slice(0, 2_000);
  return new TppError('http_status', `${what}: HTTP ${res.status}`, res.status, body);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
