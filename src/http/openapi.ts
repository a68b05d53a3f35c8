// The contract: openapi/openapi.yaml (loaded as its generated twin openapi/openapi.json), the
// document of the root paths and of v3.1; the v4.0 document is derived from it
// (src/http/openapiDocuments.ts). Mounted once, ahead of every API route, as ordered steps:
//   1. the OBIE paths    /open-banking/... leave here for their version's router
//                        (src/http/routes/obieApi.ts), which checks Accept once its error model
//                        is chosen and validates inside its own routes, after the access token
//                        and the body: no body is read before authentication, and the root
//                        document's steps and routers (discovery, token) cost them nothing
//   2. acceptJson        Accept must allow application/json, else 406
//   3. tokenFormBody     the token endpoint's form body (POST /token only; src/http/bodyPolicy.ts)
//   4. validator         the root paths (discovery, JWKS, token) against the document: unknown
//                        path 404, wrong method 405 with Allow, then the request, strictly (no
//                        coercion, no unknown query parameters, nothing removed); responses too
//                        when VALIDATE_RESPONSES=true (then with jsonBytes ahead of it, which
//                        lets signed responses send their exact bytes through res.json)
//   5. tokenErrors       on /token, request validation failures are RFC 6749 invalid_request
// Validation failures go to the one error mapper (OBErrorResponse1, Path like Data.CallbackUrl).
import fs from 'node:fs';
import path from 'node:path';
import { Router, type ErrorRequestHandler, type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import { AppError, detail, OAuthError } from '../errors.js';
import { OBIE_JSON_LIMIT_BYTES, tokenFormBody } from './bodyPolicy.js';
import { inSequence } from './inSequence.js';
import { jsonBytes } from './jsonBytes.js';
import { TOKEN_PATH } from './routes/token.js';
import { memoiseValidatorRouteRegexps } from './validatorRouteCache.js';

export { rawBody } from './bodyPolicy.js';
export const OPENAPI_PATH = '/open-banking/v3.1/openapi.json';
export const BODY_LIMIT_BYTES = OBIE_JSON_LIMIT_BYTES;
/** Paths validated by their own routes (src/http/routes/obieApi.ts), in any spelling. */
const OBIE_PATHS = /^\/open-banking(\/|$)/i;

export interface OpenApiDocument {
  /** The parsed document (never handed to the validator itself: it mutates what it is given). */
  document: Record<string, unknown>;
  /** The document as served. */
  text: string;
}

/** Reads openapi/openapi.json from the package root (src/http or dist/src/http). */
export function loadOpenApiDocument(from = import.meta.dirname): OpenApiDocument {
  let dir = from;
  for (let i = 0; i < 5; i++) {
    const file = path.join(dir, 'openapi', 'openapi.json');
    if (fs.existsSync(file)) {
      const document = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      return { document, text: JSON.stringify(document) };
    }
    dir = path.dirname(dir);
  }
  throw new Error(`openapi/openapi.json not found above ${from}: run \`npm run openapi:types\``);
}

export interface OpenApiRouterOptions {
  openApi: OpenApiDocument;
  /** VALIDATE_RESPONSES: check every response against the document (tests, staging). */
  validateResponses: boolean;
  /**
   * The OBIE version routers (src/http/routes/obieApi.ts): an /open-banking/ request goes there
   * straight after Accept, and never meets the root paths' form parser, validator or routers.
   */
  obieApis: RequestHandler;
}

export function openApiRouter(opts: OpenApiRouterOptions): Router {
  const router = Router({ caseSensitive: true });
  router.use(obieApisFirst(opts.obieApis));
  router.use(acceptJson);
  router.post(TOKEN_PATH, tokenFormBody);
  // One step (not one router layer per validator middleware), and no nested router: a router
  // that a request leaves unanswered hands it on through setImmediate.
  // `ignorePaths` as well: an OBIE path in another spelling is never validated against the root.
  const rootPaths = (path: string) => !OBIE_PATHS.test(path);
  router.use(
    inSequence(openApiValidator(opts.openApi, opts.validateResponses, OBIE_PATHS, rootPaths)),
  );
  router.use(tokenErrors);
  return router;
}

/** /open-banking/… (any spelling) to the OBIE version routers; the root paths go on. */
function obieApisFirst(obieApis: RequestHandler): RequestHandler {
  return (req, res, next) => {
    if (OBIE_PATHS.test(req.path)) obieApis(req, res, next);
    else next();
  };
}

/**
 * express-openapi-validator over `openApi`, strictly. Mounted for the root paths (`ignore`: the
 * OBIE paths; `paths`: the root ones) and inside each OBIE route, after its body was read
 * (`paths`: its version's). No multipart step: no
 * operation takes multipart, so multer never runs (its step was one more hop per request).
 * jsonBytes only when responses are validated: otherwise nothing wraps res.json and
 * sendPreparedJson sends its bytes directly.
 */
export function openApiValidator(
  openApi: OpenApiDocument,
  validateResponses: boolean,
  ignore?: RegExp,
  paths?: (path: string) => boolean,
): RequestHandler[] {
  memoiseValidatorRouteRegexps();
  const validator = OpenApiValidator.middleware({
    apiSpec: withPaths(structuredClone(openApi.document), paths) as never,
    validateApiSpec: true,
    validateRequests: {
      coerceTypes: false,
      allowUnknownQueryParameters: false,
      removeAdditional: false,
    },
    validateResponses: validateResponses ? { coerceTypes: false, removeAdditional: false } : false,
    validateSecurity: false,
    validateFormats: true,
    fileUploader: false,
    ignoreUndocumented: false,
    ...(ignore ? { ignorePaths: ignore } : {}),
  }) as RequestHandler[];
  const steps = validator.filter((step) => !NO_OP_STEPS.has(step.name));
  return validateResponses ? [jsonBytes(), ...steps] : steps;
}

/**
 * The document with only the paths this validator can be asked about (`paths`): it looks a
 * request's route up by trying each path of its document in turn, on every request.
 */
function withPaths(
  document: Record<string, unknown>,
  paths: ((path: string) => boolean) | undefined,
): Record<string, unknown> {
  if (!paths) return document;
  const all = document.paths as Record<string, unknown>;
  return {
    ...document,
    paths: Object.fromEntries(Object.entries(all).filter(([path]) => paths(path))),
  };
}

/**
 * The validator's steps that do nothing here, each one more promise hop per request:
 * security (validateSecurity is off: the access token has its own step) and path parameters
 * (app.param callbacks, which only reach routes on the app itself; every route here is on a
 * router of its own, and the request step sets the path parameters it validated).
 */
const NO_OP_STEPS = new Set(['securityMiddleware', 'pathParamsMiddleware']);

/** Accept values that plainly allow application/json (the fixed responses take only these). */
export const ACCEPTS_JSON: ReadonlySet<string> = new Set([
  '*/*',
  'application/json',
  'application/*',
]);

/**
 * Every API response is JSON: an Accept that rules it out is 406. No Accept means anything. The
 * OBIE versions run it as their second step, once their error model is chosen (obieApi.ts).
 */
export const acceptJson: RequestHandler = (req, _res, next) => {
  const accept = req.headers.accept;
  // What curl, fetch and most SDKs send is settled without parsing (negotiator) every time.
  if (accept === undefined || ACCEPTS_JSON.has(accept) || req.accepts('application/json')) {
    next();
    return;
  }
  const message = 'this API answers application/json only';
  next(
    new AppError('not_acceptable', message, [detail('UK.OBIE.Header.Invalid', message, 'Accept')]),
  );
};

/**
 * RFC 6749 §5.2: the token endpoint reports a request it cannot read or that does not match the
 * document (wrong media type, unreadable or oversized form) as invalid_request.
 */
const tokenErrors: ErrorRequestHandler = (err: unknown, req, _res, next) => {
  const status = (err as { status?: unknown } | null)?.status;
  if (req.path === TOKEN_PATH && (status === 400 || status === 413 || status === 415)) {
    next(new OAuthError('invalid_request', 'the token request is malformed', String(err)));
    return;
  }
  next(err);
};
