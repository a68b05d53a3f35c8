// Distinguished names, compared as parsed values rather than strings: `CN=tpp, O=Example` and
// `o=example,cn=TPP` are the same name (attribute types by OID, values case- and
// space-insensitively as X.520's caseIgnoreMatch does). RDN order is not significant here: a
// registered DN and a certificate subject are often written in opposite orders (RFC 4514 puts
// the most specific RDN first, certificates and many tools the other way round).
import type { X509Certificate } from 'node:crypto';

export interface DnAttribute {
  /** Canonical short name (CN, O, ...) or the dotted OID when it has none. */
  type: string;
  value: string;
}

// Names as RFC 4514 and OpenSSL write them, lower-cased, to canonical types.
const TYPES: Record<string, string> = {
  cn: 'CN',
  commonname: 'CN',
  '2.5.4.3': 'CN',
  c: 'C',
  countryname: 'C',
  '2.5.4.6': 'C',
  l: 'L',
  localityname: 'L',
  '2.5.4.7': 'L',
  st: 'ST',
  stateorprovincename: 'ST',
  '2.5.4.8': 'ST',
  o: 'O',
  organizationname: 'O',
  '2.5.4.10': 'O',
  ou: 'OU',
  organizationalunitname: 'OU',
  '2.5.4.11': 'OU',
  street: 'STREET',
  streetaddress: 'STREET',
  '2.5.4.9': 'STREET',
  dc: 'DC',
  domaincomponent: 'DC',
  '0.9.2342.19200300.100.1.25': 'DC',
  uid: 'UID',
  userid: 'UID',
  '0.9.2342.19200300.100.1.1': 'UID',
  serialnumber: 'SERIALNUMBER',
  '2.5.4.5': 'SERIALNUMBER',
  organizationidentifier: 'ORGANIZATIONIDENTIFIER',
  '2.5.4.97': 'ORGANIZATIONIDENTIFIER',
  emailaddress: 'EMAILADDRESS',
  e: 'EMAILADDRESS',
  '1.2.840.113549.1.9.1': 'EMAILADDRESS',
};

export class DnSyntaxError extends Error {
  override name = 'DnSyntaxError';
}

/** Parses an RFC 4514 string (`CN=tpp,OU=x+O=y,C=GB`); throws DnSyntaxError. */
export function parseDn(text: string): DnAttribute[] {
  if (text.trim() === '') throw new DnSyntaxError('empty distinguished name');
  const attrs: DnAttribute[] = [];
  for (const rdn of splitUnescaped(text, [',', ';'])) {
    for (const atv of splitUnescaped(rdn, ['+'])) attrs.push(parseAttribute(atv));
  }
  return attrs;
}

/** The subject of a certificate as attributes (from Node's RFC 2253-escaped, multi-line form). */
export function certificateSubject(cert: X509Certificate): DnAttribute[] {
  const attrs: DnAttribute[] = [];
  for (const line of cert.subject.split('\n')) {
    if (line === '') continue;
    for (const atv of splitUnescaped(line, ['+'])) attrs.push(parseAttribute(atv));
  }
  return attrs;
}

/** Same attributes (as a multiset), whatever their order or the spelling of types and values. */
export function sameDn(a: DnAttribute[], b: DnAttribute[]): boolean {
  if (a.length !== b.length) return false;
  const key = (x: DnAttribute) => `${x.type}=${normalizeValue(x.value)}`;
  const left = a.map(key).sort();
  const right = b.map(key).sort();
  return left.every((k, i) => k === right[i]);
}

export function formatDn(attrs: DnAttribute[]): string {
  return attrs.map((a) => `${a.type}=${a.value.replace(/([,+"\\<>;=])/g, '\\$1')}`).join(',');
}

function normalizeValue(v: string): string {
  return v.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
}

function parseAttribute(atv: string): DnAttribute {
  const eq = indexOfUnescaped(atv, '=');
  if (eq <= 0) throw new DnSyntaxError(`"${atv.trim()}" is not type=value`);
  const rawType = atv.slice(0, eq).trim();
  const lower = rawType.toLowerCase();
  const type = TYPES[lower] ?? (/^\d+(\.\d+)+$/.test(rawType) ? rawType : undefined);
  if (!type) throw new DnSyntaxError(`unknown attribute type "${rawType}"`);
  const rawValue = atv.slice(eq + 1).trim();
  if (rawValue.startsWith('#'))
    throw new DnSyntaxError('hex-encoded (#...) values are not supported');
  const value = unescapeValue(rawValue);
  if (value === '') throw new DnSyntaxError(`empty value for ${rawType}`);
  return { type, value };
}

function unescapeValue(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch !== '\\') {
      bytes.push(...Buffer.from(ch, 'utf8'));
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
  return Buffer.from(bytes).toString('utf8');
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
    } else if (!quoted && separators.includes(ch)) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (quoted) throw new DnSyntaxError('unterminated quote');
  parts.push(current);
  const trimmed = parts.map((p) => p.trim());
  if (trimmed.some((p) => p === '')) throw new DnSyntaxError('empty relative distinguished name');
  return trimmed;
}

function indexOfUnescaped(text: string, ch: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i += 1;
    else if (text[i] === ch) return i;
  }
  return -1;
}
