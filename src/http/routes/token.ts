// POST /token: the client credentials grant (src/domain/tokens.ts does the work). Form-encoded
// body with a small limit; answers are never cached (RFC 6749 §5.1).
import { Router, type RequestHandler } from 'express';
import { OAuthError } from '../../errors.js';
import { parseTokenForm } from '../bodyPolicy.js';
import { identifyClient, requestContext } from '../context.js';
import { methodNotAllowed, OAUTH_ERROR_SHAPE } from '../errorMapper.js';
import type { RouteDeps } from './index.js';

// Body parser failures on this endpoint are OAuth errors, not OBIE ones.
const formBody: RequestHandler = (req, res, next) => {
  if (!req.is('application/x-www-form-urlencoded')) {
    next(
      new OAuthError(
        'invalid_request',
        'the request body must be application/x-www-form-urlencoded',
      ),
    );
    return;
  }
  parseTokenForm(req, res, (err?: unknown) => {
    if (err === undefined) next();
    else
      next(
        new OAuthError(
          'invalid_request',
          'the request body could not be read',
          `body parser: ${(err as Error).message}`,
        ),
      );
  });
};

export function tokenRouter(deps: RouteDeps): Router {
  const router = Router();
  router.post('/token', noStore, formBody, async (req, res) => {
    const ctx = requestContext(res);
    const issued = await deps.services.tokens
      .issue({
        form: req.body as unknown,
        certificate: ctx.clientCertificate,
        hasAuthorizationHeader: req.get('authorization') !== undefined,
      })
      .catch((err: unknown) => {
        if (err instanceof OAuthError) deps.metrics?.tokensRefused.inc({ reason: err.error });
        throw err;
      });
    deps.metrics?.tokensIssued.inc({ auth_method: issued.authMethod });
    identifyClient(ctx, issued.clientId);
    res.status(200).json(issued.response);
  });
  router.all('/token', methodNotAllowed(['POST']));
  return router;
}

const noStore: RequestHandler = (_req, res, next) => {
  res.locals.errorShape = OAUTH_ERROR_SHAPE; // a 503 here is OAuth JSON too (errorMapper.ts)
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Pragma', 'no-cache');
  next();
};
