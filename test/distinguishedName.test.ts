// Distinguished names as RFC 4517 distinguishedNameMatch compares them (the rules chosen are in
// src/crypto/distinguishedName.ts and the README): parsing never throws anything but
// DnSyntaxError, and look-alike or restructured names never match.
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  certificateSubject,
  DnSyntaxError,
  formatDn,
  matchesRegisteredDn,
  parseDn,
  sameDn,
} from '../src/crypto/distinguishedName.js';
import { issueCustomClientCertificate } from './helpers/customCert.js';

const same = (a: string, b: string) => sameDn(parseDn(a), parseDn(b));

describe('distinguished names', () => {
  it('when types are spelled differently and values differ only in ASCII case and spaces, then they match', () => {
    expect(same('CN=  The   TPP ,O=Example,C=GB', 'commonName=the tpp,o=EXAMPLE,2.5.4.6=gb')).toBe(
      true,
    );
  });

  it('when a value uses full-width characters, then it does not match the ASCII name', () => {
    expect(same('CN=ｔｐｐ,O=Example', 'CN=tpp,O=Example')).toBe(false);
  });

  it('when a value uses the Kelvin sign, then it does not match a K (no non-ASCII case folding)', () => {
    expect(same('CN=\u212Aey', 'CN=key')).toBe(false);
  });

  it('when one DN has a multi-valued RDN and the other the same attributes as single RDNs, then they do not match', () => {
    expect(same('CN=tpp+O=Example,C=GB', 'CN=tpp,O=Example,C=GB')).toBe(false);
  });

  it('when a multi-valued RDN lists its attributes in another order, then it matches', () => {
    expect(same('O=Example+CN=tpp,C=GB', 'CN=tpp+O=Example,C=GB')).toBe(true);
  });

  it('when RDNs are shuffled (not reversed), then the registered DN does not match', () => {
    const subject = parseDn('CN=tpp,OU=Unit,O=Example,C=GB');
    expect(matchesRegisteredDn(subject, parseDn('C=GB,O=Example,OU=Unit,CN=tpp'))).toBe(true);
    expect(matchesRegisteredDn(subject, parseDn('OU=Unit,CN=tpp,O=Example,C=GB'))).toBe(false);
  });

  it('when a value has escaped leading and trailing spaces, then it parses and they are insignificant', () => {
    expect(parseDn('CN=\\ tpp\\ ,C=GB')[0]![0]!.value).toBe(' tpp ');
    expect(same('CN=\\ tpp\\ ,C=GB', 'CN=tpp,C=GB')).toBe(true);
  });

  it('when a DN is formatted and parsed again, then it is the same DN', () => {
    const dn = parseDn('CN=\\ a\\,b\\ +UID=x,O=Example');
    expect(sameDn(parseDn(formatDn(dn)), dn)).toBe(true);
    expect(parseDn(formatDn(dn))[0]![0]!.value).toBe(' a,b ');
  });

  it.each(['title=x', 'CN', 'CN=a,,O=b', 'CN=#0403616263', 'CN=a\\', 'bogus=x', 'CN=\\ff'])(
    'when %s is given, then only DnSyntaxError is thrown (or it parses)',
    (text) => {
      try {
        parseDn(text);
      } catch (err) {
        expect(err).toBeInstanceOf(DnSyntaxError);
      }
    },
  );

  it('when a certificate subject has a title and values with spaces at their ends, then it is read from the DER', () => {
    const { certPem } = issueCustomClientCertificate('/C=GB/O=Example/title=Director/CN= tpp ');
    const subject = certificateSubject(new X509Certificate(certPem));
    expect(subject.map((rdn) => rdn.map((a) => `${a.type}=${a.value}`))).toEqual([
      ['CN= tpp '],
      ['TITLE=Director'],
      ['O=Example'],
      ['C=GB'],
    ]);
    expect(matchesRegisteredDn(subject, parseDn('CN=tpp,title=director,O=Example,C=GB'))).toBe(
      true,
    );
  });

  it('when a certificate subject has a multi-valued RDN, then it only matches a DN with that RDN', () => {
    const { certPem } = issueCustomClientCertificate('/C=GB/O=Example/CN=tpp+UID=42');
    const subject = certificateSubject(new X509Certificate(certPem));
    expect(matchesRegisteredDn(subject, parseDn('UID=42+CN=tpp,O=Example,C=GB'))).toBe(true);
    expect(matchesRegisteredDn(subject, parseDn('CN=tpp,UID=42,O=Example,C=GB'))).toBe(false);
  });
});
