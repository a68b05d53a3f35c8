// The API version as one seam: a small profile per OBIE Read/Write version we serve, chosen by
// the route (src/http/routes/obieApi.ts mounts the same handlers once per profile). Nothing else
// asks "which version is this?": handlers read the profile, the error mapper its error model.
//
//   profile   base path            error model                        rules (src/domain/versions.ts)
//   v3.1      /open-banking/v3.1   3.1.11 OBErrorResponse1, UK.OBIE.*  Version 3.1.x
//   v4.0      /open-banking/v4.0   4.0 OBErrorResponse1, U-codes;      Version 3.1.x or 4.0.x;
//                                  401 with a body for expired tokens  reaches v3.1 subscriptions
//
// Adding v4.1: its ApiVersion in src/domain/versions.ts, a profile here (error model, document
// changes), and tests.
import type { Response } from 'express';
import { basePathOf, V3_1, V4_0, type ApiVersion } from '../domain/versions.js';
import { V3_1_ERRORS, V4_0_ERRORS, type ErrorModel } from './errorModels.js';

export interface ApiProfile {
  version: ApiVersion;
  /** `/open-banking/v4.0`. */
  basePath: string;
  errors: ErrorModel;
  /** The `info.version` of the OpenAPI document served for this version. */
  documentVersion: string;
  /** Accepts the optional `payload-version` header (v4.0 migration aid). */
  payloadVersionHeader: boolean;
}

export const V3_1_PROFILE: ApiProfile = {
  version: V3_1,
  basePath: basePathOf(V3_1),
  errors: V3_1_ERRORS,
  documentVersion: '3.1.11',
  payloadVersionHeader: false,
};

export const V4_0_PROFILE: ApiProfile = {
  version: V4_0,
  basePath: basePathOf(V4_0),
  errors: V4_0_ERRORS,
  documentVersion: '4.0.0',
  payloadVersionHeader: true,
};

/** Every profile served, oldest first. */
export const API_PROFILES: readonly ApiProfile[] = [V3_1_PROFILE, V4_0_PROFILE];

/** The profile of the request's route; v3.1's shape for everything outside a versioned path. */
export function profileOf(res: Response): ApiProfile {
  return (res.locals.apiProfile as ApiProfile | undefined) ?? V3_1_PROFILE;
}

export function selectProfile(res: Response, profile: ApiProfile): void {
  res.locals.apiProfile = profile;
}
