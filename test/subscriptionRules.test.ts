// The subscription body rules that need no server: event types and their URNs, the versions we
// serve and their gating, and the CallbackUrl syntax and host policy.
import { describe, expect, it } from 'vitest';
import { assertValidCallbackUrl, parseCallbackUrl } from '../src/domain/callbackUrl.js';
import {
  EVENT_TYPES,
  eventUrn,
  toEventTypeCode,
  typesAllowedForVersion,
} from '../src/domain/eventTypes.js';
import { newSubscriptionId } from '../src/domain/subscriptions.js';
import { isBefore312, parseSubscriptionVersion, V4_0 } from '../src/domain/versions.js';
import { AppError } from '../src/errors.js';
import type { LookupAll } from '../src/net/addressPolicy.js';

const GOOD = 'https://tpp.example/open-banking/v3.1/event-notifications';

function obError(fn: () => unknown): { code: string; path: string | undefined } {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) {
      return { code: err.details[0]!.errorCode, path: err.details[0]!.path };
    }
    throw err;
  }
  throw new Error('expected an AppError');
}

describe('event types', () => {
  it('when a code or its URN is given, then the code comes back, and eventUrn maps back', () => {
    for (const code of EVENT_TYPES) {
      expect(toEventTypeCode(code)).toBe(code);
      expect(toEventTypeCode(eventUrn(code))).toBe(code);
    }
    expect(eventUrn('UK.OBIE.Resource-Update')).toBe(
      'urn:uk:org:openbanking:events:resource-update',
    );
  });

  it('when the value is unknown or differently spelled, then there is no code', () => {
    for (const v of [
      'UK.OBIE.Acount-Access-Consent-Linked-Account-Update',
      'uk.obie.resource-update',
      'resource-update',
      '',
    ]) {
      expect(toEventTypeCode(v)).toBeUndefined();
    }
  });

  it('when the Version is below 3.1.2, then only resource-update is allowed; otherwise all', () => {
    expect(typesAllowedForVersion('3.1.1')).toEqual(['UK.OBIE.Resource-Update']);
    expect(typesAllowedForVersion('v3.1.0')).toEqual(['UK.OBIE.Resource-Update']);
    for (const v of ['3.1', 'v3.1', '3.1.2', '3.1.11']) {
      expect(typesAllowedForVersion(v)).toEqual(EVENT_TYPES);
    }
  });
});

describe('versions', () => {
  it.each(['3.1', 'v3.1', '3.1.0', '3.1.2', '3.1.10', 'v3.1.11'])(
    'when the Version is %s, then it is served',
    (v) => expect(parseSubscriptionVersion(v)).toBeDefined(),
  );

  it.each(['4.0', 'v4.0', '4.0.0'])('when the Version is %s, then it is served (v4.0)', (v) =>
    expect(parseSubscriptionVersion(v)?.line).toBe(V4_0),
  );

  it.each([
    '3.0',
    '4.1',
    '5.0',
    '4.0.1',
    '3.1.12',
    '3.1.01',
    '3',
    '3.1.',
    'V3.1',
    ' 3.1',
    '3.1-rc1',
  ])('when the Version is %s, then it is not served', (v) =>
    expect(parseSubscriptionVersion(v)).toBeUndefined(),
  );

  it('when the Version is plain 3.1, then it is the current release, not below 3.1.2', () => {
    expect(isBefore312('3.1')).toBe(false);
    expect(isBefore312('3.1.1')).toBe(true);
    expect(isBefore312('3.1.2')).toBe(false);
  });
});

describe('subscription ids', () => {
  it('when ids are made, then they are es_ and 24 base62 characters, and differ', () => {
    const ids = new Set(Array.from({ length: 200 }, () => newSubscriptionId()));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(/^es_[0-9A-Za-z]{24}$/);
  });
});

