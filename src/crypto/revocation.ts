// Certificate revocation from CRL files (CRL_FILES): one CRL (PEM or DER) per CA that issues
// client certificates, published by that CA. Checked for the TPP's certificate and every
// intermediate below the trust anchor, in both modes (after the TLS handshake, and in the proxy
// header path). Rules a bank's reviewer would ask about:
// - a CRL counts only when its issuer name equals the CA's subject and its signature verifies
//   with the CA's key; a CRL that names the CA but does not verify fails closed;
// - a CRL past its nextUpdate fails closed (as OpenSSL does): refresh the files before then;
// - a CA without a CRL file is not checked (list one for each CA you trust);
// - the files are re-read when their size or mtime changes (looked at most every
//   CRL_RELOAD_SECONDS), with no restart; a file that no longer parses keeps the previous lists
//   and is logged as an error. At start-up a bad file stops the process.
// OCSP (and OCSP stapling) is the next step and is not built.
import { verify, type X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { CertificateChainError, subjectDer } from './certificateChain.js';
import { children, expectTag, integerHex, oid, readTlv, TAG, time } from './der.js';

export interface Crl {
  file: string;
  issuerDer: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  revokedSerials: Set<string>;
  tbs: Buffer;
  signatureAlgorithm: string;
  signature: Buffer;
}

const SIGNATURE_HASHES: Record<string, string> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

/** CRL extensions we may meet as critical and still apply correctly (full CRLs only). */
const UNDERSTOOD_CRL_EXTENSIONS = new Set([
  '2.5.29.20', // cRLNumber
  '2.5.29.35', // authorityKeyIdentifier
]);

export function serialKey(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}

/** Parses one CRL (PEM "X509 CRL" or DER); throws with the file name on anything unexpected. */
export function parseCrl(file: string, bytes: Buffer): Crl {
  try {
    const text = bytes.toString('latin1');
    const pem = /-----BEGIN X509 CRL-----([\s\S]+?)-----END X509 CRL-----/.exec(text);
    const der = pem ? Buffer.from(pem[1]!.replace(/\s+/g, ''), 'base64') : bytes;
    const list = children(expectTag(readTlv(der), TAG.SEQUENCE, 'CertificateList').content);
    const tbs = expectTag(list[0], TAG.SEQUENCE, 'tbsCertList');
    const signatureAlgorithm = oid(children(expectTag(list[1], TAG.SEQUENCE, 'alg').content)[0]!);
    if (!SIGNATURE_HASHES[signatureAlgorithm]) {
      throw new Error(`signature algorithm ${signatureAlgorithm} is not supported`);
    }
    const sigBits = expectTag(list[2], TAG.BIT_STRING, 'signature').content;
    const f = children(tbs.content);
    let i = f[0]?.tag === TAG.INTEGER ? 1 : 0; // version v2
    i++; // signature AlgorithmIdentifier
    const issuerDer = expectTag(f[i++], TAG.SEQUENCE, 'issuer').raw;
    const thisUpdate = time(f[i++]!);
    let nextUpdate: Date | undefined;
    if (f[i]?.tag === TAG.UTC_TIME || f[i]?.tag === TAG.GENERALIZED_TIME)
      nextUpdate = time(f[i++]!);
    const revokedSerials = new Set<string>();
    if (f[i]?.tag === TAG.SEQUENCE) {
      for (const entry of children(f[i++]!.content)) {
        const parts = children(expectTag(entry, TAG.SEQUENCE, 'revoked entry').content);
        revokedSerials.add(serialKey(integerHex(parts[0]!)));
      }
    }
    if (f[i]?.tag === 0xa0) {
      const exts = children(
        expectTag(readTlv(f[i]!.content), TAG.SEQUENCE, 'crlExtensions').content,
      );
      for (const e of exts) {
        const parts = children(e.content);
        const critical = parts[1]?.tag === TAG.BOOLEAN && parts[1].content[0] !== 0;
        const id = oid(parts[0]!);
        if (critical && !UNDERSTOOD_CRL_EXTENSIONS.has(id)) {
          throw new Error(`critical CRL extension ${id} (delta or partial CRLs) is not supported`);
        }
      }
    }
    return {
      file,
      issuerDer,
      thisUpdate,
      nextUpdate,
      revokedSerials,
      tbs: tbs.raw,
      signatureAlgorithm,
      signature: sigBits.subarray(1),
    };
  } catch (err) {
    throw new Error(`CRL_FILES ${file}: not a readable CRL (${(err as Error).message})`);
  }
}

export interface RevocationDeps {
  files: readonly string[];
  reloadMs: number;
  now: () => number;
  onReloadError: (err: Error) => void;
  onReloaded?: (files: readonly string[]) => void;
}

export class RevocationLists {
  private crls: Crl[];
  private stamps: string;
  private checkedAt: number;
  /** Which (CRL, CA) signatures verified, so each is verified once per load. */
  private verified = new Map<string, boolean>();

  constructor(private readonly deps: RevocationDeps) {
    this.stamps = this.currentStamps();
    this.crls = this.readAll();
    this.checkedAt = deps.now();
  }

  /** False when no CRL covers `issuer`; throws CertificateChainError when it cannot tell. */
  isRevoked(cert: X509Certificate, issuer: X509Certificate): boolean {
    this.reloadIfChanged();
    const name = subjectDer(issuer);
    const crls = this.crls.filter((c) => c.issuerDer.equals(name));
    if (crls.length === 0) return false;
    const valid = crls.filter((c) => this.signatureVerifies(c, issuer));
    if (valid.length === 0) {
      throw new CertificateChainError(
        'revocation_unknown',
        `no CRL for "${issuer.subject.split('\n').join(', ')}" verifies with its key`,
      );
    }
    const now = this.deps.now();
    const current = valid.filter(
      (c) => c.nextUpdate === undefined || c.nextUpdate.getTime() >= now,
    );
    if (current.length === 0) {
      throw new CertificateChainError(
        'revocation_unknown',
        `the CRL of the issuing CA has expired`,
      );
    }
    const serial = serialKey(cert.serialNumber);
    return current.some((c) => c.revokedSerials.has(serial));
  }

  private signatureVerifies(crl: Crl, issuer: X509Certificate): boolean {
    const key = `${crl.file}\0${crl.thisUpdate.getTime()}\0${issuer.fingerprint256}`;
    let ok = this.verified.get(key);
    if (ok === undefined) {
      try {
        ok = verify(
          SIGNATURE_HASHES[crl.signatureAlgorithm]!,
          crl.tbs,
          issuer.publicKey,
          crl.signature,
        );
      } catch {
        ok = false;
      }
      this.verified.set(key, ok);
    }
    return ok;
  }

  private reloadIfChanged(): void {
    const now = this.deps.now();
    if (now - this.checkedAt < this.deps.reloadMs) return;
    this.checkedAt = now;
    let stamps: string;
    try {
      stamps = this.currentStamps();
      if (stamps === this.stamps) return;
      const crls = this.readAll();
      this.crls = crls;
      this.stamps = stamps;
      this.verified.clear();
      this.deps.onReloaded?.(this.deps.files);
    } catch (err) {
      this.deps.onReloadError(err as Error);
    }
  }

  private currentStamps(): string {
    return this.deps.files
      .map((f) => {
        const st = fs.statSync(f);
        return `${f}:${st.size}:${st.mtimeMs}`;
      })
      .join('|');
  }

  private readAll(): Crl[] {
    return this.deps.files.map((f) => parseCrl(f, fs.readFileSync(f)));
  }
}
