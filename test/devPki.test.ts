import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { CompactSign, compactVerify, createLocalJWKSet } from 'jose';
import type { JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { certsDev } from '../src/cli/commands/certs.js';
import {
  DEMO_TPP,
  createCertificateAuthority,
  devPkiComplete,
  devPkiFiles,
  issueCertificate,
  writeDevPki,
} from '../src/crypto/devPki.js';
import type { DevPkiFiles } from '../src/crypto/devPki.js';

const FILE_KEYS = [
  'caCert',
  'caKey',
  'serverCert',
  'serverKey',
  'tppCert',
  'tppKey',
  'tppJwks',
  'tppPrivateJwk',
] as const;

let tmp: string;
let files: DevPkiFiles;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-devpki-'));
  files = await writeDevPki(path.join(tmp, 'dev'));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const read = (file: string) => fs.readFileSync(file, 'utf8');
const x509 = (file: string) => new X509Certificate(fs.readFileSync(file));

/** "C=GB\nO=...\nCN=..." (Node's form) and "CN=...,O=...,C=GB" (RFC 4514) as sorted components. */
function dnComponents(dn: string, separator: string): string[] {
  return dn.split(separator).sort();
}

describe('writeDevPki', () => {
  it('when it runs, then it writes the eight files and the key files are private (0600)', () => {
    expect(devPkiComplete(files.dir)).toBe(true);
    expect(files).toEqual(devPkiFiles(files.dir));
    expect(path.basename(files.tppJwks)).toBe('tpp.jwks.json');
    for (const key of FILE_KEYS) {
      expect(path.isAbsolute(files[key])).toBe(true);
      expect(fs.statSync(files[key]).size).toBeGreaterThan(0);
    }
    for (const key of ['caKey', 'serverKey', 'tppKey', 'tppPrivateJwk'] as const) {
      expect(fs.statSync(files[key]).mode & 0o777).toBe(0o600);
    }
  });

  it('when a file is missing, then the PKI is not complete', () => {
    const dir = path.join(tmp, 'partial');
    fs.mkdirSync(dir);
    fs.copyFileSync(files.caCert, path.join(dir, 'ca.crt'));
    expect(devPkiComplete(dir)).toBe(false);
  });

  it('when the server certificate is checked, then the CA issued it for localhost, 127.0.0.1 and ::1', () => {
    const ca = x509(files.caCert);
    const server = x509(files.serverCert);
    expect(ca.ca).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkIP('::1')).toBe('::1');
    expect(server.keyUsage).toContain('1.3.6.1.5.5.7.3.1'); // serverAuth
    // Valid now, with an hour of slack for clock skew.
    expect(new Date(server.validFrom).getTime()).toBeLessThan(Date.now() - 30 * 60 * 1000);
  });

  it('when the TPP certificate is checked, then the CA issued it for the demo TPP subject', () => {
    const ca = x509(files.caCert);
    const tpp = x509(files.tppCert);
    expect(tpp.checkIssued(ca)).toBe(true);
    expect(tpp.verify(ca.publicKey)).toBe(true);
    expect(tpp.keyUsage).toContain('1.3.6.1.5.5.7.3.2'); // clientAuth
    expect(dnComponents(tpp.subject, '\n')).toEqual(dnComponents(DEMO_TPP.subjectDn, ','));
    expect(DEMO_TPP.clientId).toBe('demo-tpp');
  });
});

describe('mutual TLS with the development PKI', () => {
  let server: https.Server;
  let port: number;
  let served = 0; // requests that reached the handler, i.e. passed client authentication

  beforeAll(async () => {
    server = https.createServer(
      {
        key: read(files.serverKey),
        cert: read(files.serverCert),
        ca: read(files.caCert),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        served++;
        const socket = req.socket as TLSSocket;
        res.end(socket.getPeerCertificate().subject.CN);
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  function get(client: { cert?: string; key?: string }): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, path: '/', ca: read(files.caCert), agent: false, ...client },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve(body));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('when the demo TPP presents its certificate, then the handshake succeeds', async () => {
    await expect(get({ cert: read(files.tppCert), key: read(files.tppKey) })).resolves.toBe(
      'demo-tpp',
    );
  });

  it('when a client presents a certificate from another CA, then the server refuses it', async () => {
    const otherCa = createCertificateAuthority('someone else CA', 1);
    const other = issueCertificate(otherCa, { commonName: 'demo-tpp', usage: 'client' });
    const before = served;
    // Node destroys the socket after the handshake when verification fails ("socket hang up").
    await expect(get({ cert: other.certPem, key: other.keyPem })).rejects.toThrow();
    expect(served).toBe(before);
  });

  it('when a client presents no certificate, then the server refuses it', async () => {
    const before = served;
    await expect(get({})).rejects.toThrow(/certificate required|socket hang up|ECONNRESET/);
    expect(served).toBe(before);
  });
});

describe('demo TPP signing key', () => {
  it('when the JWKS is read, then it holds only the public key', () => {
    const jwks = JSON.parse(read(files.tppJwks)) as { keys: JWK[] };
    expect(jwks.keys).toHaveLength(1);
    const [key] = jwks.keys;
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) {
      expect(key).not.toHaveProperty(member);
    }
    expect(key).toMatchObject({ kty: 'RSA', alg: 'PS256', use: 'sig' });
  });

  it('when a JWS is signed with the private JWK, then the JWKS verifies it', async () => {
    const privateJwk = JSON.parse(read(files.tppPrivateJwk)) as JWK;
    const jwks = JSON.parse(read(files.tppJwks)) as { keys: JWK[] };
    expect(privateJwk.kid).toBe(jwks.keys[0]?.kid);
    expect(privateJwk.alg).toBe('PS256');

    const jws = await new CompactSign(new TextEncoder().encode('hello'))
      .setProtectedHeader({ alg: 'PS256', kid: privateJwk.kid })
      .sign(privateJwk);
    const { payload } = await compactVerify(jws, createLocalJWKSet(jwks));
    expect(new TextDecoder().decode(payload)).toBe('hello');
  });
});

describe('certs dev command', () => {
  it('when it runs, then it prints one JSON line naming the files under the --out directory', async () => {
    const writes: string[] = [];
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      writes.push(String(chunk));
      return true;
    });
    // --out is relative to the working directory, like the default certs/dev.
    const cwd = vi.spyOn(process, 'cwd').mockReturnValue(tmp);
    try {
      await certsDev({ out: 'certs/dev' });
    } finally {
      write.mockRestore();
      cwd.mockRestore();
    }

    const output = writes.join('');
    expect(output.endsWith('\n')).toBe(true);
    expect(output.trimEnd().split('\n')).toHaveLength(1);
    const { dir, ...expected } = devPkiFiles(path.join(tmp, 'certs/dev'));
    expect(JSON.parse(output)).toEqual({ dir, files: expected });
    expect(devPkiComplete(dir)).toBe(true);
  });
});
