// Versions, in one place (DECISIONS.md "Older-version access"): the API version we serve and the
// subscription `Version` values we accept.
//
// - We serve one API version, OBIE Read/Write 3.1 (shapes of 3.1.11) under /open-banking/v3.1.
// - A subscription's `Version` is the event-notification version the TPP works with: `3.1` (the
//   3.1 line as we serve it, i.e. 3.1.11) or a 3.1 release `3.1.0` … `3.1.11`, optionally written
//   with a leading `v`. It is stored and returned exactly as given.
// - Below 3.1.2 (`3.1.0`, `3.1.1`) only resource-update events exist (OBIE Event Notification,
//   Backwards Compatibility). `3.1` without a patch level means the current 3.1 release: the
//   OBIE example subscribes `"Version": "3.1"` to consent-authorization-revoked.
// - Cross-version access (OBIE §Release Management, A14): a subscription may be used through the
//   same or a newer API version, never an older one. With only v3.1 served there is no older or
//   newer path to refuse; a second API version adds its check here.

/** The API version of every path we serve (`/open-banking/v3.1/...`). */
export const SERVED_API_VERSION = 'v3.1';

const LATEST_PATCH = 11;
const VERSION = /^v?3\.1(?:\.(\d{1,2}))?$/;

export interface ParsedVersion {
  major: 3;
  minor: 1;
  /** undefined for plain `3.1`: the current 3.1 release. */
  patch: number | undefined;
}

/** The parsed version when it is one we serve; undefined otherwise. */
export function parseSubscriptionVersion(version: string): ParsedVersion | undefined {
  const m = VERSION.exec(version);
  if (!m) return undefined;
  if (m[1] === undefined) return { major: 3, minor: 1, patch: undefined };
  const patch = Number(m[1]);
  if (patch > LATEST_PATCH || (m[1].length > 1 && m[1].startsWith('0'))) return undefined;
  return { major: 3, minor: 1, patch };
}

/** A human-readable list for error messages and the README. */
export const ACCEPTED_VERSIONS_TEXT = `3.1 or 3.1.0 to 3.1.${LATEST_PATCH} (optionally with a leading v)`;

/** True for `3.1.0` and `3.1.1`: subscriptions that get resource-update events only. */
export function isBefore312(version: string): boolean {
  const parsed = parseSubscriptionVersion(version);
  return parsed?.patch !== undefined && parsed.patch < 2;
}
