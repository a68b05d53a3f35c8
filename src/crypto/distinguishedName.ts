// Distinguished names, compared as parsed values (RFC 4517 §4.2.15 distinguishedNameMatch): two
// names match when they have the same number of RDNs and the RDNs match position by position;
// two RDNs match when they hold the same number of attribute values and each of one matches one
// of the other (order inside a multi-valued RDN does not matter, but `CN=a+O=b` never matches
// `CN=a,O=b`).
//
// Values are compared by the attribute type's equality rule, as this deployment chooses to
// apply it (written down in the README, "Client authentication at /token"):
// - known directory-string types (CN, O, OU, C, L, ST, title, serialNumber, ...) and the IA5
//   types (emailAddress, DC): caseIgnoreMatch with RFC 4518's insignificant-space handling
//   (leading and trailing spaces dropped, inner runs of spaces count as one), case folded for
//   ASCII letters only. No Unicode compatibility folding (NFKC), no non-ASCII case folding:
//   full-width `ＣＮ` or a Kelvin sign is a different character, never a look-alike of one;
// - any other type, named by its dotted OID: the exact string.
//
// A registered DN is an RFC 4514 string, which lists the most specific RDN first; a certificate
// holds its RDNs the other way round (and OpenSSL prints them that way). The registered string
// is accepted in either order, as a whole: reversed, never shuffled.
//
// The certificate subject is read from the certificate's DER (its RDN structure and string
// values as encoded), not from a printed form, so escaping can never change what is compared.
import type { X509Certificate } from 'node:crypto';

export interface DnAttribute {
  /** Canonical short name (CN, O, ...) or the dotted OID when it has none. */
  type: string;
  value: string;
  /** A certificate value that is not a string type: hex of its DER, never equal to a string. */
  binary?: true;
}

/** One relative distinguished name: one attribute, or several (`CN=a+UID=b`). */
export type Rdn = DnAttribute[];

/** RDNs in RFC 4514 order: the most specific (CN) first. */
export type Dn = Rdn[];

// [canonical name, OID, other names]; all known types compare with caseIgnoreMatch.
const KNOWN: [string, string, ...string[]][] = [
  ['CN', '2.5.4.3', 'commonName'],
  ['SN', '2.5.4.4', 'surname'],
  ['SERIALNUMBER', '2.5.4.5', 'serialNumber'],
  ['C', '2.5.4.6', 'countryName'],
  ['L', '2.5.4.7', 'localityName'],
  ['ST', '2.5.4.8', 'stateOrProvinceName', 'S'],
  ['STREET', '2.5.4.9', 'streetAddress'],
  ['O', '2.5.4.10', 'organizationName'],
  ['OU', '2.5.4.11', 'organizationalUnitName'],
  ['TITLE', '2.5.4.12', 'title'],
  ['DESCRIPTION', '2.5.4.13', 'description'],
  ['BUSINESSCATEGORY', '2.5.4.15', 'businessCategory'],
  ['POSTALCODE', '2.5.4.17', 'postalCode'],
  ['POSTOFFICEBOX', '2.5.4.18', 'postOfficeBox'],
  ['NAME', '2.5.4.41', 'name'],
  ['GN', '2.5.4.42', 'givenName', 'G'],
  ['INITIALS', '2.5.4.43', 'initials'],
  ['GENERATIONQUALIFIER', '2.5.4.44', 'generationQualifier'],
  ['DNQUALIFIER', '2.5.4.46', 'dnQualifier'],
  ['PSEUDONYM', '2.5.4.65', 'pseudonym'],
  ['ORGANIZATIONIDENTIFIER', '2.5.4.97', 'organizationIdentifier'],
  ['UID', '0.9.2342.19200300.100.1.1', 'userId'],
  ['DC', '0.9.2342.19200300.100.1.25', 'domainComponent'],
  ['EMAILADDRESS', '1.2.840.113549.1.9.1', 'emailAddress', 'E'],
  ['JURISDICTIONL', '1.3.6.1.4.1.311.60.2.1.1', 'jurisdictionLocalityName'],
  ['JURISDICTIONST', '1.3.6.1.4.1.311.60.2.1.2', 'jurisdictionStateOrProvinceName'],
  ['JURISDICTIONC', '1.3.6.1.4.1.311.60.2.1.3', 'jurisdictionCountryName'],
];

const BY_NAME = new Map<string, string>();
const BY_OID = new Map<string, string>();
const CASE_IGNORE = new Set<string>();
for (const [canonical, oid, ...names] of KNOWN) {
  for (const n of [canonical, oid, ...names]) BY_NAME.set(n.toLowerCase(), canonical);
  BY_OID.set(oid, canonical);
  CASE_IGNORE.add(canonical);
}

