// One body policy per route of the API listener, each read only where its route says, AFTER
// that route has authenticated the caller (issue 12: no request body is parsed for a caller we
// have not authenticated, whatever the spelling of the path):
//
//   route                                    policy        limit     read after
//   POST/PUT /open-banking/v*/event-subscriptions, POST /open-banking/v*/events
//                                            obieJson      64 KiB    the access token (and scope)
//   POST /token                              tokenForm     16 KiB,   the mTLS certificate: the
//                                                          20 fields  body itself carries the
//                                                                    client authentication
//   everything else                          none: a body is never read
//
// A body of another media type is not read at all (the validator then answers 415).
import express, { type Request, type RequestHandler } from 'express';
import { assertStorableJson, verifyUtf8 } from './strictJson.js';
import { tokenFormReader } from './tokenForm.js';

export const OBIE_JSON_LIMIT_BYTES = 64 * 1024;
export const TOKEN_FORM_LIMIT_BYTES = 16 * 1024;
export const TOKEN_FORM_MAX_FIELDS = 20;

const parseObieJson = express.json({
  limit: OBIE_JSON_LIMIT_BYTES,
  // Keep the bytes: a detached x-jws-signature covers exactly what was received.
  verify: (req, res, buf) => {
    verifyUtf8(req, res, buf); // invalid UTF-8 is refused, never replaced (src/http/strictJson.ts)
    (req as unknown as { rawBody: Buffer }).rawBody = buf;
  },
});

/**
 * The OBIE APIs' JSON body (mounted by src/http/routes/obieApi.ts after authentication). What
 * Postgres text cannot hold (U+0000, lone surrogates) is refused here, before the route.
 */
export const obieJsonBody: RequestHandler = (req, res, next) => {
  if (!req.is('application/json')) {
    next();
    return;
  }
  parseObieJson(req, res, (err?: unknown) => {
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

/** The token endpoint's parser (src/http/routes/token.ts maps its errors to OAuth ones). */
export const parseTokenForm: RequestHandler = express.urlencoded({
  extended: false,
  limit: TOKEN_FORM_LIMIT_BYTES,
  parameterLimit: TOKEN_FORM_MAX_FIELDS,
});

// The plain form every TPP sends is read by src/http/tokenForm.ts; the rest by body-parser.
const readTokenForm = tokenFormReader({
  limitBytes: TOKEN_FORM_LIMIT_BYTES,
  maxFields: TOKEN_FORM_MAX_FIELDS,
  fallback: parseTokenForm,
});

/** The token endpoint's form body (POST /token only). */
export const tokenFormBody: RequestHandler = (req, res, next) => {
  if (req.method === 'POST' && req.is('application/x-www-form-urlencoded'))
    readTokenForm(req, res, next);
  else next();
};

/** The raw request body as received (what a detached JWS covers), when a JSON body was parsed. */
export function rawBody(req: Request): Buffer | undefined {
  return (req as Request & { rawBody?: Buffer }).rawBody;
}
