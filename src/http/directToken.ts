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
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, Response } from 'express';
import type { Logger } from '../logger.js';
import { ROUTE_LOCAL, type HttpRequestRecorder } from '../metrics.js';
import { TOKEN_FORM_LIMIT_BYTES, TOKEN_FORM_MAX_FIELDS } from './bodyPolicy.js';
import type { ClientCertificateCheck } from './clientCertificate.js';
import { createRequestContext } from './context.js';
import { errorMapper, OAUTH_ERROR_SHAPE } from './errorMapper.js';
import { INTERACTION_ID_HEADER, interactionIdFor, logRequest } from './interactionId.js';
import { ACCEPTS_JSON } from './openapi.js';
import { parsePlainForm, plainBodyLength, readBody, setReadAhead } from './tokenForm.js';
import { NO_STORE_HEADERS, TOKEN_PATH, type TokenIssuer } from './routes/token.js';

export interface DirectTokenDeps {
  issue: TokenIssuer;
  /** helmet's headers, in its order (securityHeaders.ts). */
  securityHeaders: readonly [string, string][];
  certificate: ClientCertificateCheck;
  logger: Logger;
  record?: HttpRequestRecorder | undefined;
}

/**
 * Takes on a plain token request and returns true, or returns false and leaves `req` untouched. A
 * request taken on whose body is not a plain form (or could not be read) is handed to `express`
 * with what was read.
 */
export type DirectToken = (
  req: IncomingMessage,
  res: ServerResponse,
  express: () => void,
) => boolean;

export function directToken(deps: DirectTokenDeps): DirectToken {
  const head = [...deps.securityHeaders, ...NO_STORE_HEADERS];
  const onIgnoredHeader = () => {
    throw new IgnoredHeader();
  };
  return (req, res, express) => {
    if (req.method !== 'POST' || req.url !== TOKEN_PATH) return false;
    const accept = req.headers.accept;
    if (accept !== undefined && !ACCEPTS_JSON.has(accept)) return false;
    const length = plainBodyLength(req, TOKEN_FORM_LIMIT_BYTES);
    if (length === undefined) return false;
    let certificate;
    try {
      certificate = deps.certificate(req, onIgnoredHeader);
    } catch {
      return false; // express refuses it (or logs the ignored header) as it always did
    }
    const started = performance.now();
    readBody(req, length, (err, bytes) => {
      const form = err ? undefined : parsePlainForm(bytes!, TOKEN_FORM_MAX_FIELDS);
      if (form === undefined || !Object.values(form).every((v) => typeof v === 'string')) {
        setReadAhead(req, err, bytes);
        express();
        return;
      }
      // From here on the request is ours, with what express would have set up for it.
      const ctx = createRequestContext(deps.logger, interactionIdFor(single(req.headers)));
      ctx.clientCertificate = certificate;
      const response = res as Response;
      // What express's own start of a request sets and its response helpers read.
      (req as Request).res = response;
      response.locals = { ctx, errorShape: OAUTH_ERROR_SHAPE, [ROUTE_LOCAL]: TOKEN_PATH };
      res.setHeader(INTERACTION_ID_HEADER, ctx.interactionId);
      for (const [name, value] of head) res.setHeader(name, value);
      res.on('finish', () => {
        const elapsed = () => performance.now() - started;
        deps.record?.(TOKEN_PATH, 'POST', res.statusCode, elapsed() / 1000);
        logRequest(deps.logger, () => ctx.log, {
          method: 'POST',
          path: TOKEN_PATH,
          status: res.statusCode,
          elapsedMs: elapsed,
        });
      });
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

/** A certificate header on a direct connection: express logs it (a warning) and answers. */
class IgnoredHeader extends Error {}

function single(headers: IncomingMessage['headers']): string | undefined {
  const value = headers[INTERACTION_ID_HEADER];
  return Array.isArray(value) ? value.join(', ') : value;
}
