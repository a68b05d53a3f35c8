// Discovery: GET {baseUrl}/.well-known/openid-configuration over mTLS.
//
// Two addresses matter and may differ (a bank's load balancer, a test server on 127.0.0.1):
// - where to connect (`baseUrl`);
// - the issuer, the server's name for itself (PUBLIC_URL): the `iss` of every SET, and the base
//   of the URLs in its metadata. When an issuer is configured, discovery must name exactly it.
// Metadata URLs under the issuer are reached through `baseUrl`; other URLs as they are.
import type { Agent } from 'undici';
import { isRecord, jsonBody, send, statusError, TppError } from './transport.js';

export const DISCOVERY_PATH = '/.well-known/openid-configuration';

export interface ServerMetadata {
  issuer: string;
  token_endpoint: string;
  jwks_uri: string;
  [member: string]: unknown;
}

export interface Endpoints {
  issuer: string;
  /** The token endpoint as the server names it: the audience of client assertions. */
  tokenEndpoint: string;
  /** Where to POST token requests. */
  tokenUrl: string;
  /** Where to GET the JWKS that verifies SETs and response signatures. */
  jwksUrl: string;
}

export async function discover(
  agent: Agent,
  baseUrl: string,
  expectedIssuer: string | undefined,
): Promise<{ metadata: ServerMetadata; endpoints: Endpoints }> {
  const what = `GET ${baseUrl}${DISCOVERY_PATH}`;
  const res = await send(agent, `${baseUrl}${DISCOVERY_PATH}`, {
    method: 'GET',
    headers: { accept: 'application/json' },
  });
  if (res.status !== 200) throw statusError(res, what);
  const metadata = jsonBody(res, what);
  if (!isServerMetadata(metadata)) {
    throw new TppError(
      'invalid_response',
      `${what}: issuer, token_endpoint or jwks_uri is missing`,
    );
  }
  if (expectedIssuer !== undefined && metadata.issuer !== expectedIssuer) {
    throw new TppError(
      'issuer_mismatch',
      `the server says its issuer is ${metadata.issuer}, not the configured ${expectedIssuer}`,
    );
  }
  const { issuer } = metadata;
  return {
    metadata,
    endpoints: {
      issuer,
      tokenEndpoint: metadata.token_endpoint,
      tokenUrl: connectUrl(metadata.token_endpoint, issuer, baseUrl),
      jwksUrl: connectUrl(metadata.jwks_uri, issuer, baseUrl),
    },
  };
}

/** `url` with the issuer prefix replaced by `baseUrl`; unchanged when not under the issuer. */
export function connectUrl(url: string, issuer: string, baseUrl: string): string {
  const prefix = issuer.replace(/\/+$/, '');
  if (url === prefix) return baseUrl;
  if (url.startsWith(`${prefix}/`)) return `${baseUrl}${url.slice(prefix.length)}`;
  return url;
}

function isServerMetadata(value: unknown): value is ServerMetadata {
  return (
    isRecord(value) &&
    typeof value.issuer === 'string' &&
    typeof value.token_endpoint === 'string' &&
    typeof value.jwks_uri === 'string'
  );
}
