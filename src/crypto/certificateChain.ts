// Certificate path checks for a client certificate that did not arrive in a TLS handshake (a
// TLS-terminating proxy forwards it in a header), as strict as OpenSSL's handshake checks for a
// TLS client ("sslclient" purpose): a chain of valid signatures up to a certificate in
// TLS_CLIENT_CA_FILE; every certificate within its validity dates; no critical extension we do
// not understand; issuers that are CAs (basicConstraints), with keyCertSign when they carry a
// key usage, and whose pathLenConstraint allows the intermediates below them; a leaf that is not
// a CA, with digitalSignature (or keyAgreement) when it carries a key usage; and an extended key
// usage, wherever present on the path, that allows clientAuth. Revocation (CRL_FILES) is checked
// by the caller-supplied `isRevoked`, for both modes (src/crypto/revocation.ts).
import { X509Certificate } from 'node:crypto';
import { children, DerError, expectTag, oid, readTlv, smallInteger, TAG, type Tlv } from './der.js';

const MAX_CHAIN_LENGTH = 6;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

export type ChainFailure =
  | 'malformed'
  | 'untrusted'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_usage'
  | 'path_too_long'
  | 'unknown_critical_extension'
  | 'revoked'
  | 'revocation_unknown';

/** Extensions whose criticality we can honour: the ones checked here, and informational ones. */
const UNDERSTOOD_EXTENSIONS = new Set([
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.15', // keyUsage (checked)
  '2.5.29.17', // subjectAltName
  '2.5.29.18', // issuerAltName
  '2.5.29.19', // basicConstraints (checked)
  '2.5.29.31', // cRLDistributionPoints
  '2.5.29.32', // certificatePolicies (no policy constraints are required of the path)
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.37', // extKeyUsage (checked)
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
  '1.3.6.1.5.5.7.1.3', // qcStatements (eIDAS)
]);
const BASIC_CONSTRAINTS = '2.5.29.19';
const KEY_USAGE = '2.5.29.15';

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
 * client), to one of `trusted`, with every certificate on the path valid at `now` and usable as
 * described at the top of this file. `isRevoked(cert, issuer)` is asked for every certificate
 * below the trust anchor.
 */
export function verifyClientCertificateChain(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  trusted: readonly X509Certificate[],
  now: Date,
  isRevoked: (cert: X509Certificate, issuer: X509Certificate) => boolean = () => false,
): void {
  checkClientUsage(leaf);
  const path = buildPath(leaf, intermediates, trusted);
  path.forEach((cert, i) => {
    checkValidity(cert, now);
    checkExtensions(cert, i);
  });
  for (let i = 0; i + 1 < path.length; i++) {
    if (isRevoked(path[i]!, path[i + 1]!)) {
      throw new CertificateChainError('revoked', `"${oneLine(path[i]!.subject)}" is revoked`);
    }
  }
}

/** [leaf, intermediates..., trust anchor]; the anchor is the leaf's last issuer in `trusted`. */
function buildPath(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  trusted: readonly X509Certificate[],
): X509Certificate[] {
  const path = [leaf];
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN_LENGTH; depth++) {
    if (depth > 0 && trusted.some((t) => t.raw.equals(current.raw))) return path;
    const anchor = trusted.find((t) => issued(t, current));
    if (anchor) {
      if (!anchor.raw.equals(current.raw)) path.push(anchor);
      return path;
    }
    const next = intermediates.find((c) => c.ca && issued(c, current));
    if (!next || path.includes(next)) break;
    path.push(next);
    current = next;
  }
  throw new CertificateChainError(
    'untrusted',
    `no chain from "${oneLine(leaf.subject)}" to a trusted CA`,
  );
}

/**
 * `index` 0 is the leaf; a CA at `index` i has i - 1 intermediates below it, which its
 * pathLenConstraint must allow (RFC 5280 §4.2.1.9).
 */