describe('CallbackUrl syntax', () => {
  it('when a Version 4.0 subscription has a v3.1 CallbackUrl (or the reverse), then 400 at Data.CallbackUrl', () => {
    const v40 = parseSubscriptionVersion('4.0');
    const v31 = parseSubscriptionVersion('3.1.11');
    expect(obError(() => parseCallbackUrl(GOOD, v40))).toEqual({
      code: 'UK.OBIE.Field.Invalid',
      path: 'Data.CallbackUrl',
    });
    expect(() =>
      parseCallbackUrl('https://tpp.example/open-banking/v4.0/event-notifications', v40),
    ).not.toThrow();
    expect(
      obError(() =>
        parseCallbackUrl('https://tpp.example/open-banking/v4.0/event-notifications', v31),
      ),
    ).toEqual({ code: 'UK.OBIE.Field.Invalid', path: 'Data.CallbackUrl' });
  });

  it.each([
    GOOD,
    'https://tpp.example/open-banking/v4.0/event-notifications',
    'https://tpp.example/v3.1/event-notifications',
    'https://tpp.example:8443/prefix/open-banking/v3.1.11/event-notifications',
    'https://tpp.example/open-banking/3.1/event-notifications',
  ])('when the CallbackUrl is %s, then it is accepted', (url) => {
    expect(() => parseCallbackUrl(url)).not.toThrow();
  });

  it.each([
    ['http, not https', 'http://tpp.example/open-banking/v3.1/event-notifications'],
    ['no version segment', 'https://tpp.example/event-notifications'],
    ['another suffix', 'https://tpp.example/open-banking/v3.1/events'],
    ['a trailing slash', 'https://tpp.example/open-banking/v3.1/event-notifications/'],
    ['a version we do not serve', 'https://tpp.example/open-banking/v4.1/event-notifications'],
    ['a user name', 'https://user@tpp.example/open-banking/v3.1/event-notifications'],
    ['a password', 'https://u:p@tpp.example/open-banking/v3.1/event-notifications'],
    ['a query', `${GOOD}?x=1`],
    ['an empty query', `${GOOD}?`],
    ['a fragment', `${GOOD}#f`],
    ['not absolute', '/open-banking/v3.1/event-notifications'],
    ['over 2,000 characters', `https://tpp.example/${'a'.repeat(2000)}/v3.1/event-notifications`],
    ['backslashes', 'https:\\\\tpp.example\\open-banking\\v3.1\\event-notifications'],
    ['a backslash in the path', 'https://tpp.example/open-banking\\v3.1/event-notifications'],
    ['an upper-case host', 'https://TPP.example/open-banking/v3.1/event-notifications'],
    ['the default port', 'https://tpp.example:443/open-banking/v3.1/event-notifications'],
    ['a dot segment', 'https://tpp.example/x/../open-banking/v3.1/event-notifications'],
    ['a tab inside', 'https://tpp.exa\tmple/open-banking/v3.1/event-notifications'],
  ])(
    'when the CallbackUrl has %s, then 400 UK.OBIE.Field.Invalid at Data.CallbackUrl',
    (_, url) => {
      expect(obError(() => parseCallbackUrl(url))).toEqual({
        code: 'UK.OBIE.Field.Invalid',
        path: 'Data.CallbackUrl',
      });
    },
  );
});

describe('CallbackUrl host', () => {
  const resolvesTo =
    (...addresses: string[]): LookupAll =>
    () =>
      Promise.resolve(
        addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
      );

  const refused = async (url: string, allowPrivateNetworks: boolean, lookup?: LookupAll) => {
    const err = await assertValidCallbackUrl(url, {
      allowPrivateNetworks,
      ...(lookup ? { lookup } : {}),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).details[0]).toMatchObject({
      errorCode: 'UK.OBIE.Field.Invalid',
      path: 'Data.CallbackUrl',
    });
    return (err as AppError).message;
  };

  it('when the host resolves to a public address, then it is accepted', async () => {
    await expect(
      assertValidCallbackUrl(GOOD, {
        allowPrivateNetworks: false,
        lookup: resolvesTo('93.184.215.14'),
      }),
    ).resolves.toBeUndefined();
  });

  it('when the host name resolves to a private address, then it is refused unless private networks are allowed', async () => {
    expect(await refused(GOOD, false, resolvesTo('10.0.0.5'))).toBe(
      'the CallbackUrl host must resolve to public addresses only',
    );
    await expect(
      assertValidCallbackUrl(GOOD, { allowPrivateNetworks: true, lookup: resolvesTo('10.0.0.5') }),
    ).resolves.toBeUndefined();
  });

  it('when the host name resolves to the metadata address, then it is refused even with private networks allowed', async () => {
    expect(await refused(GOOD, true, resolvesTo('169.254.169.254'))).toBe(
      'the CallbackUrl host must resolve to public addresses only',
    );
  });

  it('when the host is an IPv4-mapped metadata or link-local literal, then it is refused', async () => {
    await refused('https://[::ffff:169.254.169.254]/open-banking/v3.1/event-notifications', true);
    await refused('https://[fe80::1]/open-banking/v3.1/event-notifications', true);
  });

  it('when the loopback address is written in a shorthand the URL parser expands, then it is refused as non-canonical', async () => {
    const message = await refused(
      'https://2130706433/open-banking/v3.1/event-notifications',
      false,
    );
    expect(message).toMatch(/canonical form/);
    expect(message).not.toMatch(/127\.0\.0\.1/);
  });

  it('when the host resolves to an internal address, then the message reveals neither the address nor its kind', async () => {
    for (const address of ['10.1.2.3', '127.0.0.1', '169.254.169.254', 'fd00::7']) {
      const message = await refused(GOOD, false, resolvesTo(address));
      expect(message).not.toContain(address);
      expect(message).not.toMatch(/private|loopback|metadata|link-local|reserved/);
    }
    const unresolvable: LookupAll = () =>
      Promise.reject(Object.assign(new Error('x'), { code: 'ENOTFOUND' }));
    expect(await refused(GOOD, false, unresolvable)).toBe('the CallbackUrl host does not resolve');
  });

  it('when the host does not resolve, then it is refused', async () => {
    const lookup: LookupAll = () =>
      Promise.reject(Object.assign(new Error('x'), { code: 'ENOTFOUND' }));
    expect(await refused(GOOD, true, lookup)).toMatch(/does not resolve/);
  });
});
