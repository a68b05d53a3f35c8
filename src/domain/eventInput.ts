// An event as a bank's system submits it: the one validation shared by the CLI
// (`events publish`), the admin API (`POST /admin/v1/events`) and the SQL outbox. Problems come
// back as a list of `{ path, message }`; callers map them to their own error shapes.
//
// Wire shape (JSON, camelCase; unknown members are refused):
//
//   {
//     "clientId": "tpp-1",                      required, 1–128: the TPP (SET `aud`)
//     "type": "UK.OBIE.Resource-Update",        required: an event type the bank offers
//                                               (SUPPORTED_EVENT_TYPES): a code or its
//                                               urn:uk:org:openbanking:events:* URN, kept as the
//                                               code; or an EXTENSION_EVENT_TYPES URN
//     "subject": {                              required: the affected resource (OBEventSubject1)
//       "id": "aac-1234",                       1–128 (`rid`)
//       "type": "account-access-consent",       1–128 (`rty`)
//       "links": [                              1–50 (`rlk`): every supported version of the resource
//         { "version": "v3.1",                  1–10, written as given ("3.1" or "v3.1")
//           "link": "https://bank.example/open-banking/v3.1/aisp/account-access-consents/aac-1234" }
//       ]                                       link: absolute http(s) URL, at most 2,000 characters
//     },
//     "sub": "https://…",                       optional absolute URI (≤ 2,000); default: the first link
//     "txn": "…",                               optional, 1–128; default (set by the publisher): the jti
//     "toe": 1700000000,                        optional time of event, whole seconds since the epoch
//                                               (0 … 2147483647, the schema's int32); default: now
//     "reason": "UK.OBIE.AccountClosure",       optional, see below
//     "withResourceUpdate": true,               optional, revocation types only, see below
//     "idempotencyKey": "…"                     optional, 1–200: the same key for the same client
//                                               publishes once
//   }
//
// Decisions (spec §7.4, §12 A17):
// - `reason` is accepted for UK.OBIE.Consent-Authorization-Revoked, UK.OBIE.Consent-Access-Revoked
//   and UK.OBIE.Account-Access-Consent-Linked-Account-Update, refused for UK.OBIE.Resource-Update.
//   It is an OBIE external code, not free text: a namespaced code (`NAMESPACE.Code`, segments of
//   letters, digits, `_` and `-`), 1–128 characters. The `UK.OBIE.` namespace is OBIE's: for the
//   linked-account type only its two defined codes (UK.OBIE.AccountClosure, UK.OBIE.CASS) are
//   accepted there; for the revocation types OBIE defines none, so a bank uses its own namespace
//   (e.g. `BANK.CustomerRequest`).
// - `withResourceUpdate: true` is accepted with the two revocation types: the SET then carries
//   resource-update (with the subject) and the revocation event (reason only, or `{}`), the CBPII
//   case of §7.4. `false` is accepted with any type and means the default.
// - Linked-account-update: §7.4 says `rty` must be `account-access-consent` while the subject
//   identifies the account (§12 A10). The subject is written as the publisher gives it, unchecked.
import { z } from 'zod';
import { EventTypeCatalog, type EventTypeCode } from './eventTypes.js';

export interface EventInput {
  clientId: string;
  type: EventTypeCode;
  subject: {
    id: string;
    type: string;
    links: { version: string; link: string }[];
  };
  /** Resolved: the given `sub`, else the first link (the publisher may pick a better one). */
  sub: string;
  /** True when the publisher gave `sub`; else the publisher picks the subscriber's version's link. */
  subGiven?: boolean;
  /** Absent: the publisher uses the jti. */
  txn?: string;
  /** Absent: the publisher uses the time of publishing. */
  toe?: number;
  reason?: string;
  /** True: the SET carries resource-update beside the revocation event. */
  withResourceUpdate: boolean;
  idempotencyKey?: string;
}

export interface InputProblem {
  /** Where in the submitted object, e.g. `subject.links[0].link`; '' for the object itself. */
  path: string;
  message: string;
}

