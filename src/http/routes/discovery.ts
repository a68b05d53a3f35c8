// Authorisation server metadata (RFC 8414, and the same document at the OpenID discovery path
// that FAPI tooling looks for) and the JWKS that verifies our access tokens, SETs and response
// signatures.
import { Router } from 'express';
import { CLIENT_ASSERTION_ALGS } from '../../crypto/clientAssertion.js';
import { KNOWN_SCOPES } from '../../domain/clients.js';
import { CLIENT_CREDENTIALS } from '../../domain/tokens.js';
import { methodNotAllowed } from '../errorMapper.js';
import { publishFixedDocuments } from '../fixedResponses.js';
import { sendPreparedJson } from '../jsonBytes.js';
import type { RouteDeps } from './index.js';

export const METADATA_PATHS = [
  '/.well-known/openid-configuration',
  '/.well-known/oauth-authorization-server',
];

const METADATA_CACHE_CONTROL = 'public, max-age=300';
const JWKS_CACHE_CONTROL = 'public, max-age=60';

export function discoveryRouter(deps: RouteDeps): Router {
  const router = Router();
  const { tokens } = deps.services;
  const metadata = {
    issuer: tokens.issuer,
    token_endpoint: tokens.tokenEndpoint,
    jwks_uri: `${tokens.issuer}/jwks`,
    grant_types_supported: [CLIENT_CREDENTIALS],
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'tls_client_auth'],
    token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    scopes_supported: [...KNOWN_SCOPES],
    tls_client_certificate_bound_access_tokens: true,
  };
  // The same bytes for every request: serialised once (still through res.json, for validation).
  const metadataText = JSON.stringify(metadata);
  // Resource-server mode: the bank's AS is the authorization server; we publish no metadata.
  const paths = deps.config.authServer ? [] : METADATA_PATHS;
  for (const path of paths) {
    router.get(path, (_req, res) => {
      res.setHeader('Cache-Control', METADATA_CACHE_CONTROL);
      sendPreparedJson(res, 200, metadata, metadataText);
    });
    router.all(path, methodNotAllowed(['GET']));
  }
  router.get('/jwks', async (_req, res) => {
    const jwks = await deps.services.keys.publicJwks();
    // Short: verifiers should see a rotated key soon (they also refetch on an unknown kid).
    res.setHeader('Cache-Control', JWKS_CACHE_CONTROL);
    res.json(jwks);
  });
  router.all('/jwks', methodNotAllowed(['GET']));
  // A plain GET of these paths is answered before express (fixedResponses.ts) with the bytes and
  // headers (the routes' own, in their order; express adds Content-Length) these routes send. The
  // JWKS is read from the key ring as above on every request (so never staler than the route) and
  // serialised again only when a key changes.
  const metadataBytes = Buffer.from(metadataText);
  let last: { keys: unknown[]; body: Buffer } | undefined;
  const jwksBytes = async (): Promise<Buffer> => {
    const jwks = await deps.services.keys.publicJwks();
    if (!last || !sameMembers(last.keys, jwks.keys)) {
      last = { keys: jwks.keys, body: Buffer.from(JSON.stringify(jwks)) };
    }
    return last.body;
  };
  const json = 'application/json; charset=utf-8';
  publishFixedDocuments(router, [
    ...paths.map((path) => ({
      path,
      headers: [
        ['Cache-Control', METADATA_CACHE_CONTROL],
        ['Content-Type', json],
      ] as [string, string][],
      body: metadataBytes,
    })),
    {
      path: '/jwks',
      headers: [
        ['Cache-Control', JWKS_CACHE_CONTROL],
        ['Content-Type', json],
      ],
      body: jwksBytes,
    },
  ]);
  return router;
}

/** The same key objects in the same order: the key ring's cache returned the same keys. */
function sameMembers(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i]);
}
