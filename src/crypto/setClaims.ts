// The claims of a Security Event Token exactly as OBIE's OBEventNotification2 (spec §7.2–7.4):
// what a SET says, byte for byte once serialised. Pure: no clock, no ids, no keys.
//
// Event payloads, keyed by event URN:
// - resource-update:                 { subject }                      (subject required)
// - consent-authorization-revoked:   { reason?, subject }             alone in the SET (AIS, VRP
//                                                                     cancellation): subject required
//                                    { reason? } beside resource-update (CBPII, `withResourceUpdate`):
//                                                                     resource-update carries the subject,
//                                                                     the revocation may be `{}` (§7.4)
// - consent-access-revoked:          OBIE publishes no model (§12 A17); we give it the shape of
//                                    consent-authorization-revoked, the closest modelled event,
//                                    including the `withResourceUpdate` form.
// - account-access-consent-linked-account-update: { reason?, subject } (subject required)
//
// Member order is fixed (iss, iat, jti, aud, sub, txn, toe, events; subject_type, rid, rty, rlk;
// version, link), so the same input always serialises to the same bytes.
import { eventUrn, type EventTypeCode } from '../domain/eventTypes.js';

export const SUBJECT_TYPE = 'http://openbanking.org.uk/rid_http://openbanking.org.uk/rty';
const RID = 'http://openbanking.org.uk/rid';
const RTY = 'http://openbanking.org.uk/rty';
const RLK = 'http://openbanking.org.uk/rlk';
const INT32_MAX = 2_147_483_647;

const REVOCATION_TYPES: ReadonlySet<EventTypeCode> = new Set<EventTypeCode>([
  'UK.OBIE.Consent-Authorization-Revoked',
  'UK.OBIE.Consent-Access-Revoked',
]);

export interface SetSubjectLink {
  version: string;
  link: string;
}

/** The affected resource, as the publisher names it. */
export interface SetSubjectInput {
  id: string;
  type: string;
  links: SetSubjectLink[];
}

/** OBEventSubject1. */
export interface ObEventSubject {
  subject_type: typeof SUBJECT_TYPE;
  'http://openbanking.org.uk/rid': string;
  'http://openbanking.org.uk/rty': string;
  'http://openbanking.org.uk/rlk': SetSubjectLink[];
}

export interface ObEventPayload {
  reason?: string;
  subject?: ObEventSubject;
}

/** OBEventNotification2. */
export interface SetClaims {
  iss: string;
  iat: number;
  jti: string;
  aud: string;
  sub: string;
  txn: string;
  toe: number;
  events: Record<string, ObEventPayload>;
}

export interface SetClaimsInput {
  /** PUBLIC_URL. */
  iss: string;
  /** The TPP's client_id. */
  aud: string;
  jti: string;
  /** Seconds since the epoch, integer. */
  iat: number;
  /** Time of event, seconds since the epoch, integer. */
  toe: number;
  /** URI of the affected resource. */
  sub: string;
  txn: string;
  eventType: EventTypeCode;
  subject: SetSubjectInput;
  /** Only for the revocation and linked-account-update types. */
  reason?: string | undefined;
  /** Only with a revocation type: the SET also carries resource-update (CBPII revocation, §7.4). */
  withResourceUpdate?: boolean | undefined;
}

export function obEventSubject(subject: SetSubjectInput): ObEventSubject {
  return {
    subject_type: SUBJECT_TYPE,
    [RID]: subject.id,
    [RTY]: subject.type,
    [RLK]: subject.links.map(({ version, link }) => ({ version, link })),
  };
}

/**
 * Builds the claims of one SET. The input is trusted (validated by `parseEventInput` and the
 * publisher); a combination OBIE cannot express throws a programming error.
 */
export function buildSetClaims(input: SetClaimsInput): SetClaims {
  assertSeconds('iat', input.iat);
  assertSeconds('toe', input.toe);
  return {
    iss: input.iss,
    iat: input.iat,
    jti: input.jti,
    aud: input.aud,
    sub: input.sub,
    txn: input.txn,
    toe: input.toe,
    events: events(input),
  };
}

function events(input: SetClaimsInput): Record<string, ObEventPayload> {
  const subject = obEventSubject(input.subject);
  const reason = input.reason === undefined ? {} : { reason: input.reason };
  const type = input.eventType;
  if (input.withResourceUpdate && !REVOCATION_TYPES.has(type)) {
    throw new TypeError(`withResourceUpdate applies to revocation events only, not ${type}`);
  }
  if (type === 'UK.OBIE.Resource-Update') {
    if (input.reason !== undefined) throw new TypeError('resource-update carries no reason');
    return { [eventUrn(type)]: { subject } };
  }
  if (REVOCATION_TYPES.has(type) && input.withResourceUpdate) {
    return {
      [eventUrn('UK.OBIE.Resource-Update')]: { subject },
      [eventUrn(type)]: { ...reason },
    };
  }
  // Revocation alone, or linked-account-update: the event itself identifies the resource.
  return { [eventUrn(type)]: { ...reason, subject } };
}

function assertSeconds(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > INT32_MAX) {
    throw new RangeError(`${name} must be whole seconds since the epoch (int32), got ${value}`);
  }
}