const OID = /^[0-2](\.(0|[1-9]\d{0,9}))+$/;
const MAX_DN_LENGTH = 4_096;

export class DnSyntaxError extends Error {
  override name = 'DnSyntaxError';
}

/** Parses an RFC 4514 string (`CN=tpp,OU=x+O=y,C=GB`); throws DnSyntaxError. */
export function parseDn(text: string): Dn {
  if (text.length > MAX_DN_LENGTH) throw new DnSyntaxError('distinguished name too long');
  if (text.trim() === '') throw new DnSyntaxError('empty distinguished name');
  return splitUnescaped(text, [',', ';']).map((rdn) =>
    splitUnescaped(rdn, ['+']).map(parseAttribute),
  );
}

/**
 * The subject of a certificate, from its DER, in RFC 4514 order. Throws DnSyntaxError when the
 * certificate's encoding cannot be read (callers refuse the certificate; never a 500).
 */
export function certificateSubject(cert: X509Certificate): Dn {
  return subjectFromDer(new Uint8Array(cert.raw)).reverse();
}

/** RFC 4517 distinguishedNameMatch, RDN by RDN in the given order. */
export function sameDn(a: Dn, b: Dn): boolean {
  return a.length === b.length && a.every((rdn, i) => sameRdn(rdn, b[i]!));
}

/** A certificate subject against a registered DN written in either order (see the top). */
export function matchesRegisteredDn(subject: Dn, registered: Dn): boolean {
  return sameDn(subject, registered) || sameDn(subject, [...registered].reverse());
}

/** RFC 4514 string of a parsed DN (what is stored, so it parses back to the same DN). */
export function formatDn(dn: Dn): string {
  return dn.map((rdn) => rdn.map((a) => `${a.type}=${escapeValue(a.value)}`).join('+')).join(',');
}

function sameRdn(a: Rdn, b: Rdn): boolean {
  if (a.length !== b.length) return false;
  const left = a.map(matchKey).sort();
  const right = b.map(matchKey).sort();
  return left.every((k, i) => k === right[i]);
}

/** Type and value as the type's equality rule compares them. */
function matchKey(a: DnAttribute): string {
  if (a.binary) return `${a.type}#${a.value}`;
  return `${a.type}=${CASE_IGNORE.has(a.type) ? caseIgnore(a.value) : a.value}`;
}

// caseIgnoreMatch as chosen above: insignificant spaces (U+0020) and ASCII case only.
function caseIgnore(v: string): string {
  return v
    .replace(/^ +| +$/g, '')
    .replace(/ {2,}/g, ' ')
    .replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function canonicalType(raw: string): string {
  const known = BY_NAME.get(raw.toLowerCase());
  if (known) return known;
  if (OID.test(raw)) return raw;
  throw new DnSyntaxError(`unknown attribute type "${clip(raw)}" (use its dotted OID)`);
}

function parseAttribute(atv: string): DnAttribute {
  const eq = indexOfUnescaped(atv, '=');
  if (eq <= 0) throw new DnSyntaxError(`"${clip(atv.trim())}" is not type=value`);
  const type = canonicalType(atv.slice(0, eq).trim());
  const rawValue = trimUnescaped(atv.slice(eq + 1));
  if (rawValue.startsWith('#'))
    throw new DnSyntaxError('hex-encoded (#...) values are not supported');
  const value = unescapeValue(rawValue);
  if (value.trim() === '') throw new DnSyntaxError(`empty value for ${type}`);
  return { type, value };
}

/** Drops leading spaces and trailing spaces that are not escaped (`\ ` is part of the value). */
function trimUnescaped(raw: string): string {
  let end = raw.length;
  while (end > 0 && raw[end - 1] === ' ') {
    let slashes = 0;
    for (let i = end - 2; i >= 0 && raw[i] === '\\'; i--) slashes++;
    if (slashes % 2 === 1) break;
    end--;
  }
  return raw.slice(0, end).replace(/^ +/, '');
}

function unescapeValue(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch === '"') continue; // RFC 2253 quoting: the quotes are not part of the value
    if (ch !== '\\') {
      const code = raw.codePointAt(i)!;
      const text = String.fromCodePoint(code);
      bytes.push(...Buffer.from(text, 'utf8'));
      i += text.length - 1;
      continue;
    }
    const next = raw.slice(i + 1, i + 3);
    if (/^[0-9a-fA-F]{2}$/.test(next)) {
      bytes.push(parseInt(next, 16));
      i += 2;
    } else if (i + 1 < raw.length) {
      bytes.push(...Buffer.from(raw[i + 1]!, 'utf8'));
      i += 1;
    } else {
      throw new DnSyntaxError('value ends with a lone backslash');
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    throw new DnSyntaxError('escaped bytes are not valid UTF-8');
  }
}