function checkExtensions(cert: X509Certificate, index: number): void {
  let extensions: CertificateExtension[];
  try {
    extensions = certificateExtensions(cert);
  } catch (err) {
    throw new CertificateChainError(
      'malformed',
      `unreadable extensions in "${oneLine(cert.subject)}": ${(err as Error).message}`,
    );
  }
  const name = oneLine(cert.subject);
  for (const ext of extensions) {
    if (ext.critical && !UNDERSTOOD_EXTENSIONS.has(ext.oid)) {
      throw new CertificateChainError(
        'unknown_critical_extension',
        `"${name}" has a critical extension ${ext.oid} that is not understood`,
      );
    }
  }
  const eku = cert.keyUsage;
  if (eku && !eku.includes(CLIENT_AUTH) && !eku.includes(ANY_EXTENDED_KEY_USAGE)) {
    throw new CertificateChainError('wrong_usage', `"${name}" is not for TLS client auth`);
  }
  const ku = keyUsageBits(extensions);
  if (index === 0) {
    if (ku !== undefined && !(ku & (KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT))) {
      throw new CertificateChainError(
        'wrong_usage',
        `"${name}": key usage allows no TLS signature`,
      );
    }
    return;
  }
  const bc = basicConstraints(extensions);
  if (!bc?.ca) throw new CertificateChainError('wrong_usage', `"${name}" is not a CA`);
  if (ku !== undefined && !(ku & KU_KEY_CERT_SIGN)) {
    throw new CertificateChainError('wrong_usage', `"${name}": key usage lacks keyCertSign`);
  }
  if (bc.pathLen !== undefined && index - 1 > bc.pathLen) {
    throw new CertificateChainError(
      'path_too_long',
      `"${name}" allows ${bc.pathLen} intermediate(s) below it, the path has ${index - 1}`,
    );
  }
}

export interface CertificateExtension {
  oid: string;
  critical: boolean;
  value: Buffer;
}

/** The tbsCertificate's fields (RFC 5280 §4.1), for the subject, issuer and extensions. */
export function tbsFields(cert: X509Certificate): Tlv[] {
  const certificate = expectTag(readTlv(cert.raw), TAG.SEQUENCE, 'Certificate');
  const tbs = expectTag(children(certificate.content)[0], TAG.SEQUENCE, 'tbsCertificate');
  const fields = children(tbs.content);
  return fields[0]?.tag === 0xa0 ? fields.slice(1) : fields; // without the [0] version
}

/** The subject Name, DER-encoded (compared byte for byte with a CRL's issuer). */
export function subjectDer(cert: X509Certificate): Buffer {
  return expectTag(tbsFields(cert)[4], TAG.SEQUENCE, 'subject').raw;
}

export function certificateExtensions(cert: X509Certificate): CertificateExtension[] {
  const wrapper = tbsFields(cert).find((f) => f.tag === 0xa3);
  if (!wrapper) return [];
  const list = expectTag(readTlv(wrapper.content), TAG.SEQUENCE, 'Extensions');
  return children(list.content).map((e) => {
    const parts = children(expectTag(e, TAG.SEQUENCE, 'Extension').content);
    const critical = parts[1]?.tag === TAG.BOOLEAN ? parts[1].content[0] !== 0 : false;
    const value = expectTag(parts[parts.length - 1], TAG.OCTET_STRING, 'extnValue').content;
    return { oid: oid(parts[0]!), critical, value };
  });
}

const KU_DIGITAL_SIGNATURE = 0x80;
const KU_KEY_AGREEMENT = 0x08;
const KU_KEY_CERT_SIGN = 0x04;

/** The first byte of the keyUsage BIT STRING (the bits checked here all live there). */
function keyUsageBits(extensions: CertificateExtension[]): number | undefined {
  const ext = extensions.find((e) => e.oid === KEY_USAGE);
  if (!ext) return undefined;
  const bits = expectTag(readTlv(ext.value), TAG.BIT_STRING, 'keyUsage').content;
  return bits[1] ?? 0;
}

function basicConstraints(
  extensions: CertificateExtension[],
): { ca: boolean; pathLen: number | undefined } | undefined {
  const ext = extensions.find((e) => e.oid === BASIC_CONSTRAINTS);
  if (!ext) return undefined;
  const parts = children(expectTag(readTlv(ext.value), TAG.SEQUENCE, 'basicConstraints').content);
  let i = 0;
  let ca = false;
  if (parts[i]?.tag === TAG.BOOLEAN) ca = parts[i++]!.content[0] !== 0;
  const pathLen = parts[i]?.tag === TAG.INTEGER ? smallInteger(parts[i]!) : undefined;
  return { ca, pathLen };
}

export { DerError };

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
