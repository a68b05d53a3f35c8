// GET /jwks on the admin listener: the same public keys as the API listener's /jwks, without
// mTLS. Open Banking practice is a public keystore (the OB Directory publishes every
// participant's JWKS at an anonymous HTTPS URL): a TPP verifying our SETs should not need its
// transport certificate to fetch public keys, and some libraries (jose's createRemoteJWKSet,
// PyJWT's PyJWKClient) fetch key sets without client certificates. Only public key members are
// ever served (KeyRing.publicJwks). Publish it through the bank's reverse proxy or CDN (route
// only /jwks there, not the rest of the admin listener); ADMIN_PUBLIC_JWKS=false turns it off.
import { Router } from 'express';
import type { KeyRing } from '../../domain/signingKeys.js';
import { methodNotAllowed } from '../errorMapper.js';

export function publicJwksRouter(keys: KeyRing): Router {
  const router = Router();
  router.get('/jwks', async (_req, res) => {
    const jwks = await keys.publicJwks();
    // As on the API listener: verifiers should see a rotated key within a minute.
    res.setHeader('Cache-Control', 'public, max-age=60');
    // Public data: browsers on other origins (e.g. a TPP's test page) may read it.
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.json(jwks);
  });
  router.all('/jwks', methodNotAllowed(['GET']));
  return router;
}
