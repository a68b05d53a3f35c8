// The proxy header path's chain checks, as strict as OpenSSL's handshake for a TLS client, and
// CRL revocation (src/crypto/revocation.ts). One negative test per rule.
import { randomBytes, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CertificateChainError,
  verifyClientCertificateChain,
} from '../src/crypto/certificateChain.js';
import { RevocationLists } from '../src/crypto/revocation.js';
import { makeCert, makeCrl, type TestCert } from './helpers/certs.js';

const CA_USAGE = { keyCertSign: true, cRLSign: true };
const CLIENT = {
  keyUsage: { digitalSignature: true },
  extKeyUsage: { clientAuth: true },
};
const now = () => new Date();

function failure(leaf: TestCert, intermediates: TestCert[], root: TestCert): string | undefined {
  try {
    verifyClientCertificateChain(
      leaf.x509,
      intermediates.map((c) => c.x509),
      [root.x509],
      now(),
    );
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(CertificateChainError);
    return (err as CertificateChainError).failure;
  }
}

describe('client certificate chain checks', () => {
  const root = makeCert({ cn: 'root', ca: true, keyUsage: CA_USAGE });

  it('when a CA with pathLen 0 has an intermediate below it, then the chain is refused', () => {
    const strict = makeCert({ cn: 'pathlen0', issuer: root, pathLen: 0, keyUsage: CA_USAGE });
    const below = makeCert({ cn: 'below', issuer: strict, ca: true, keyUsage: CA_USAGE });
    const leaf = makeCert({ cn: 'tpp', issuer: below, ...CLIENT });
    expect(failure(leaf, [below, strict], root)).toBe('path_too_long');
    // Directly under the pathLen 0 CA is fine.
    const direct = makeCert({ cn: 'tpp', issuer: strict, ...CLIENT });
    expect(failure(direct, [strict], root)).toBeUndefined();
  });

  it('when the leaf has an unknown critical extension, then the chain is refused (non-critical is fine)', () => {
    const critical = makeCert({
      cn: 'tpp',
      issuer: root,
      ...CLIENT,
      extra: [{ id: '1.3.6.1.4.1.99999.1', critical: true, value: '\x05\x00' }],
    });
    expect(failure(critical, [], root)).toBe('unknown_critical_extension');
    const informational = makeCert({
      cn: 'tpp',
      issuer: root,
      ...CLIENT,
      extra: [{ id: '1.3.6.1.4.1.99999.1', critical: false, value: '\x05\x00' }],
    });
    expect(failure(informational, [], root)).toBeUndefined();
  });

  it('when an intermediate has an unknown critical extension, then the chain is refused', () => {
    const odd = makeCert({
      cn: 'odd CA',
      issuer: root,
      ca: true,
      keyUsage: CA_USAGE,
      extra: [{ id: '1.3.6.1.4.1.99999.2', critical: true, value: '\x05\x00' }],
    });
    const leaf = makeCert({ cn: 'tpp', issuer: odd, ...CLIENT });
    expect(failure(leaf, [odd], root)).toBe('unknown_critical_extension');
  });

  it('when the leaf key usage allows no TLS signature (keyEncipherment only), then the chain is refused', () => {
    const leaf = makeCert({
      cn: 'tpp',
      issuer: root,
      keyUsage: { keyEncipherment: true },
      extKeyUsage: { clientAuth: true },
    });
    expect(failure(leaf, [], root)).toBe('wrong_usage');
  });

  it('when an intermediate CA lacks keyCertSign, then the chain is refused', () => {
    const weak = makeCert({ cn: 'weak CA', issuer: root, ca: true, keyUsage: { cRLSign: true } });
    const leaf = makeCert({ cn: 'tpp', issuer: weak, ...CLIENT });
    // OpenSSL's issuer check already declines it as an issuer: no chain at all.
    expect(failure(leaf, [weak], root)).toMatch(/^(wrong_usage|untrusted)$/);
  });

  it('when an intermediate restricts extended key usage to serverAuth, then the chain is refused', () => {
    const serverOnly = makeCert({
      cn: 'server CA',
      issuer: root,
      ca: true,
      keyUsage: CA_USAGE,
      extKeyUsage: { serverAuth: true },
    });
    const leaf = makeCert({ cn: 'tpp', issuer: serverOnly, ...CLIENT });
    expect(failure(leaf, [serverOnly], root)).toBe('wrong_usage');
  });
});