export type EventInputResult =
  { ok: true; event: EventInput } | { ok: false; problems: InputProblem[] };

const INT32_MAX = 2_147_483_647;
const MAX_URL = 2_000;
const MAX_LINKS = 50;
const REASON_TYPES: ReadonlySet<EventTypeCode> = new Set<EventTypeCode>([
  'UK.OBIE.Consent-Authorization-Revoked',
  'UK.OBIE.Consent-Access-Revoked',
  'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
]);
const REVOCATION_TYPES: ReadonlySet<EventTypeCode> = new Set<EventTypeCode>([
  'UK.OBIE.Consent-Authorization-Revoked',
  'UK.OBIE.Consent-Access-Revoked',
]);
const LINKED_ACCOUNT_REASONS: ReadonlySet<string> = new Set([
  'UK.OBIE.AccountClosure',
  'UK.OBIE.CASS',
]);
const NAMESPACED_CODE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/;
// RFC 3986 characters only: what `format: uri` validators accept, and nothing a URL parser
// would silently rewrite (spaces, quotes, non-ASCII).
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/;

const text = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .min(1, { error: `must be 1–${max} characters` })
    .max(max, { error: `must be 1–${max} characters` });

const absoluteUri = (what: string, httpOnly: boolean) =>
  z
    .string({ error: 'must be a string' })
    .max(MAX_URL, { error: `must be at most ${MAX_URL} characters` })
    .refine((v) => isAbsoluteUri(v, httpOnly), { error: what });

const linkSchema = z.strictObject(
  {
    version: text(10),
    link: absoluteUri('must be an absolute http(s) URL', true),
  },
  { error: 'must be an object with version and link' },
);

const wireSchema = z.strictObject(
  {
    clientId: text(128),
    type: z.string({ error: 'must be a string' }),
    subject: z.strictObject(
      {
        id: text(128),
        type: text(128),
        links: z
          .array(linkSchema, { error: 'must be an array of links' })
          .min(1, { error: 'must hold at least one link' })
          .max(MAX_LINKS, { error: `must hold at most ${MAX_LINKS} links` }),
      },
      { error: 'must be an object with id, type and links' },
    ),
    sub: absoluteUri('must be an absolute URI', false).optional(),
    txn: text(128).optional(),
    toe: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be whole seconds since the epoch' })
      .min(0, { error: 'must not be negative' })
      .max(INT32_MAX, { error: `must be seconds since the epoch, at most ${INT32_MAX}` })
      .optional(),
    reason: text(128).optional(),
    withResourceUpdate: z.boolean({ error: 'must be true or false' }).optional(),
    idempotencyKey: text(200).optional(),
  },
  { error: 'must be a JSON object' },
);

type Wire = z.infer<typeof wireSchema>;

const ALL_STANDARD_TYPES = new EventTypeCatalog();

/**
 * Validates an event as submitted; never throws for bad input. A type the bank does not offer
 * (`catalog`, default: OBIE's four) is refused, not skipped.
 */
export function parseEventInput(
  raw: unknown,
  catalog: EventTypeCatalog = ALL_STANDARD_TYPES,
): EventInputResult {
  // reportInput: tells a missing member (input undefined) from a wrong one.
  const parsed = wireSchema.safeParse(raw, { reportInput: true });
  const problems = parsed.success ? [] : parsed.error.issues.flatMap(toProblems);
  // The type is checked even when other members are wrong, so one answer lists everything.
  const type = checkType(raw, problems, catalog);
  if (!parsed.success || !type) return { ok: false, problems };
  problems.push(...typeRules(parsed.data, type));
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, event: toEventInput(parsed.data, type) };
}

/** The event types a SET built from this input carries (for subscription filtering). */
export function setEventTypes(event: EventInput): EventTypeCode[] {
  return event.withResourceUpdate ? ['UK.OBIE.Resource-Update', event.type] : [event.type];
}

