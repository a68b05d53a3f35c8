// The event types: OBIE's (OBEventType1Code, 3.1.11 and 4.0: the same four) and their SET event
// URNs, and the catalogue of what this bank offers.
//
// The UK.OBIE.* codes are canonical (DECISIONS.md, A1): subscriptions and the publishing API
// accept either a code or its urn:uk:org:openbanking:events:* alias, and everything is stored and
// returned as the code. Version gating (OBIE Event Notification "Backwards Compatibility"): a
// subscription made with a Version below 3.1.2 receives resource-update events only.
//
// Which types a bank offers is its choice (SUPPORTED_EVENT_TYPES: a subset of OBIE's four), and it
// may add its own (EXTENSION_EVENT_TYPES: namespaced URNs such as
// urn:bank.example:events:card-frozen, OBIE "Event Types and Extensibility"). An extension type's
// code is its URN; it is subscribed to, published, signed (`events` member = the URN, payload
// `{ subject }` like resource-update) and delivered exactly like a standard type. A type the bank
// does not offer is refused: in EventTypes (400 Unsupported.EventType / U024) and when publishing.
import { isBefore312 } from './versions.js';

export const EVENT_TYPES = [
  'UK.OBIE.Resource-Update',
  'UK.OBIE.Consent-Authorization-Revoked',
  'UK.OBIE.Consent-Access-Revoked',
  'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
] as const;

export type StandardEventType = (typeof EVENT_TYPES)[number];
/** A bank-defined event type: its URN. */
export type ExtensionEventType = `urn:${string}`;
export type EventTypeCode = StandardEventType | ExtensionEventType;

const URN_OF: Record<StandardEventType, string> = {
  'UK.OBIE.Resource-Update': 'urn:uk:org:openbanking:events:resource-update',
  'UK.OBIE.Consent-Authorization-Revoked':
    'urn:uk:org:openbanking:events:consent-authorization-revoked',
  'UK.OBIE.Consent-Access-Revoked': 'urn:uk:org:openbanking:events:consent-access-revoked',
  'UK.OBIE.Account-Access-Consent-Linked-Account-Update':
    'urn:uk:org:openbanking:events:account-access-consent-linked-account-update',
};

const CODE_OF = new Map<string, StandardEventType>([
  ...EVENT_TYPES.map((c) => [c, c] as const),
  ...EVENT_TYPES.map((c) => [URN_OF[c], c] as const),
]);

/** OBIE's own URN namespace: no bank extension may use it. */
const OBIE_URN_PREFIX = 'urn:uk:org:openbanking:';
/** `urn:<namespace>:<name>`: printable ASCII, no spaces, at most 200 characters. */
const EXTENSION_URN = /^urn:[A-Za-z0-9][A-Za-z0-9.-]{0,62}:[A-Za-z0-9()+,\-.:=@;$_!*'%/?#]+$/;

/** The only type a pre-3.1.2 subscriber (or callback-url registration) ever receives. */
const LEGACY_TYPES: readonly EventTypeCode[] = ['UK.OBIE.Resource-Update'];

/** The standard code for an `UK.OBIE.*` code or its URN alias (exact spelling); else undefined. */
export function toEventTypeCode(codeOrUrn: string): StandardEventType | undefined {
  return CODE_OF.get(codeOrUrn);
}

/** The SET `events` member name of a type: `urn:uk:org:openbanking:events:…`, or the extension URN. */
export function eventUrn(code: EventTypeCode): string {
  return isExtension(code) ? code : URN_OF[code];
}

export function isExtension(code: EventTypeCode): code is ExtensionEventType {
  return code.startsWith('urn:');
}

/** Why `urn` cannot be an extension event type, or undefined when it can. */
export function extensionProblem(urn: string): string | undefined {
  if (urn.length > 200) return 'is longer than 200 characters';
  if (!EXTENSION_URN.test(urn)) return 'is not a URN like urn:bank.example:events:card-frozen';
  if (urn.toLowerCase().startsWith(OBIE_URN_PREFIX)) return 'uses the OBIE namespace';
  return undefined;
}

/** The types a subscription with this `Version` may receive: all, or resource-update below 3.1.2. */
export function typesAllowedForVersion(version: string): readonly EventTypeCode[] {
  return isBefore312(version) ? LEGACY_TYPES : EVENT_TYPES;
}

/** Whether a subscription with this `Version` receives `type` (below 3.1.2: resource-update only). */
export function deliverableToVersion(type: EventTypeCode, version: string): boolean {
  return !isBefore312(version) || LEGACY_TYPES.includes(type);
}

export interface EventTypeCatalogOptions {
  /** SUPPORTED_EVENT_TYPES: the OBIE types offered; default all four. */
  supported?: readonly StandardEventType[] | undefined;
  /** EXTENSION_EVENT_TYPES: the bank's own types (URNs). */
  extensions?: readonly ExtensionEventType[] | undefined;
}

/** What this bank offers: checked by subscriptions, publishing and the OpenAPI documents. */
export class EventTypeCatalog {
  private readonly offered: readonly EventTypeCode[];

  constructor(opts: EventTypeCatalogOptions = {}) {
    const standard = EVENT_TYPES.filter((t) => (opts.supported ?? EVENT_TYPES).includes(t));
    this.offered = [...standard, ...new Set(opts.extensions ?? [])];
  }

  /** Every offered code, OBIE's first (OpenAPI enum order). */
  codes(): EventTypeCode[] {
    return [...this.offered];
  }

  /** The offered code for a code or URN (OBIE aliases normalised); undefined when not offered. */
  toOffered(value: string): EventTypeCode | undefined {
    const code: EventTypeCode | undefined =
      toEventTypeCode(value) ??
      (value.startsWith('urn:') ? (value as ExtensionEventType) : undefined);
    return code !== undefined && this.offered.includes(code) ? code : undefined;
  }

  /** The offered types a subscription with this `Version` may receive. */
  allowedForVersion(version: string): EventTypeCode[] {
    // Below 3.1.2 only resource-update existed, and no extension either.
    if (isBefore312(version)) return this.offered.filter((t) => LEGACY_TYPES.includes(t));
    return [...this.offered];
  }
}
