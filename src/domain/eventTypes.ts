// The event types we support (OBIE OBEventType1Code, 3.1.11) and their SET event URNs.
//
// The UK.OBIE.* codes are canonical (DECISIONS.md, A1): subscriptions and the publishing API
// accept either a code or its urn:uk:org:openbanking:events:* alias, and everything is stored and
// returned as the code. Version gating (OBIE Event Notification "Backwards Compatibility"): a
// subscription made with a Version below 3.1.2 receives resource-update events only.
import { isBefore312 } from './versions.js';

export const EVENT_TYPES = [
  'UK.OBIE.Resource-Update',
  'UK.OBIE.Consent-Authorization-Revoked',
  'UK.OBIE.Consent-Access-Revoked',
  'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
] as const;

export type EventTypeCode = (typeof EVENT_TYPES)[number];

const URN_OF: Record<EventTypeCode, string> = {
  'UK.OBIE.Resource-Update': 'urn:uk:org:openbanking:events:resource-update',
  'UK.OBIE.Consent-Authorization-Revoked':
    'urn:uk:org:openbanking:events:consent-authorization-revoked',
  'UK.OBIE.Consent-Access-Revoked': 'urn:uk:org:openbanking:events:consent-access-revoked',
  'UK.OBIE.Account-Access-Consent-Linked-Account-Update':
    'urn:uk:org:openbanking:events:account-access-consent-linked-account-update',
};

const CODE_OF = new Map<string, EventTypeCode>([
  ...EVENT_TYPES.map((c) => [c, c] as const),
  ...EVENT_TYPES.map((c) => [URN_OF[c], c] as const),
]);

/** The only type a pre-3.1.2 subscriber (or callback-url registration) ever receives. */
const LEGACY_TYPES: readonly EventTypeCode[] = ['UK.OBIE.Resource-Update'];

/** The code for an `UK.OBIE.*` code or its URN alias (exact spelling); undefined when unknown. */
export function toEventTypeCode(codeOrUrn: string): EventTypeCode | undefined {
  return CODE_OF.get(codeOrUrn);
}

/** The SET `events` member name of a type: `urn:uk:org:openbanking:events:…`. */
export function eventUrn(code: EventTypeCode): string {
  return URN_OF[code];
}

/** The types a subscription with this `Version` may receive: all, or resource-update below 3.1.2. */
export function typesAllowedForVersion(version: string): readonly EventTypeCode[] {
  return isBefore312(version) ? LEGACY_TYPES : EVENT_TYPES;
}
