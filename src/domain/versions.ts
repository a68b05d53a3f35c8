// Versions, in one place: the OBIE Read/Write API versions we serve, the subscription `Version`
// values each accepts, and the release-management rules between them (OBIE Event Subscription,
// "Release Management"; DECISIONS.md "Older-version access").
//
// - We serve two API versions: 3.1 (shapes of 3.1.11) under /open-banking/v3.1 and 4.0 under
//   /open-banking/v4.0. Their request and response bodies are the same; the error model differs
//   (src/http/apiProfiles.ts).
// - A subscription's `Version` is the event-notification version the TPP works with: a 3.1
//   release (`3.1`, `3.1.0` … `3.1.11`) or a 4.0 one (`4.0`, `4.0.0` … ), optionally written with
//   a leading `v`. It is stored and returned exactly as given. Through an API version, a
//   subscription may carry that version or an older one (a 3.1 subscription is replaced through
//   v4.0 with its fields unchanged), never a newer one.
// - Below 3.1.2 (`3.1.0`, `3.1.1`) only resource-update events exist (OBIE Event Notification,
//   Backwards Compatibility). `3.1` without a patch level means the current 3.1 release.
// - Release management: a subscription may be used through the API version it was created on or a
//   newer one, never an older one (src/domain/subscriptions.ts refuses it, 403).
// Adding v4.1: a new entry in API_VERSIONS (and its profile in src/http/apiProfiles.ts).

export interface ApiVersion {
  /** As in paths: `v3.1`. Stored with each subscription (event_subscriptions.api_version). */
  id: string;
  major: number;
  minor: number;
  /** Highest patch level of a subscription `Version` in this line (`3.1.11`). */
  latestPatch: number;
}

export const V3_1: ApiVersion = { id: 'v3.1', major: 3, minor: 1, latestPatch: 11 };
export const V4_0: ApiVersion = { id: 'v4.0', major: 4, minor: 0, latestPatch: 0 };

/** Every API version we serve, oldest first. */
export const API_VERSIONS: readonly ApiVersion[] = [V3_1, V4_0];

/** The base path of an API version: `/open-banking/v3.1`. */
export function basePathOf(version: ApiVersion): string {
  return `/open-banking/${version.id}`;
}

export function apiVersionById(id: string): ApiVersion | undefined {
  return API_VERSIONS.find((v) => v.id === id);
}

/** Ordering of API versions: negative when `a` is older than `b`. */
export function compareApiVersions(a: ApiVersion, b: ApiVersion): number {
  return a.major - b.major || a.minor - b.minor;
}

export interface ParsedVersion {
  /** The API version line the value belongs to. */
  line: ApiVersion;
  major: number;
  minor: number;
  /** undefined for plain `3.1`: the current release of the line. */
  patch: number | undefined;
}

const VERSION = /^v?(\d)\.(\d)(?:\.(\d{1,2}))?$/;

/** The parsed version when it names a release of a line we serve; undefined otherwise. */
export function parseSubscriptionVersion(version: string): ParsedVersion | undefined {
  const m = VERSION.exec(version);
  if (!m) return undefined;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const line = API_VERSIONS.find((v) => v.major === major && v.minor === minor);
  if (!line) return undefined;
  if (m[3] === undefined) return { line, major, minor, patch: undefined };
  const patch = Number(m[3]);
  if (patch > line.latestPatch || (m[3].length > 1 && m[3].startsWith('0'))) return undefined;
  return { line, major, minor, patch };
}

/** A subscription `Version` usable through `api`: a release of that line or an older one. */
export function parseVersionFor(version: string, api: ApiVersion): ParsedVersion | undefined {
  const parsed = parseSubscriptionVersion(version);
  return parsed && compareApiVersions(parsed.line, api) <= 0 ? parsed : undefined;
}

/** A human-readable list for error messages and the README. */
export function acceptedVersionsText(api: ApiVersion): string {
  return API_VERSIONS.filter((v) => compareApiVersions(v, api) <= 0)
    .map(
      (v) =>
        `${v.major}.${v.minor} or ${v.major}.${v.minor}.0 to ${v.major}.${v.minor}.${v.latestPatch}`,
    )
    .join(', or ')
    .concat(' (optionally with a leading v)');
}

/** The 3.1 line's text (kept for callers that only know v3.1). */
export const ACCEPTED_VERSIONS_TEXT = acceptedVersionsText(V3_1);

/** True for `3.1.0` and `3.1.1`: subscriptions that get resource-update events only. */
export function isBefore312(version: string): boolean {
  const parsed = parseSubscriptionVersion(version);
  return parsed?.line === V3_1 && parsed.patch !== undefined && parsed.patch < 2;
}

/**
 * Release management: a subscription created through `createdOn` may be read, replaced and
 * deleted through `through` when that is the same or a newer API version.
 */
export function reachableThrough(createdOn: ApiVersion, through: ApiVersion): boolean {
  return compareApiVersions(createdOn, through) <= 0;
}
