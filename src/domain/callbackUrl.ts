// The CallbackUrl rules (OBIE Event Subscription: "must end with the version of the Event
// Notification API followed by /event-notifications"; §11.3), plus what a server that will POST
// to the URL must refuse:
//
// 1. at most 2,000 characters, an absolute URL that parses, written exactly as the WHATWG URL
//    serializer writes it (so no tool can read it as another host: `https:\\evil\\...`,
//    `https://2130706433/`, an upper-case host or a default port are refused, not normalised);
// 2. https only (push is TLS; the TPP's server certificate is checked);
// 3. no user name or password, no query, no fragment: we POST to the URL exactly as registered,
//    and it must end in `/event-notifications`;
// 4. the path ends with `/<version>/event-notifications`, where <version> names a release the way
//    OBIE paths do: `v3.1`, `v3.1.11`, `v4.0` (or the same without the `v`), of the same line as
//    the subscription's Version: a 4.0 subscription's URL ends in /v4.0/event-notifications;
// 5. the host, after DNS resolution, is public: loopback and private addresses only with
//    CALLBACK_ALLOW_PRIVATE_NETWORKS=true; link-local and metadata addresses never.
// Every failure is 400 UK.OBIE.Field.Invalid with Path `Data.CallbackUrl`. The message names the
// rule that failed and nothing else: never a DNS answer or an internal address (those are only
// logged, as the error's internal reason).
import { AppError, detail } from '../errors.js';
import {
  AddressRefusedError,
  HostUnresolvableError,
  describeCategory,
  resolveAndCheck,
  type LookupAll,
} from '../net/addressPolicy.js';
import { parseSubscriptionVersion, type ParsedVersion } from './versions.js';

export const CALLBACK_URL_PATH = 'Data.CallbackUrl';
export const CALLBACK_URL_MAX_LENGTH = 2_000;
const SUFFIX = /\/(v?\d\.\d(?:\.\d{1,2})?)\/event-notifications$/;

export interface CallbackUrlPolicy {
  allowPrivateNetworks: boolean;
  /** Injected in tests; default: the system resolver. */
  lookup?: LookupAll;
}

/** Resolves when `value` is an acceptable CallbackUrl; otherwise throws a 400 AppError. */
export async function assertValidCallbackUrl(
  value: string,
  policy: CallbackUrlPolicy,
): Promise<void> {
  const url = parseCallbackUrl(value);
  try {
    await resolveAndCheck(url.hostname, {
      allowPrivate: policy.allowPrivateNetworks,
      ...(policy.lookup ? { lookup: policy.lookup } : {}),
    });
  } catch (err) {
    if (err instanceof AddressRefusedError) {
      throw fail(
        'the CallbackUrl host must resolve to public addresses only',
        `${url.hostname} resolves to ${describeCategory(err.category)} (${err.address})`,
      );
    }
    if (err instanceof HostUnresolvableError) {
      throw fail('the CallbackUrl host does not resolve', err.message);
    }
    throw err;
  }
}

/** The syntactic rules (1-4), without DNS; `version`: the subscription's Version, parsed. */
export function parseCallbackUrl(value: string, version?: ParsedVersion): URL {
  if (value.length > CALLBACK_URL_MAX_LENGTH) {
    throw fail(`the CallbackUrl must be at most ${CALLBACK_URL_MAX_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw fail('the CallbackUrl must be an absolute URL');
  }
  if (url.href !== value) {
    throw fail(
      'the CallbackUrl must be written in canonical form: lower-case host, no default port, no backslashes, percent-encoding as the URL standard writes it',
    );
  }
  if (url.protocol !== 'https:') throw fail('the CallbackUrl must use https');
  if (url.username !== '' || url.password !== '') {
    throw fail('the CallbackUrl must not contain a user name or password');
  }
  if (url.search !== '' || url.hash !== '' || value.includes('?') || value.includes('#')) {
    throw fail('the CallbackUrl must not have a query or fragment');
  }
  const suffix = SUFFIX.exec(url.pathname)?.[1];
  const line = suffix === undefined ? undefined : parseSubscriptionVersion(suffix)?.line;
  if (!line) {
    throw fail(
      'the CallbackUrl must end with /<version>/event-notifications, e.g. https://tpp.example/open-banking/v3.1/event-notifications',
    );
  }
  if (version && line !== version.line) {
    const expected = `v${version.line.major}.${version.line.minor}`;
    throw fail(
      `the CallbackUrl of a Version ${version.major}.${version.minor} subscription must end with /${expected}/event-notifications (or a ${expected} release)`,
    );
  }
  return url;
}

function fail(message: string, internalReason?: string): AppError {
  return new AppError(
    'invalid_request',
    message,
    [detail('UK.OBIE.Field.Invalid', message, CALLBACK_URL_PATH)],
    internalReason,
  );
}
