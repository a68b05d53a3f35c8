// The OpenAPI document each API version serves and validates against, from the one document we
// write (openapi/openapi.yaml: the root paths and v3.1):
//
// - every document lists the event types this bank offers (SUPPORTED_EVENT_TYPES and
//   EXTENSION_EVENT_TYPES) as the enum of `OBEventType1Code`, the `Url` of Unsupported.EventType;
// - v4.0 (OBIE Read/Write 4.0 events-openapi): the same operations under /open-banking/v4.0, the
//   same request and response bodies, and 4.0's error model: `OBErrorResponse1` requires only
//   `Errors`, `OBError1` only `ErrorCode`, a 4-character OBExternalStatusReason1Code; a 401 may
//   carry that body (expired token, the v4.0 profile; the official file declares none); the
//   optional `payload-version` request header (accepted, see README "Versions").
import type { ApiProfile } from './apiProfiles.js';
import type { OpenApiDocument } from './openapi.js';

type Json = Record<string, unknown>;

export interface DocumentOptions {
  /** Every event type code the bank offers, standard ones first. */
  eventTypes: readonly string[];
}

/** The document served at `${profile.basePath}/openapi.json` (the v3.1 one covers the root paths). */
export function documentFor(
  base: OpenApiDocument,
  profile: ApiProfile,
  opts: DocumentOptions,
): OpenApiDocument {
  const doc = structuredClone(base.document);
  setEventTypes(doc, opts.eventTypes);
  if (profile.version.major >= 4) toV4(doc, profile);
  return { document: doc, text: JSON.stringify(doc) };
}

function setEventTypes(doc: Json, eventTypes: readonly string[]): void {
  const schema = schemas(doc).OBEventType1Code as Json;
  schema.enum = [...eventTypes];
}

const FROM = '/open-banking/v3.1/';

function toV4(doc: Json, profile: ApiProfile): void {
  const info = doc.info as Json;
  info.version = profile.documentVersion;
  info.description = V4_DESCRIPTION;

  const paths: Json = {};
  for (const [path, item] of Object.entries(doc.paths as Json)) {
    if (!path.startsWith(FROM)) continue; // discovery, JWKS and token live in the v3.1 document
    const renamed = `${profile.basePath}/${path.slice(FROM.length)}`;
    for (const op of Object.values(item as Json) as Json[]) {
      if ((op.requestBody as Json | undefined) !== undefined) {
        (op.parameters as Json[]).push({ $ref: '#/components/parameters/payload-version' });
      }
    }
    paths[renamed] = item;
  }
  doc.paths = paths;

  const components = doc.components as Json;
  (components.parameters as Json)['payload-version'] = {
    in: 'header',
    name: 'payload-version',
    required: false,
    description:
      'OBIE 4.0 migration aid: the payload version the TPP sends. Accepted and logged; the event APIs have the same payloads in 3.1.11 and 4.0, so it changes nothing.',
    schema: { type: 'string', minLength: 1, maxLength: 40 },
  };
  const responses = components.responses as Json;
  // The token endpoint's responses (OAuth-shaped) belong to the root paths, not to v4.0.
  for (const name of Object.keys(responses))
    if (name === '200ServerMetadata' || name.endsWith('OAuthError')) delete responses[name];
  const unauthorized = responses['401Error'] as Json;
  unauthorized.description =
    'Unauthorized (WWW-Authenticate: Bearer error="invalid_token"). No body for a missing or invalid token; an expired token gets an OBErrorResponse1 body (OBIE 4.0 profile).';
  unauthorized.content = {
    'application/json; charset=utf-8': {
      schema: { $ref: '#/components/schemas/OBErrorResponse1' },
    },
  };

  const s = schemas(doc);
  for (const name of ['ServerMetadata', 'JsonWebKeySet', 'TokenRequest', 'TokenResponse']) {
    delete s[name];
  }
  delete s.OAuthErrorResponse;
  s.OBExternalStatusReason1Code = {
    description:
      'Low level textual error code (OBExternalStatusReason1Code, OpenBankingUK External_Internal_CodeSets), e.g. U002 for a field that is invalid.',
    type: 'string',
    minLength: 4,
    maxLength: 4,
  };
  s.OBError1 = {
    type: 'object',
    properties: {
      ErrorCode: { $ref: '#/components/schemas/OBExternalStatusReason1Code' },
      Message: {
        description: 'A description of the error that occurred.',
        type: 'string',
        minLength: 1,
        maxLength: 500,
      },
      Path: {
        description: 'The JSON path of the field with the error, or the header name.',
        type: 'string',
        minLength: 1,
        maxLength: 500,
      },
      Url: { description: 'Where to read more.', type: 'string' },
    },
    required: ['ErrorCode'],
    additionalProperties: false,
    minProperties: 1,
  };
  s.OBErrorResponse1 = {
    description:
      'An array of detail error codes, and messages, and URLs to documentation to help remediation.',
    type: 'object',
    properties: {
      Id: { type: 'string', minLength: 1, maxLength: 40 },
      Code: {
        description: 'Deprecated (never sent).',
        type: 'string',
        minLength: 1,
        maxLength: 40,
      },
      Message: {
        description: 'Deprecated (never sent).',
        type: 'string',
        minLength: 1,
        maxLength: 500,
      },
      Errors: { type: 'array', minItems: 1, items: { $ref: '#/components/schemas/OBError1' } },
    },
    required: ['Errors'],
    additionalProperties: false,
  };
}

function schemas(doc: Json): Json {
  return (doc.components as Json).schemas as Json;
}

const V4_DESCRIPTION = `The UK Open Banking (OBIE Read/Write 4.0) Event Subscription and Aggregated Polling APIs of
ob-events. The request and response bodies are OBIE 4.0's (events-openapi.yaml), which are those
of 3.1.11; errors follow the 4.0 model (OBErrorResponse1 with only Errors required, ErrorCode a
4-character OBExternalStatusReason1Code such as U002).

Every request is validated against this document after its access token was checked.

Transport: mutual TLS; FAPI 1 Advanced. Authentication: a client-credentials access token bound to
the client certificate (RFC 8705), from the token endpoint of the v3.1 document
(/open-banking/v3.1/openapi.json), with one of the scopes accounts, payments,
fundsconfirmations (eventpolling too on /events).

Differences from the OBIE file, all outside the body schemas:
- full paths instead of a /open-banking/v4.0 server base;
- Authorization and x-jws-signature are marked optional for the validator: a missing token is 401,
  a missing signature 400 U019;
- a 401 for an expired access token carries an OBErrorResponse1 body (the 4.0 profile; the file
  declares none); a missing or invalid token gets none;
- requests are JSON only; application/jose+jwe is answered 415;
- release management: a subscription created through v3.1 is read, replaced and deleted here with
  its fields (Version included) unchanged; one created here is refused through v3.1 (403);
- OBEventType1Code lists the event types this bank offers (the Url of U024 errors points here).`;