function checkType(
  raw: unknown,
  problems: InputProblem[],
  catalog: EventTypeCatalog,
): EventTypeCode | undefined {
  if (!isRecord(raw)) return undefined;
  const value = raw.type;
  if (typeof value !== 'string') {
    problems.push({
      path: 'type',
      message: value === undefined ? 'is required' : 'must be a string',
    });
    return undefined;
  }
  const code = catalog.toOffered(value);
  if (!code) {
    problems.push({
      path: 'type',
      message: `unsupported event type ${JSON.stringify(value.slice(0, 200))}: this bank offers ${catalog.codes().join(', ')} (an UK.OBIE.* code may also be given as its urn:uk:org:openbanking:events:* URN)`,
    });
  }
  return code;
}

function typeRules(wire: Wire, type: EventTypeCode): InputProblem[] {
  const problems: InputProblem[] = [];
  if (wire.reason !== undefined) {
    const reasonProblem = checkReason(wire.reason, type);
    if (reasonProblem) problems.push({ path: 'reason', message: reasonProblem });
  }
  if (wire.withResourceUpdate === true && !REVOCATION_TYPES.has(type)) {
    problems.push({
      path: 'withResourceUpdate',
      message: `is only allowed with UK.OBIE.Consent-Authorization-Revoked or UK.OBIE.Consent-Access-Revoked, not ${type}`,
    });
  }
  return problems;
}

function checkReason(reason: string, type: EventTypeCode): string | undefined {
  if (!REASON_TYPES.has(type)) return `is not allowed with ${type}`;
  if (!NAMESPACED_CODE.test(reason)) {
    return 'must be a namespaced code such as UK.OBIE.AccountClosure or BANK.CustomerRequest';
  }
  if (!reason.startsWith('UK.OBIE.')) return undefined;
  if (type === 'UK.OBIE.Account-Access-Consent-Linked-Account-Update') {
    return LINKED_ACCOUNT_REASONS.has(reason)
      ? undefined
      : 'OBIE defines only UK.OBIE.AccountClosure and UK.OBIE.CASS for this event type; use your own namespace for other reasons';
  }
  return `OBIE defines no UK.OBIE reason codes for ${type}; use your own namespace (e.g. BANK.CustomerRequest)`;
}

function toEventInput(wire: Wire, type: EventTypeCode): EventInput {
  const links = wire.subject.links.map(({ version, link }) => ({ version, link }));
  const event: EventInput = {
    clientId: wire.clientId,
    type,
    subject: { id: wire.subject.id, type: wire.subject.type, links },
    sub: wire.sub ?? links[0]!.link,
    withResourceUpdate: wire.withResourceUpdate ?? false,
  };
  if (wire.sub !== undefined) event.subGiven = true;
  if (wire.txn !== undefined) event.txn = wire.txn;
  if (wire.toe !== undefined) event.toe = wire.toe;
  if (wire.reason !== undefined) event.reason = wire.reason;
  if (wire.idempotencyKey !== undefined) event.idempotencyKey = wire.idempotencyKey;
  return event;
}

function toProblems(issue: z.core.$ZodIssue): InputProblem[] {
  // The type is checked on its own (checkType), with a better message than "must be a string".
  if (issue.path.length === 1 && issue.path[0] === 'type') return [];
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({
      path: formatPath([...issue.path, key]),
      message: 'is not a known member',
    }));
  }
  const missing =
    issue.code === 'invalid_type' && issue.input === undefined && issue.path.length > 0;
  return [{ path: formatPath(issue.path), message: missing ? 'is required' : issue.message }];
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => {
    if (typeof key === 'number') return `${out}[${key}]`;
    return out === '' ? String(key) : `${out}.${String(key)}`;
  }, '');
}

function isAbsoluteUri(value: string, httpOnly: boolean): boolean {
  if (!URI.test(value)) return false;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (!httpOnly) return true;
  // `https:///x` parses with host `x`: insist on an authority in the text itself.
  return /^https?:\/\/[^/?#]/i.test(value) && url.hostname !== '';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
