// Authorisation server metadata (RFC 8414, and the same document at the OpenID discovery path
// that FAPI tooling looks for) and the JWKS that verifies our access tokens, SETs and response
// signatures.
import { Router } from 'express';
import { CLIENT_ASSERTION_ALGS } from '../../crypto/clientAssertion.js';
import { KNOWN_SCOPES } from '../../domain/clients.js';
import { CLIENT_CREDENTIALS } from '../../domain/tokens.js';
import { methodNotAllowed } from '../errorMapper.js';
import { sendPreparedJson } from '../jsonBytes.js';
import type { RouteDeps } from './index.js';

export const METADATA_PATHS = [
  '/.well-known/openid-configuration',
  '/.well-known/oauth-authorization-server',
];

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
  for (const path of deps.config.authServer ? [] : METADATA_PATHS) {
    router.get(path, (_req, res) => {
      res.setHeader('Cache-Control', 'public, max-age=300');
      sendPreparedJson(res, 200, metadata, metadataText);
    });
    router.all(path, methodNotAllowed(['GET']));
  }
  router.get('/jwks', async (_req, res) => {
    const jwks = await deps.services.keys.publicJwks();
    // Short: verifiers should see a rotated key soon (they also refetch on an unknown kid).
    res.setHeader('Cache-Control', 'public, max-age=60');
    res.json(jwks);
  });
  router.all('/jwks', methodNotAllowed(['GET']));
  return router;
}