function escapeValue(v: string): string {
  let out = v.replace(/([,+"\\<>;=])/g, '\\$1');
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

function splitUnescaped(text: string, separators: string[]): string[] {
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\' && i + 1 < text.length) {
      current += ch + text[i + 1];
      i += 1;
    } else if (ch === '"') {
      quoted = !quoted;
      current += ch;
    } else if (!quoted && separators.includes(ch)) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (quoted) throw new DnSyntaxError('unterminated quote');
  parts.push(current);
  if (parts.some((p) => p.trim() === '')) {
    throw new DnSyntaxError('empty relative distinguished name');
  }
  return parts;
}

function indexOfUnescaped(text: string, ch: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i += 1;
    else if (text[i] === ch) return i;
  }
  return -1;
}

function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 63)}…` : s;
}

// --- The subject Name from a certificate's DER (RFC 5280 §4.1.2.6), RDNs in DER order. ---

interface Tlv {
  tag: number;
  start: number; // first content byte
  end: number; // one past the last content byte
}

function readTlv(der: Uint8Array, at: number, limit: number): Tlv {
  const bad = () => new DnSyntaxError('certificate encoding unreadable');
  if (at + 2 > limit) throw bad();
  const tag = der[at]!;
  if ((tag & 0x1f) === 0x1f) throw bad(); // multi-byte tags do not occur in a Name
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw bad();
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[start + i]!;
    start += n;
  }
  const end = start + length;
  if (end > limit) throw bad();
  return { tag, start, end };
}

function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end;) {
    const child = readTlv(der, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

function subjectFromDer(der: Uint8Array): Dn {
  const certificate = readTlv(der, 0, der.length);
  const tbs = children(der, certificate)[0];
  if (!tbs) throw new DnSyntaxError('certificate encoding unreadable');
  const fields = children(der, tbs);
  // version [0] is optional; then serial, signature, issuer, validity, subject.
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[offset + 4];
  if (!subject || subject.tag !== 0x30) throw new DnSyntaxError('certificate has no subject');
  return children(der, subject).map((set) => {
    if (set.tag !== 0x31) throw new DnSyntaxError('certificate subject unreadable');
    return children(der, set).map((atv) => {
      const [oid, value] = children(der, atv);
      if (!oid || oid.tag !== 0x06 || !value)
        throw new DnSyntaxError('subject attribute unreadable');
      const dotted = decodeOid(der.subarray(oid.start, oid.end));
      const type = BY_OID.get(dotted) ?? dotted;
      const text = decodeString(value.tag, der.subarray(value.start, value.end));
      return text === undefined
        ? {
            type,
            value: Buffer.from(der.subarray(atv.start, atv.end)).toString('hex'),
            binary: true,
          }
        : { type, value: text };
    });
  });
}

function decodeOid(bytes: Uint8Array): string {
  const arcs: number[] = [];
  let n = 0;
  for (const b of bytes) {
    n = n * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      if (arcs.length === 0) arcs.push(n < 80 ? Math.floor(n / 40) : 2, n < 80 ? n % 40 : n - 80);
      else arcs.push(n);
      n = 0;
    }
  }
  return arcs.join('.');
}

// A value we cannot read as a string is undefined: it is kept as binary, which no registered
// DN can equal (RFC 4514 writes such values as #hex, and registration refuses those).
function decodeString(tag: number, bytes: Uint8Array): string | undefined {
  const unreadable = () => undefined;
  try {
    switch (tag) {
      case 0x0c: // UTF8String
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      case 0x13: // PrintableString
      case 0x16: // IA5String
      case 0x1a: // VisibleString
        if (bytes.some((b) => b > 0x7f)) return unreadable();
        return Buffer.from(bytes).toString('latin1');
      case 0x14: // TeletexString: in practice Latin-1
        return Buffer.from(bytes).toString('latin1');
      case 0x1e: // BMPString: UTF-16BE
        return new TextDecoder('utf-16be', { fatal: true }).decode(bytes);
      case 0x1c: {
        // UniversalString: UTF-32BE
        if (bytes.length % 4 !== 0) return unreadable();
        let s = '';
        for (let i = 0; i < bytes.length; i += 4) {
          s += String.fromCodePoint(Buffer.from(bytes.subarray(i, i + 4)).readUInt32BE(0));
        }
        return s;
      }
      default:
        return unreadable();
    }
  } catch {
    return unreadable();
  }
}