describe('CRL revocation', () => {
  const ca = makeCert({ cn: 'issuing CA', ca: true, keyUsage: CA_USAGE });
  const revoked = makeCert({ cn: 'revoked tpp', issuer: ca, ...CLIENT });
  const good = makeCert({ cn: 'good tpp', issuer: ca, ...CLIENT });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-crl-'));

  function lists(pem: string, name = `${randomBytes(4).toString('hex')}.crl`) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, pem);
    const errors: string[] = [];
    let clock = Date.now();
    const crls = new RevocationLists({
      files: [file],
      reloadMs: 1000,
      now: () => clock,
      onReloadError: (e) => errors.push(e.message),
    });
    return { crls, file, errors, advance: (ms: number) => (clock += ms) };
  }

  it("when the certificate serial is in its CA's CRL, then it is revoked; others are not", () => {
    const { crls } = lists(makeCrl(ca, [revoked.x509.serialNumber]));
    expect(crls.isRevoked(revoked.x509, ca.x509)).toBe(true);
    expect(crls.isRevoked(good.x509, ca.x509)).toBe(false);
    expect(() =>
      verifyClientCertificateChain(revoked.x509, [], [ca.x509], now(), (c, i) =>
        crls.isRevoked(c, i),
      ),
    ).toThrow(/revoked/);
  });

  it('when the CRL file is replaced, then the new list applies without a restart', () => {
    const { crls, file, advance } = lists(makeCrl(ca, []));
    expect(crls.isRevoked(good.x509, ca.x509)).toBe(false);
    fs.writeFileSync(file, makeCrl(ca, [good.x509.serialNumber, revoked.x509.serialNumber]));
    advance(1_000);
    expect(crls.isRevoked(good.x509, ca.x509)).toBe(true);
  });

  it('when the replaced CRL file does not parse, then the previous list stays and the error is reported', () => {
    const { crls, file, errors, advance } = lists(makeCrl(ca, [revoked.x509.serialNumber]));
    fs.writeFileSync(file, 'garbage');
    advance(1_000);
    expect(crls.isRevoked(revoked.x509, ca.x509)).toBe(true);
    expect(errors.join()).toMatch(/not a readable CRL/);
  });

  it('when the CRL names the CA but is signed by another key, then the check fails closed', () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const { crls } = lists(makeCrl(ca, [], { signWith: other }));
    expect(() => crls.isRevoked(good.x509, ca.x509)).toThrow(CertificateChainError);
  });

  it('when the CRL is past its nextUpdate, then the check fails closed', () => {
    const { crls } = lists(makeCrl(ca, [], { nextUpdate: new Date(Date.now() - 1_000) }));
    expect(() => crls.isRevoked(good.x509, ca.x509)).toThrow(/expired/);
  });

  it('when no CRL covers the issuing CA, then the certificate is not revoked', () => {
    const otherCa = makeCert({ cn: 'other CA', ca: true, keyUsage: CA_USAGE });
    const { crls } = lists(makeCrl(otherCa, [good.x509.serialNumber]));
    expect(crls.isRevoked(good.x509, ca.x509)).toBe(false);
  });

  it('when a CRL file is not a CRL at start-up, then loading fails with the file name', () => {
    expect(() => lists('not a crl', 'bad.crl')).toThrow(/bad\.crl: not a readable CRL/);
  });
});
