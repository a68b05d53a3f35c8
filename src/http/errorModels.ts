// The error body of each OBIE API version: what the one error mapper (src/http/errorMapper.ts)
// sends, chosen by the route's API profile (src/http/apiProfiles.ts). Domain code raises errors
// with the 3.1 `UK.OBIE.*` names (src/errors.ts); a model turns them into its version's body.
//
// - v3.1: OBErrorResponse1 of 3.1.11: `Code` ("400 Bad Request"), `Message`, `Errors[]` with
//   `ErrorCode` (UK.OBIE.*) and `Message` required; a 401 has no body.
// - v4.0: OBErrorResponse1 of 4.0: only `Errors` (and `Id`), each with a 4-character
//   `ErrorCode` from the OBExternalStatusReason1Code codeset (U000…U029, mapped below from the
//   codeset's own table of old names); the deprecated `Code`/`Message` are left out. A 401 for an
//   expired access token has a body (the v4.0 profile), a missing or invalid token none.
import { STATUS_CODES } from 'node:http';
import type { ErrorDetail, ObErrorCode, UnauthenticatedError } from '../errors.js';

export interface ErrorModel {
  /** OBErrorResponse1 of this version. */
  body(status: number, message: string, details: ErrorDetail[], interactionId?: string): object;
  /** The body of a 401, or undefined for none. */
  unauthenticatedBody(err: UnauthenticatedError, interactionId?: string): object | undefined;
}

export interface ObErrorResponse {
  Code: string;
  Id?: string;
  Message: string;
  Errors: { ErrorCode: string; Message: string; Path?: string; Url?: string }[];
}

/** The 3.1.11 body, byte for byte as it has always been. */
export function obErrorBody(
  status: number,
  message: string,
  details: ErrorDetail[],
  interactionId?: string,
): ObErrorResponse {
  const body: ObErrorResponse = {
    Code: `${status} ${STATUS_CODES[status] ?? 'Error'}`.slice(0, 40),
    Message: clip(message, 500),
    Errors: details.map((d) => {
      const e: ObErrorResponse['Errors'][number] = {
        ErrorCode: d.errorCode,
        Message: clip(d.message, 500),
      };
      if (d.path) e.Path = clip(d.path, 500);
      if (d.url) e.Url = d.url;
      return e;
    }),
  };
  if (interactionId) body.Id = interactionId.slice(0, 40);
  return body;
}

export const V3_1_ERRORS: ErrorModel = {
  body: obErrorBody,
  unauthenticatedBody: () => undefined,
};

/**
 * OBExternalStatusReason1Code (OpenBankingUK/External_Internal_CodeSets, OB_Internal_Codeset):
 * the U-code of each 3.1 name we raise, exactly as the codeset pairs them.
 */
export const U_CODES: Record<ObErrorCode, string> = {
  'UK.OBIE.UnexpectedError': 'U000',
  'UK.OBIE.Field.Expected': 'U001',
  'UK.OBIE.Field.Invalid': 'U002',
  'UK.OBIE.Field.Missing': 'U004',
  'UK.OBIE.Field.Unexpected': 'U005',
  'UK.OBIE.Header.Invalid': 'U006',
  'UK.OBIE.Header.Missing': 'U007',
  'UK.OBIE.Resource.ConsentMismatch': 'U008',
  'UK.OBIE.Resource.InvalidFormat': 'U010',
  'UK.OBIE.Resource.NotFound': 'U011',
  'UK.OBIE.Signature.Invalid': 'U015',
  'UK.OBIE.Signature.InvalidClaim': 'U016',
  'UK.OBIE.Signature.MissingClaim': 'U017',
  'UK.OBIE.Signature.Malformed': 'U018',
  'UK.OBIE.Signature.Missing': 'U019',
  'UK.OBIE.Signature.Unexpected': 'U020',
  'UK.OBIE.Unsupported.EventType': 'U024',
  'UK.OBIE.Rules.ResourceAlreadyExists': 'U029',
};

export interface ObErrorResponseV4 {
  Id?: string;
  Errors: { ErrorCode: string; Message?: string; Path?: string; Url?: string }[];
}

export function obErrorBodyV4(
  _status: number,
  _message: string,
  details: ErrorDetail[],
  interactionId?: string,
): ObErrorResponseV4 {
  const body: ObErrorResponseV4 = {
    Errors: details.map((d) => {
      const e: ObErrorResponseV4['Errors'][number] = {
        ErrorCode: U_CODES[d.errorCode],
        Message: clip(d.message, 500),
      };
      if (d.path) e.Path = clip(d.path, 500);
      if (d.url) e.Url = d.url;
      return e;
    }),
  };
  if (interactionId) body.Id = interactionId.slice(0, 40);
  return body;
}

export const V4_0_ERRORS: ErrorModel = {
  body: obErrorBodyV4,
  // v4.0 profile: an expired token is answered with an error body; the codeset has no code of
  // its own for it, so it is U006 (Header.Invalid) with Path Authorization.
  unauthenticatedBody: (err, interactionId) =>
    err.expired
      ? obErrorBodyV4(
          401,
          'access token expired',
          [
            {
              errorCode: 'UK.OBIE.Header.Invalid',
              message: 'the access token has expired: get a new one',
              path: 'Authorization',
            },
          ],
          interactionId,
        )
      : undefined,
};

function clip(s: string, max: number): string {
  const t = s.length === 0 ? 'error' : s;
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}
