// POST /token answered before express in the case every TPP sends, with the same work and the same
// answers: the express path's layers (the root router's Accept check, form reader and OpenAPI
// validator, the discovery and token routers' path matching, express's response helpers) were
// about 70 µs of event loop per token, a fifth of a token's event-loop time (bench/README).
//
// Taken on only when express would run exactly the steps below for the request, and nothing else:
// - `POST /token` exactly (no query string); an Accept that is absent or plainly allows JSON
//   (openapi.ts: acceptJson); a body of known length within the limit, a UTF-8 form, no
//   Content-Encoding or Transfer-Encoding (tokenForm.ts: plainBodyLength);
// - a client certificate that the checks accept (clientCertificate.ts), checked before the body is
//   read, as on the express path; a request they would refuse is left to express, which refuses it;
// - a body that reads as a plain form of single values (tokenForm.ts: parsePlainForm). The OpenAPI
//   validator accepts every such form without looking further: openapi.yaml's TokenRequest is an
//   object of optional string properties with additional properties allowed (a test holds the
//   document to that). Any other body, or an error reading it, is handed to express with what was
//   read (tokenForm.ts: setReadAhead), and express answers it as it always has.
// Then the steps express would take, in the same terms: the interaction id (echoed or new), the
// security headers, Cache-Control and Pragma, the OAuth error shape, the token route's own work
// (routes/token.ts: tokenIssuer), the request metrics (route /token) and the request's log line;
// errors go to the one error mapper.
import type { Request, Response } from 'express';
import { ROUTE_LOCAL } from '../metrics.js';
import {
  acceptedCertificate,
  interactionIdOf,
  recordAnswer,
  type AheadOfExpressDeps,
  type AnswerAhead,
} from './aheadOfExpress.js';
import { TOKEN_FORM_LIMIT_BYTES, TOKEN_FORM_MAX_FIELDS } from './bodyPolicy.js';
import { createRequestContext } from './context.js';
import { errorMapper, OAUTH_ERROR_SHAPE } from './errorMapper.js';
import { INTERACTION_ID_HEADER } from './interactionId.js';
import { ACCEPTS_JSON } from './openapi.js';
import { parsePlainForm, plainBodyLength, readBody, setReadAhead } from './tokenForm.js';
import { NO_STORE_HEADERS, TOKEN_PATH, type TokenIssuer } from './routes/token.js';

export interface DirectTokenDeps extends AheadOfExpressDeps {
  issue: TokenIssuer;
}

/**
 * A plain token request is taken on; one whose body is not a plain form (or could not be read)
 * is handed to express with what was read.
 */
export function directToken(deps: DirectTokenDeps): AnswerAhead {
  const head = [...deps.securityHeaders, ...NO_STORE_HEADERS];
  return (req, res, express) => {
    if (req.method !== 'POST' || req.url !== TOKEN_PATH) return false;
    const accept = req.headers.accept;
    if (accept !== undefined && !ACCEPTS_JSON.has(accept)) return false;
    const length = plainBodyLength(req, TOKEN_FORM_LIMIT_BYTES);
    if (length === undefined) return false;
    const certificate = acceptedCertificate(deps, req);
    if (!certificate) return false;
    const started = performance.now();
    readBody(req, length, (err, bytes) => {
      const form = err ? undefined : parsePlainForm(bytes!, TOKEN_FORM_MAX_FIELDS);
      if (form === undefined || !Object.values(form).every((v) => typeof v === 'string')) {
        setReadAhead(req, err, bytes);
        express();
        return;
      }
      // From here on the request is ours, with what express would have set up for it.
      const ctx = createRequestContext(deps.logger, interactionIdOf(req));
      ctx.clientCertificate = certificate;
      const response = res as Response;
      // What express's own start of a request sets and its response helpers read.
      (req as Request).res = response;
      response.locals = { ctx, errorShape: OAUTH_ERROR_SHAPE, [ROUTE_LOCAL]: TOKEN_PATH };
      res.setHeader(INTERACTION_ID_HEADER, ctx.interactionId);
      for (const [name, value] of head) res.setHeader(name, value);
      res.on('finish', () =>
        recordAnswer(deps, () => ctx.log, {
          method: 'POST',
          path: TOKEN_PATH,
          status: res.statusCode,
          started,
        }),
      );
      const request = {
        form,
        certificate,
        hasAuthorizationHeader: req.headers.authorization !== undefined,
      };
      deps
        .issue(request, ctx)
        .then((body) => {
          response.status(200).json(body);
        })
        .catch((error: unknown) => {
          // Headers already sent (or the mapper failed): nothing more can be said on it.
          try {
            errorMapper(error, req as Request, response, () => res.destroy());
          } catch {
            res.destroy();
          }
        });
    });
    return true;
  };
}
