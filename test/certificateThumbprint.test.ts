// The RFC 8705 thumbprint, remembered per certificate object: the value must stay the SHA-256 of
// that certificate's DER, whichever object or form it is asked for.
import { createHash, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { certificateThumbprint } from '../src/crypto/certificateThumbprint.js';
import { createCertificateAuthority, issueCertificate } from '../src/crypto/devPki.js';

const sha256 = (der: Buffer) => createHash('sha256').update(der).digest('base64url');

describe('certificateThumbprint', () => {
  const ca = createCertificateAuthority('thumbprint test CA');
  const a = new X509Certificate(
    issueCertificate(ca, { commonName: 'tpp-a', usage: 'client' }).certPem,
  );
  const b = new X509Certificate(
    issueCertificate(ca, { commonName: 'tpp-b', usage: 'client' }).certPem,
  );

  it('when asked again for the same certificate object, then it answers the SHA-256 of its DER each time', () => {
    expect(certificateThumbprint(a)).toBe(sha256(a.raw));
    expect(certificateThumbprint(a)).toBe(sha256(a.raw));
  });

  it('when two certificates are asked in turn, then each gets its own thumbprint', () => {
    expect(certificateThumbprint(a)).not.toBe(certificateThumbprint(b));
    expect(certificateThumbprint(b)).toBe(sha256(b.raw));
  });

  it('when given the DER bytes or another object of the same certificate, then the same value', () => {
    expect(certificateThumbprint(a.raw)).toBe(certificateThumbprint(a));
    expect(certificateThumbprint(new X509Certificate(a.raw))).toBe(certificateThumbprint(a));
  });
});
