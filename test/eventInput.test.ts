// The one validation of an event submitted by a bank's system (CLI, admin API, outbox).
import { describe, expect, it } from 'vitest';
import {
  parseEventInput,
  setEventTypes,
  type EventInput,
  type InputProblem,
} from '../src/domain/eventInput.js';

const LINK = 'https://bank.example/open-banking/v3.1/aisp/account-access-consents/aac-1234';

const valid = () => ({
  clientId: 'tpp-1',
  type: 'UK.OBIE.Resource-Update',
  subject: {
    id: 'aac-1234',
    type: 'account-access-consent',
    links: [{ version: 'v3.1', link: LINK }],
  },
});

function ok(raw: unknown): EventInput {
  const result = parseEventInput(raw);
  if (!result.ok) throw new Error(`expected valid, got ${JSON.stringify(result.problems)}`);
  return result.event;
}

function problems(raw: unknown): InputProblem[] {
  const result = parseEventInput(raw);
  if (result.ok) throw new Error(`expected problems, got ${JSON.stringify(result.event)}`);
  return result.problems;
}

function paths(raw: unknown): string[] {
  return problems(raw).map((p) => p.path);
}

const s = (n: number) => 'x'.repeat(n);
const withSubject = (subject: Record<string, unknown>) => ({
  ...valid(),
  subject: { ...valid().subject, ...subject },
});
const withLink = (link: Record<string, unknown>) =>
  withSubject({ links: [{ version: 'v3.1', link: LINK, ...link }] });

