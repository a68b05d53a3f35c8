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
  // A plain GET of the metadata is answered before express with these bytes (fixedResponses.ts);
  // the headers are the route's own, in its order (express adds Content-Length).
  const body = Buffer.from(metadataText);
  publishFixedDocuments(
    router,
    paths.map((path) => ({
      path,
      headers: [
        ['Cache-Control', METADATA_CACHE_CONTROL],
        ['Content-Type', 'application/json; charset=utf-8'],
      ],
      body,
    })),
  );
  router.get('/jwks', async (_req, res) => {
    const jwks = await deps.services.keys.publicJwks();
    // Short: verifiers should see a rotated key soon (they also refetch on an unknown kid).
    res.setHeader('Cache-Control', 'public, max-age=60');
    res.json(jwks);
  });
  router.all('/jwks', methodNotAllowed(['GET']));
  return router;
}
