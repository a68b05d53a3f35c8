// The contract: openapi/openapi.yaml (loaded as its generated twin openapi/openapi.json). Mounted
// once, ahead of every API route, as ordered steps:
//   1. acceptJson        Accept must allow application/json, else 406
//   2. jsonBody          JSON bodies parsed (64 KiB, else 413), raw bytes kept for x-jws-signature;
//                        the token endpoint's form body parsed as that route does (16 KiB)
//   3. jsonBytes         lets signed responses send their exact bytes through res.json
//   4. validator         express-openapi-validator: unknown path 404, wrong method 405 with Allow,
//                        body of another media type 415, then headers, path, query and body
//                        against the document, strictly (no coercion, no unknown query
//                        parameters, nothing removed); responses too when VALIDATE_RESPONSES=true
//   5. GET /open-banking/v3.1/openapi.json
//   6. tokenErrors       on /token, request validation failures are RFC 6749 invalid_request
// Validation failures go to the one error mapper (OBErrorResponse1, Path like Data.CallbackUrl).
// Authentication comes BEFORE this router (authenticateApiRequests in routes/index.ts); the document
// still marks Authorization optional, since the header has been checked by then.
import fs from 'node:fs';
import path from 'node:path';
import express, {
  Router,
  type ErrorRequestHandler,
  type Request,
  type RequestHandler,
} from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import { AppError, detail, OAuthError } from '../errors.js';
import { jsonBytes } from './jsonBytes.js';
import { assertStorableJson, verifyUtf8 } from './strictJson.js';

export const OPENAPI_PATH = '/open-banking/v3.1/openapi.json';
export const BODY_LIMIT_BYTES = 64 * 1024;
const TOKEN_PATH = '/token';

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
}

export function openApiRouter(opts: OpenApiRouterOptions): Router {
  const router = Router();
  router.use(acceptJson);
  router.use(jsonBody);
  router.use(TOKEN_PATH, tokenFormBody);
  router.use(jsonBytes());
  router.use(
    OpenApiValidator.middleware({
      apiSpec: structuredClone(opts.openApi.document) as never,
      validateApiSpec: true,
      validateRequests: {
        coerceTypes: false,
        allowUnknownQueryParameters: false,
        removeAdditional: false,
      },
      validateResponses: opts.validateResponses
        ? { coerceTypes: false, removeAdditional: false }
        : false,
      validateSecurity: false,
      validateFormats: true,
      ignoreUndocumented: false,
    }),
  );
  router.get(OPENAPI_PATH, (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.type('application/json').send(opts.openApi.text);
  });
  router.use(tokenErrors);
  return router;
}

/** The raw request body as received (what a detached JWS covers), when a JSON body was parsed. */
export function rawBody(req: Request): Buffer | undefined {
  return (req as Request & { rawBody?: Buffer }).rawBody;
}

const parseJson = express.json({
  limit: BODY_LIMIT_BYTES,
  verify: (req, res, buf) => {
    verifyUtf8(req, res, buf); // invalid UTF-8 is refused, never replaced (src/http/strictJson.ts)
    (req as unknown as { rawBody: Buffer }).rawBody = buf;
  },
});

// Only a body we accept is read: anything else is left for the validator to refuse (415). What
// Postgres text cannot hold (U+0000, lone surrogates) is refused here, before any route.
const jsonBody: RequestHandler = (req, res, next) => {
  if (!req.is('application/json')) {
    next();
    return;
  }
  parseJson(req, res, (err?: unknown) => {
    if (err !== undefined) {
      next(err);
      return;
    }
    try {
      assertStorableJson(req.body);
      next();
    } catch (refused) {
      next(refused);
    }
  });
};

// The same limits as the token route's own parser (src/http/routes/token.ts), which then finds
// the body already read.
const parseForm = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 });

const tokenFormBody: RequestHandler = (req, res, next) => {
  if (req.method === 'POST' && req.is('application/x-www-form-urlencoded'))
    parseForm(req, res, next);
  else next();
};

/** Every API response is JSON: an Accept that rules it out is 406. No Accept means anything. */
const acceptJson: RequestHandler = (req, _res, next) => {
  if (req.get('accept') === undefined || req.accepts('application/json')) {
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
