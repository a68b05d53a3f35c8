// SET claims exactly as OBEventNotification2 (spec §7.2–7.4), for every event type.
import { describe, expect, it } from 'vitest';
import { buildSetClaims, SUBJECT_TYPE, type SetClaimsInput } from '../src/crypto/setClaims.js';
import {
  expectObEventNotification2,
  obEventNotification2Errors,
} from './helpers/obEventNotification2.js';
import { expectObieShape, obieValidator } from './helpers/obieSchema.js';

const OFFICIAL = 'v3.1.11/event-notifications-openapi.json';
const RU = 'urn:uk:org:openbanking:events:resource-update';
const CAR = 'urn:uk:org:openbanking:events:consent-authorization-revoked';
const CACR = 'urn:uk:org:openbanking:events:consent-access-revoked';
const LAU = 'urn:uk:org:openbanking:events:account-access-consent-linked-account-update';
const LINK = 'https://bank.example/open-banking/v3.1/aisp/account-access-consents/aac-1234-007';

// The example of spec §7.2.
const base: SetClaimsInput = {
  iss: 'https://bank.example/',
  aud: '7umx5nTR33811QyQfi',
  jti: 'b460a07c-4962-43d1-85ee-9dc10fbb8f6c',
  iat: 1516239022,
  toe: 1516239022,
  sub: LINK,
  txn: 'dfc51628-3479-4b81-ad60-210b43d02306',
  eventType: 'UK.OBIE.Resource-Update',
  subject: {
    id: 'aac-1234-007',
    type: 'account-access-consent',
    links: [{ version: 'v3.1', link: LINK }],
  },
};

const subject = {
  subject_type: 'http://openbanking.org.uk/rid_http://openbanking.org.uk/rty',
  'http://openbanking.org.uk/rid': 'aac-1234-007',
  'http://openbanking.org.uk/rty': 'account-access-consent',
  'http://openbanking.org.uk/rlk': [{ version: 'v3.1', link: LINK }],
};

