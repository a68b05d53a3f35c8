// Development PKI: a local CA, a localhost server certificate and a demo TPP (transport
// certificate + PS256 signing key). Never for production: a bank brings its own server
// certificate and trusts the OB/eIDAS CAs; TPPs register their own keys.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import type { JWK } from 'jose';
import type * as Forge from 'node-forge';

// node-forge is CommonJS and attaches pki/md/util at run time, so they are not ESM named exports;
// require() also avoids depending on esModuleInterop for a default import.
const forge = createRequire(import.meta.url)('node-forge') as typeof Forge;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface DevPkiFiles {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  tppCert: string;
  tppKey: string;
  tppJwks: string;
  tppPrivateJwk: string;
}

/** The demo TPP written by writeDevPki (its client id is what `clients add` will use in the README). */
export const DEMO_TPP: { clientId: 'demo-tpp'; subjectDn: string } = {
  clientId: 'demo-tpp',
  subjectDn: 'CN=demo-tpp,OU=ob-events demo,O=ob-events,C=GB',
};

const DAY_MS = 24 * 60 * 60 * 1000;
// Certificates start an hour in the past so a peer whose clock is slightly behind accepts them.
const CLOCK_SKEW_MS = 60 * 60 * 1000;
const CA_VALID_DAYS = 3650;
const LEAF_VALID_DAYS = 730;

const FILE_NAMES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  tppCert: 'tpp.crt',
  tppKey: 'tpp.key',
  tppJwks: 'tpp.jwks.json',
  tppPrivateJwk: 'tpp.private.jwk.json',
} as const satisfies Record<Exclude<keyof DevPkiFiles, 'dir'>, string>;

type FileKey = keyof typeof FILE_NAMES;

// Files holding private keys are readable by the owner only.
const SECRET_FILES: ReadonlySet<FileKey> = new Set<FileKey>([
  'caKey',
  'serverKey',
  'tppKey',
  'tppPrivateJwk',
]);

export function devPkiFiles(dir: string): DevPkiFiles {
  const abs = path.resolve(dir);
  const files = { dir: abs } as DevPkiFiles;
  for (const [key, name] of Object.entries(FILE_NAMES) as [FileKey, string][]) {
    files[key] = path.join(abs, name);
  }
  return files;
}

export function devPkiComplete(dir: string): boolean {
  const files = devPkiFiles(dir);
  return (Object.keys(FILE_NAMES) as FileKey[]).every((key) => fs.existsSync(files[key]));
}

export async function writeDevPki(dir: string): Promise<DevPkiFiles> {
  // Everything is generated before the first write, so an interrupted run rarely leaves a mix
  // of old and new files behind.
  const ca = createCertificateAuthority('ob-events development CA');
  const server = issueCertificate(ca, {
    commonName: 'localhost',
    organization: 'ob-events',
    organizationalUnit: 'ob-events development',
    country: 'GB',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    usage: 'server',
  });
  const tpp = issueCertificate(ca, {
    commonName: 'demo-tpp',
    organizationalUnit: 'ob-events demo',
    organization: 'ob-events',
    country: 'GB',
    usage: 'client',
  });
  const signing = await createSigningKeyPair();

  const contents: Record<FileKey, string> = {
    caCert: ca.certPem,
    caKey: ca.keyPem,
    serverCert: server.certPem,
    serverKey: server.keyPem,
    tppCert: tpp.certPem,
    tppKey: tpp.keyPem,
    tppJwks: JSON.stringify({ keys: [signing.publicJwk] }, null, 2) + '\n',
    tppPrivateJwk: JSON.stringify(signing.privateJwk, null, 2) + '\n',
  };

  const files = devPkiFiles(dir);
  fs.mkdirSync(files.dir, { recursive: true });
  for (const key of Object.keys(FILE_NAMES) as FileKey[]) {
    const mode = SECRET_FILES.has(key) ? 0o600 : 0o644;
    fs.writeFileSync(files[key], contents[key], { mode });
    // The mode option only applies when the file is created; fix it when overwriting too.
    fs.chmodSync(files[key], mode);
  }
  return files;
}

