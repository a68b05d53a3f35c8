// Certificate path checks for a client certificate that did not arrive in a TLS handshake (a
// TLS-terminating proxy forwards it in a header): what the handshake would have done, namely a
// chain of valid signatures up to a certificate in TLS_CLIENT_CA_FILE, every certificate within
// its validity dates, intermediates that are CAs, and a leaf usable for TLS client auth.
// Revocation (CRL/OCSP) is not checked here, as the handshake does not check it either.
import { X509Certificate } from 'node:crypto';

const MAX_CHAIN_LENGTH = 6;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

export type ChainFailure = 'malformed' | 'untrusted' | 'expired' | 'not_yet_valid' | 'wrong_usage';

export class CertificateChainError extends Error {
  override name = 'CertificateChainError';
  constructor(
    readonly failure: ChainFailure,
    message: string,
  ) {
    super(message);
  }
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM bundle (a CA file, or a leaf followed by its intermediates). */
export function parsePemCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw new CertificateChainError(
      'malformed',
      `unreadable certificate: ${(err as Error).message}`,
    );
  }
}

/**
 * Throws CertificateChainError unless `leaf` chains, through `intermediates` (as sent by the
 * client), to one of `trusted`, with every certificate on the path valid at `now`.
 */
export function verifyClientCertificateChain(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  trusted: readonly X509Certificate[],
  now: Date,
): void {
  checkClientUsage(leaf);
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN_LENGTH; depth++) {
    checkValidity(current, now);
    if (trusted.some((t) => t.raw.equals(current.raw))) return;
    const anchor = trusted.find((t) => issued(t, current));
    if (anchor) {
      checkValidity(anchor, now);
      return;
    }
    const next = intermediates.find((c) => c.ca && issued(c, current));
    if (!next) break;
    current = next;
  }
  throw new CertificateChainError(
    'untrusted',
    `no chain from "${oneLine(leaf.subject)}" to a trusted CA`,
  );
}

function issued(issuer: X509Certificate, subject: X509Certificate): boolean {
  try {
    return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function checkValidity(cert: X509Certificate, now: Date): void {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!Number.isFinite(from) || !Number.isFinite(to)) {
    throw new CertificateChainError(
      'malformed',
      `unreadable validity in "${oneLine(cert.subject)}"`,
    );
  }
  if (now.getTime() < from) {
    throw new CertificateChainError('not_yet_valid', `"${oneLine(cert.subject)}" is not yet valid`);
  }
  if (now.getTime() > to) {
    throw new CertificateChainError('expired', `"${oneLine(cert.subject)}" has expired`);
  }
}

function checkClientUsage(leaf: X509Certificate): void {
  if (leaf.ca) throw new CertificateChainError('wrong_usage', 'a CA certificate is not a client');
  const usages = leaf.keyUsage; // extended key usage OIDs, when the extension is present
  if (usages && !usages.includes(CLIENT_AUTH) && !usages.includes(ANY_EXTENDED_KEY_USAGE)) {
    throw new CertificateChainError('wrong_usage', 'the certificate is not for TLS client auth');
  }
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}
