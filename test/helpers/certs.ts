// Certificates and CRLs with the exact properties a path-validation test needs (pathLen, key
// usage, critical extensions, revoked serials), built with node-forge and a small DER writer.
import { generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Forge from 'node-forge';
import { subjectDer } from '../../src/crypto/certificateChain.js';

const forge = createRequire(import.meta.url)('node-forge') as typeof Forge;

export interface TestCert {
  certPem: string;
  keyPem: string;
  x509: X509Certificate;
}

export interface CertOptions {
  cn: string;
  /** Absent: self-signed. */
  issuer?: { certPem: string; keyPem: string };
  ca?: boolean;
  pathLen?: number;
  /** forge keyUsage flags, e.g. { digitalSignature: true }; absent: no keyUsage extension. */
  keyUsage?: Record<string, boolean>;
  /** forge extKeyUsage flags, e.g. { clientAuth: true }; absent: no extKeyUsage extension. */
  extKeyUsage?: Record<string, boolean>;
  extra?: { id: string; critical: boolean; value: string }[];
}

export function makeCert(o: CertOptions): TestCert {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as Forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  cert.serialNumber = serial.toString('hex');
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + 30 * 86_400_000);
  cert.setSubject([{ shortName: 'CN', value: o.cn }]);
  const issuerCert = o.issuer ? forge.pki.certificateFromPem(o.issuer.certPem) : undefined;
  cert.setIssuer(issuerCert ? issuerCert.subject.attributes : [{ shortName: 'CN', value: o.cn }]);
  const ext: object[] = [
    o.pathLen === undefined
      ? { name: 'basicConstraints', cA: o.ca ?? false, critical: true }
      : { name: 'basicConstraints', cA: true, pathLenConstraint: o.pathLen, critical: true },
  ];
  if (o.keyUsage) ext.push({ name: 'keyUsage', critical: true, ...o.keyUsage });
  if (o.extKeyUsage) ext.push({ name: 'extKeyUsage', ...o.extKeyUsage });
  for (const e of o.extra ?? []) ext.push(e);
  cert.setExtensions(ext);
  const signer = o.issuer ? forge.pki.privateKeyFromPem(o.issuer.keyPem) : forgeKey;
  cert.sign(signer as Forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  const certPem = forge.pki.certificateToPem(cert);
  return { certPem, keyPem, x509: new X509Certificate(certPem) };
}

// --- a CRL (RFC 5280 §5.1), v2, sha256WithRSAEncryption ---

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len =
    n < 0x80
      ? Buffer.from([n])
      : n < 0x100
        ? Buffer.from([0x81, n])
        : n < 0x10000
          ? Buffer.from([0x82, n >> 8, n & 0xff])
          : Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, content]);
}
const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
function integer(hex: string): Buffer {
  let b = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const bytes = [a! * 40 + b!];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = n >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}
function utcTime(d: Date): Buffer {
  const s = d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  return tlv(0x17, Buffer.from(s, 'latin1'));
}

/** A PEM CRL of `ca` revoking `serials` (hex, as X509Certificate.serialNumber shows them). */
export function makeCrl(
  ca: { certPem: string; keyPem: string },
  serials: string[],
  opts: { nextUpdate?: Date; signWith?: string } = {},
): string {
  const alg = seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
  const now = new Date(Date.now() - 60_000);
  const entries = serials.map((s) => seq(integer(s), utcTime(now)));
  const tbs = seq(
    integer('01'),
    alg,
    subjectDer(new X509Certificate(ca.certPem)),
    utcTime(now),
    utcTime(opts.nextUpdate ?? new Date(Date.now() + 7 * 86_400_000)),
    ...(entries.length > 0 ? [seq(...entries)] : []),
  );
  const signature = sign('sha256', tbs, opts.signWith ?? ca.keyPem);
  const der = seq(tbs, alg, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN X509 CRL-----\n${b64}\n-----END X509 CRL-----\n`;
}