describe('parseEventInput', () => {
  it('when the minimal event is given, then it is valid and the defaults are resolved', () => {
    expect(ok(valid())).toStrictEqual({
      clientId: 'tpp-1',
      type: 'UK.OBIE.Resource-Update',
      subject: {
        id: 'aac-1234',
        type: 'account-access-consent',
        links: [{ version: 'v3.1', link: LINK }],
      },
      sub: LINK,
      withResourceUpdate: false,
    });
  });

  it('when every optional member is given, then each is kept', () => {
    const event = ok({
      ...valid(),
      type: 'UK.OBIE.Consent-Authorization-Revoked',
      sub: 'https://bank.example/open-banking/v3.1/cbpii/funds-confirmation-consents/1',
      txn: 'txn-1',
      toe: 1_700_000_000,
      reason: 'BANK.CustomerRequest',
      withResourceUpdate: true,
      idempotencyKey: 'key-1',
    });
    expect(event).toMatchObject({
      sub: 'https://bank.example/open-banking/v3.1/cbpii/funds-confirmation-consents/1',
      txn: 'txn-1',
      toe: 1_700_000_000,
      reason: 'BANK.CustomerRequest',
      withResourceUpdate: true,
      idempotencyKey: 'key-1',
    });
  });

  it.each([
    ['urn:uk:org:openbanking:events:resource-update', 'UK.OBIE.Resource-Update'],
    [
      'urn:uk:org:openbanking:events:consent-authorization-revoked',
      'UK.OBIE.Consent-Authorization-Revoked',
    ],
    ['urn:uk:org:openbanking:events:consent-access-revoked', 'UK.OBIE.Consent-Access-Revoked'],
    [
      'urn:uk:org:openbanking:events:account-access-consent-linked-account-update',
      'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
    ],
    ['UK.OBIE.Consent-Access-Revoked', 'UK.OBIE.Consent-Access-Revoked'],
  ])('when the type is %s, then it is kept as the code %s', (type, code) => {
    expect(ok({ ...valid(), type }).type).toBe(code);
  });

  it('when the subject has several links, then sub defaults to the first', () => {
    const links = [
      { version: '3.1', link: 'https://bank.example/a' },
      { version: 'v4.0', link: 'https://bank.example/b' },
    ];
    expect(ok(withSubject({ links })).sub).toBe('https://bank.example/a');
  });

  it.each<[string, unknown]>([
    ['null', null],
    ['an array', [valid()]],
    ['a string', JSON.stringify(valid())],
    ['a number', 42],
    ['undefined', undefined],
  ])('when the event is %s, then one problem is reported for the whole object', (_, raw) => {
    expect(problems(raw)).toStrictEqual([{ path: '', message: 'must be a JSON object' }]);
  });

  it.each<[string, string, Record<string, unknown>]>([
    ['clientId is missing', 'clientId', { clientId: undefined }],
    ['clientId is empty', 'clientId', { clientId: '' }],
    ['clientId is longer than 128', 'clientId', { clientId: s(129) }],
    ['clientId is a number', 'clientId', { clientId: 7 }],
    ['type is missing', 'type', { type: undefined }],
    ['type is not a string', 'type', { type: 1 }],
    ['type is unknown', 'type', { type: 'UK.OBIE.Payment-Update' }],
    ['type is an unknown URN', 'type', { type: 'urn:uk:org:openbanking:events:other' }],
    ['subject is missing', 'subject', { subject: undefined }],
    ['subject is a string', 'subject', { subject: 'aac-1234' }],
    ['sub is relative', 'sub', { sub: '/open-banking/v3.1/x' }],
    ['sub has a space', 'sub', { sub: 'https://bank.example/a b' }],
    ['sub is not a string', 'sub', { sub: 5 }],
    ['sub is longer than 2000', 'sub', { sub: `https://bank.example/${s(2000)}` }],
    ['txn is empty', 'txn', { txn: '' }],
    ['txn is longer than 128', 'txn', { txn: s(129) }],
    ['toe is a fraction', 'toe', { toe: 1_700_000_000.5 }],
    ['toe is negative', 'toe', { toe: -1 }],
    ['toe is in milliseconds', 'toe', { toe: 1_700_000_000_000 }],
    ['toe is a string', 'toe', { toe: '1700000000' }],
    ['idempotencyKey is empty', 'idempotencyKey', { idempotencyKey: '' }],
    ['idempotencyKey is longer than 200', 'idempotencyKey', { idempotencyKey: s(201) }],
    ['withResourceUpdate is a string', 'withResourceUpdate', { withResourceUpdate: 'true' }],
    ['an unknown member is given', 'priority', { priority: 'high' }],
    ['a snake_case member is given', 'client_id', { client_id: 'tpp-1' }],
  ])('when %s, then the problem names %s', (_, path, change) => {
    expect(paths({ ...valid(), ...change })).toEqual([path]);
  });

  it.each<[string, string, Record<string, unknown>]>([
    ['id is empty', 'subject.id', { id: '' }],
    ['id is longer than 128', 'subject.id', { id: s(129) }],
    ['type is missing', 'subject.type', { type: undefined }],
    ['type is longer than 128', 'subject.type', { type: s(129) }],
    ['links are missing', 'subject.links', { links: undefined }],
    ['links are empty', 'subject.links', { links: [] }],
    ['links are not an array', 'subject.links', { links: { version: 'v3.1', link: LINK } }],
    [
      'there are more than 50 links',
      'subject.links',
      { links: Array.from({ length: 51 }, () => ({ version: 'v3.1', link: LINK })) },
    ],
    ['a link is a string', 'subject.links[0]', { links: [LINK] }],
    ['an unknown member is given', 'subject.version', { version: 'v3.1' }],
  ])('when the subject %s, then the problem names %s', (_, path, change) => {
    expect(paths(withSubject(change))).toEqual([path]);
  });

  it('when the subject holds exactly 128-character id and type and 50 links, then it is valid', () => {
    const links = Array.from({ length: 50 }, (_, i) => ({ version: s(10), link: `${LINK}/${i}` }));
    expect(ok(withSubject({ id: s(128), type: s(128), links })).subject.links).toHaveLength(50);
  });

  it.each<[string, string, Record<string, unknown>]>([
    ['version is missing', 'subject.links[0].version', { version: undefined }],
    ['version is empty', 'subject.links[0].version', { version: '' }],
    ['version is longer than 10', 'subject.links[0].version', { version: s(11) }],
    ['link is missing', 'subject.links[0].link', { link: undefined }],
    ['link is relative', 'subject.links[0].link', { link: '/open-banking/v3.1/x' }],
    ['link is not http(s)', 'subject.links[0].link', { link: 'ftp://bank.example/x' }],
    ['link is a URN', 'subject.links[0].link', { link: 'urn:example:x' }],
    ['link has no host', 'subject.links[0].link', { link: 'https:///x' }],
    ['link has a space', 'subject.links[0].link', { link: 'https://bank.example/a b' }],
    [
      'link is longer than 2000',
      'subject.links[0].link',
      { link: `https://bank.example/${s(2000)}` },
    ],
    ['an unknown member is given', 'subject.links[0].rel', { rel: 'self' }],
  ])('when a link %s, then the problem names %s', (_, path, change) => {
    const link = { version: 'v3.1', link: LINK, ...change };
    for (const k of Object.keys(link)) {
      if (link[k as keyof typeof link] === undefined) delete link[k as keyof typeof link];
    }
    expect(paths(withSubject({ links: [link] }))).toEqual([path]);
  });

  it('when a link is plain http or a sub is a URN, then they are accepted', () => {
    expect(ok(withLink({ link: 'http://bank.example/x' })).sub).toBe('http://bank.example/x');
    expect(ok({ ...valid(), sub: 'urn:example:consent:1' }).sub).toBe('urn:example:consent:1');
  });

  it('when several members are wrong, then every problem is reported at once', () => {
    const found = problems({
      clientId: '',
      type: 'nope',
      subject: { id: '', type: 'x', links: [] },
      extra: 1,
    });
    expect(found.map((p) => p.path).sort()).toEqual(
      ['clientId', 'extra', 'subject.id', 'subject.links', 'type'].sort(),
    );
    for (const p of found) expect(p.message).toMatch(/\S/);
  });

  it('when members have the wrong type or form, then each message says what is expected', () => {
    const found = problems({
      ...valid(),
      clientId: 7,
      subject: { ...valid().subject, type: 1 },
      toe: 1.5,
      sub: 'nope',
      extra: true,
    });
    expect(found).toStrictEqual([
      { path: 'clientId', message: 'must be a string' },
      { path: 'subject.type', message: 'must be a string' },
      { path: 'sub', message: 'must be an absolute URI' },
      { path: 'toe', message: 'must be whole seconds since the epoch' },
      { path: 'extra', message: 'is not a known member' },
    ]);
  });

  it('when a required member is missing, then the message says it is required', () => {
    expect(problems({ ...valid(), clientId: undefined })).toStrictEqual([
      { path: 'clientId', message: 'is required' },
    ]);
  });

  it('when the body tries prototype pollution, then __proto__ is refused as an unknown member', () => {
    const raw = JSON.parse(
      `{"__proto__":{"admin":true},${JSON.stringify(valid()).slice(1)}`,
    ) as unknown;
    expect(paths(raw)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });
});

describe('reason and withResourceUpdate', () => {
  const CAR = 'UK.OBIE.Consent-Authorization-Revoked';
  const CACR = 'UK.OBIE.Consent-Access-Revoked';
  const LAU = 'UK.OBIE.Account-Access-Consent-Linked-Account-Update';
  const RU = 'UK.OBIE.Resource-Update';

  it.each<[string, string]>([
    [CAR, 'BANK.CustomerRequest'],
    [CACR, 'BANK.Fraud-Suspected'],
    [LAU, 'UK.OBIE.AccountClosure'],
    [LAU, 'UK.OBIE.CASS'],
    [LAU, 'BANK.AccountMoved'],
    [CAR, `A.${s(126)}`],
  ])('when %s carries the reason %s, then it is accepted', (type, reason) => {
    expect(ok({ ...valid(), type, reason }).reason).toBe(reason);
  });

  it.each<[string, string, RegExp]>([
    [RU, 'BANK.X', /not allowed with UK\.OBIE\.Resource-Update/],
    [CAR, 'customer asked', /namespaced code/],
    [CAR, 'Revoked', /namespaced code/],
    [CAR, 'BANK.', /namespaced code/],
    [CAR, 'UK.OBIE.CustomerRequest', /no UK\.OBIE reason codes/],
    [CACR, 'UK.OBIE.AccountClosure', /no UK\.OBIE reason codes/],
    [LAU, 'UK.OBIE.Moved', /only UK\.OBIE\.AccountClosure and UK\.OBIE\.CASS/],
    [CAR, `A.${s(127)}`, /1–128/],
    [CAR, '', /1–128/],
  ])('when %s carries the reason %j, then it is refused', (type, reason, message) => {
    const found = problems({ ...valid(), type, reason });
    expect(found).toHaveLength(1);
    expect(found[0]!.path).toBe('reason');
    expect(found[0]!.message).toMatch(message);
  });

  it.each([CAR, CACR])('when %s asks for resource-update too, then it is accepted', (type) => {
    const event = ok({ ...valid(), type, withResourceUpdate: true });
    expect(event.withResourceUpdate).toBe(true);
    expect(setEventTypes(event)).toEqual([RU, type]);
  });

  it.each([RU, LAU])('when %s asks for resource-update too, then it is refused', (type) => {
    expect(problems({ ...valid(), type, withResourceUpdate: true })).toStrictEqual([
      {
        path: 'withResourceUpdate',
        message: expect.stringContaining(`not ${type}`) as string,
      },
    ]);
  });

  it('when withResourceUpdate is false, then any type accepts it', () => {
    const event = ok({ ...valid(), withResourceUpdate: false });
    expect(setEventTypes(event)).toEqual([RU]);
  });

  it('when the reason and withResourceUpdate are both wrong, then both are reported', () => {
    expect(paths({ ...valid(), reason: 'BANK.X', withResourceUpdate: true }).sort()).toEqual([
      'reason',
      'withResourceUpdate',
    ]);
  });
});