describe('buildSetClaims', () => {
  it('when the event is a resource-update, then the claims are the §7.2 example and match the official OBEventNotification1', () => {
    const claims = buildSetClaims(base);
    expect(claims).toStrictEqual({
      iss: 'https://bank.example/',
      iat: 1516239022,
      jti: 'b460a07c-4962-43d1-85ee-9dc10fbb8f6c',
      aud: '7umx5nTR33811QyQfi',
      sub: LINK,
      txn: 'dfc51628-3479-4b81-ad60-210b43d02306',
      toe: 1516239022,
      events: { [RU]: { subject } },
    });
    expectObieShape('OBEventNotification1', claims, OFFICIAL);
    expectObEventNotification2(claims);
  });

  it('when claims are serialised, then members come in the fixed order', () => {
    const claims = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Consent-Authorization-Revoked',
      reason: 'BANK.X',
    });
    expect(Object.keys(claims)).toEqual([
      'iss',
      'iat',
      'jti',
      'aud',
      'sub',
      'txn',
      'toe',
      'events',
    ]);
    const payload = claims.events[CAR]!;
    expect(Object.keys(payload)).toEqual(['reason', 'subject']);
    expect(Object.keys(payload.subject!)).toEqual([
      'subject_type',
      'http://openbanking.org.uk/rid',
      'http://openbanking.org.uk/rty',
      'http://openbanking.org.uk/rlk',
    ]);
    expect(JSON.stringify(buildSetClaims(base))).toBe(
      `{"iss":"https://bank.example/","iat":1516239022,"jti":"b460a07c-4962-43d1-85ee-9dc10fbb8f6c",` +
        `"aud":"7umx5nTR33811QyQfi","sub":"${LINK}","txn":"dfc51628-3479-4b81-ad60-210b43d02306",` +
        `"toe":1516239022,"events":{"${RU}":{"subject":{"subject_type":"${SUBJECT_TYPE}",` +
        `"http://openbanking.org.uk/rid":"aac-1234-007","http://openbanking.org.uk/rty":"account-access-consent",` +
        `"http://openbanking.org.uk/rlk":[{"version":"v3.1","link":"${LINK}"}]}}}}`,
    );
  });

  it('when a consent authorisation is revoked alone (AIS), then the revocation carries reason and subject', () => {
    const claims = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Consent-Authorization-Revoked',
      reason: 'BANK.CustomerRequest',
    });
    expect(claims.events).toStrictEqual({ [CAR]: { reason: 'BANK.CustomerRequest', subject } });
    expectObEventNotification2(claims);
  });

  it('when a consent authorisation is revoked without a reason, then the revocation carries the subject only', () => {
    const claims = buildSetClaims({ ...base, eventType: 'UK.OBIE.Consent-Authorization-Revoked' });
    expect(claims.events).toStrictEqual({ [CAR]: { subject } });
    expectObEventNotification2(claims);
  });

  it('when a revocation also changed the resource (CBPII), then the SET carries resource-update with the subject and an empty revocation', () => {
    const claims = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Consent-Authorization-Revoked',
      withResourceUpdate: true,
    });
    expect(claims.events).toStrictEqual({ [RU]: { subject }, [CAR]: {} });
    expect(Object.keys(claims.events)).toEqual([RU, CAR]);
    expectObEventNotification2(claims);
  });

  it('when a revocation with a reason also changed the resource, then the revocation carries the reason and no subject', () => {
    const claims = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Consent-Authorization-Revoked',
      reason: 'BANK.CustomerRequest',
      withResourceUpdate: true,
    });
    expect(claims.events).toStrictEqual({
      [RU]: { subject },
      [CAR]: { reason: 'BANK.CustomerRequest' },
    });
    expectObEventNotification2(claims);
  });

  it('when consent access is revoked (VRP), then the event has the shape of consent-authorization-revoked', () => {
    const alone = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Consent-Access-Revoked',
      reason: 'BANK.Fraud',
    });
    expect(alone.events).toStrictEqual({ [CACR]: { reason: 'BANK.Fraud', subject } });
    expectObEventNotification2(alone);
    const both = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Consent-Access-Revoked',
      withResourceUpdate: true,
    });
    expect(both.events).toStrictEqual({ [RU]: { subject }, [CACR]: {} });
    expectObEventNotification2(both);
  });

  it('when a linked account changes, then the event carries reason and subject', () => {
    const withReason = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
      reason: 'UK.OBIE.AccountClosure',
    });
    expect(withReason.events).toStrictEqual({
      [LAU]: { reason: 'UK.OBIE.AccountClosure', subject },
    });
    expectObEventNotification2(withReason);
    const without = buildSetClaims({
      ...base,
      eventType: 'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
    });
    expect(without.events).toStrictEqual({ [LAU]: { subject } });
    expectObEventNotification2(without);
  });

  it('when the subject has several links, then rlk lists them all in order', () => {
    const links = [
      { version: '3.1', link: 'https://bank.example/open-banking/v3.1/x/1' },
      { version: 'v4.0', link: 'https://bank.example/open-banking/v4.0/x/1' },
    ];
    const claims = buildSetClaims({ ...base, subject: { ...base.subject, links } });
    expect(claims.events[RU]!.subject!['http://openbanking.org.uk/rlk']).toStrictEqual(links);
    expectObieShape('OBEventNotification1', claims, OFFICIAL);
  });

  it('when the input asks for something OBIE cannot express, then it throws', () => {
    expect(() => buildSetClaims({ ...base, withResourceUpdate: true })).toThrow(TypeError);
    expect(() =>
      buildSetClaims({
        ...base,
        eventType: 'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
        withResourceUpdate: true,
      }),
    ).toThrow(TypeError);
    expect(() => buildSetClaims({ ...base, reason: 'BANK.X' })).toThrow(TypeError);
  });

  it('when iat or toe are not whole int32 seconds, then it throws', () => {
    expect(() => buildSetClaims({ ...base, iat: 1516239022.5 })).toThrow(RangeError);
    expect(() => buildSetClaims({ ...base, toe: -1 })).toThrow(RangeError);
    expect(() => buildSetClaims({ ...base, toe: 1_700_000_000_000 })).toThrow(RangeError);
  });
});

describe('the OBEventNotification2 schema used above', () => {
  it('when a revocation has no subject and no resource-update beside it, then the schema refuses it', () => {
    const claims = buildSetClaims({ ...base, eventType: 'UK.OBIE.Consent-Authorization-Revoked' });
    expect(obEventNotification2Errors({ ...claims, events: { [CAR]: {} } })).not.toBeNull();
    expect(
      obEventNotification2Errors({ ...claims, events: { [CACR]: { reason: 'A.B' } } }),
    ).not.toBeNull();
  });

  it('when the claims break a rule of §7.2–7.3, then the schema refuses them', () => {
    const claims = buildSetClaims(base);
    const bad = [
      { ...claims, iat: '1516239022' },
      { ...claims, exp: 1 },
      { ...claims, events: {} },
      { ...claims, events: { 'urn:example:other': {} } },
      { ...claims, events: { [RU]: {} } },
      { ...claims, events: { [RU]: { subject: { ...subject, subject_type: 'x' } } } },
      {
        ...claims,
        events: { [RU]: { subject: { ...subject, 'http://openbanking.org.uk/rlk': [] } } },
      },
      { ...claims, events: { [LAU]: { reason: 'UK.OBIE.CASS' } } },
    ];
    for (const value of bad)
      expect(obEventNotification2Errors(value), JSON.stringify(value)).not.toBeNull();
  });

  it.runIf(obieValidator('OBEventNotification1', OFFICIAL) !== undefined)(
    'when a SET carries only a revocation, then the official OBEventNotification1 refuses it (why the prose model is used, §7.4)',
    () => {
      const claims = buildSetClaims({
        ...base,
        eventType: 'UK.OBIE.Consent-Authorization-Revoked',
      });
      expect(obieValidator('OBEventNotification1', OFFICIAL)!(claims)).toBe(false);
    },
  );
});