export function createCertificateAuthority(commonName: string, validDays = CA_VALID_DAYS): PemPair {
  const keys = generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  setValidity(cert, new Date(Date.now() - CLOCK_SKEW_MS), validDays);
  const subject = [
    { shortName: 'C', value: 'GB' },
    { shortName: 'O', value: 'ob-events' },
    { shortName: 'CN', value: commonName },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    // Self-signed: the authority key id is the certificate's own key id.
    { name: 'authorityKeyIdentifier', keyIdentifier: true },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

export function issueCertificate(
  ca: PemPair,
  opts: {
    commonName: string;
    organization?: string;
    organizationalUnit?: string;
    country?: string;
    dnsNames?: string[];
    ipAddresses?: string[];
    usage: 'server' | 'client';
    validDays?: number;
    notBefore?: Date;
  },
): PemPair {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = generateRsaKeyPair();

  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  setValidity(
    cert,
    opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS),
    opts.validDays ?? LEAF_VALID_DAYS,
  );

  // ASN.1 order C, O, OU, CN: the RFC 4514 string then reads CN=...,OU=...,O=...,C=...
  const subject: Forge.pki.CertificateField[] = [];
  if (opts.country) subject.push({ shortName: 'C', value: opts.country });
  if (opts.organization) subject.push({ shortName: 'O', value: opts.organization });
  if (opts.organizationalUnit) subject.push({ shortName: 'OU', value: opts.organizationalUnit });
  subject.push({ shortName: 'CN', value: opts.commonName });
  cert.setSubject(subject);
  cert.setIssuer(caCert.subject.attributes);

  const altNames = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 2, value })), // dNSName
    ...(opts.ipAddresses ?? []).map((ip) => ({ type: 7, ip })), // iPAddress
  ];
  const extensions: object[] = [
    { name: 'basicConstraints', cA: false, critical: true },
    opts.usage === 'server'
      ? { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true }
      : { name: 'keyUsage', digitalSignature: true, critical: true },
    opts.usage === 'server'
      ? { name: 'extKeyUsage', serverAuth: true }
      : { name: 'extKeyUsage', clientAuth: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caKeyIdentifier(caCert) },
  ];
  if (altNames.length > 0) extensions.push({ name: 'subjectAltName', altNames });
  cert.setExtensions(extensions);

  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

export async function createSigningKeyPair(
  kid?: string,
): Promise<{ privateJwk: JWK; publicJwk: JWK; kid: string }> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const priv = privateKey.export({ format: 'jwk' });
  const { kty, n, e } = priv;
  if (kty !== 'RSA' || !n || !e) throw new Error('unexpected RSA JWK export');
  const keyId = kid ?? (await calculateJwkThumbprint({ kty, n, e }));
  const publicJwk: JWK = { kty, kid: keyId, use: 'sig', alg: 'PS256', n, e };
  const privateJwk: JWK = {
    ...publicJwk,
    d: priv.d,
    p: priv.p,
    q: priv.q,
    dp: priv.dp,
    dq: priv.dq,
    qi: priv.qi,
  };
  return { privateJwk, publicJwk, kid: keyId };
}

// node:crypto generates keys far faster than forge's pure-JS generator; forge only signs.
function generateRsaKeyPair(): {
  privateKey: Forge.pki.rsa.PrivateKey;
  publicKey: Forge.pki.rsa.PublicKey;
  privateKeyPem: string;
} {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    privateKey: forge.pki.privateKeyFromPem(privateKey),
    publicKey: forge.pki.publicKeyFromPem(publicKey) as Forge.pki.rsa.PublicKey,
    privateKeyPem: privateKey,
  };
}

// 128 random bits; the top bit is cleared (positive INTEGER) and the next one set, so the DER
// encoding never needs a leading zero byte.
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function setValidity(cert: Forge.pki.Certificate, notBefore: Date, validDays: number): void {
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = new Date(notBefore.getTime() + validDays * DAY_MS);
}

// The CA's own subject key id when it has one, else the same SHA-1 key hash forge would compute.
function caKeyIdentifier(caCert: Forge.pki.Certificate): string {
  const ext = caCert.getExtension('subjectKeyIdentifier') as
    { subjectKeyIdentifier?: string } | undefined;
  return ext?.subjectKeyIdentifier
    ? forge.util.hexToBytes(ext.subjectKeyIdentifier)
    : caCert.generateSubjectKeyIdentifier().getBytes();
}
