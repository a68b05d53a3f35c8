// Client certificates with subjects that the development PKI does not make (a `title`, spaces
// at the ends of a value, multi-valued RDNs), issued by the test CA with the openssl command.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testPki } from './server.js';

/**
 * `subject` in openssl's `-subj` form, most general first (`/C=GB/O=x/CN=a+UID=b`; a `+` makes
 * a multi-valued RDN). Returns the certificate and key as PEM.
 */
export function issueCustomClientCertificate(subject: string): { certPem: string; keyPem: string } {
  const pki = testPki();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-cert-'));
  try {
    const file = (name: string) => path.join(dir, name);
    fs.writeFileSync(
      file('ext.cnf'),
      'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
    );
    const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
    run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file('key.pem')]);
    run([
      'req',
      '-new',
      '-key',
      file('key.pem'),
      '-subj',
      subject,
      '-multivalue-rdn',
      '-utf8',
      '-out',
      file('req.pem'),
    ]);
    run([
      'x509',
      '-req',
      '-in',
      file('req.pem'),
      '-CA',
      pki.caCert,
      '-CAkey',
      pki.caKey,
      '-set_serial',
      `0x${Date.now().toString(16)}`,
      '-days',
      '2',
      '-extfile',
      file('ext.cnf'),
      '-out',
      file('cert.pem'),
    ]);
    return {
      certPem: fs.readFileSync(file('cert.pem'), 'utf8'),
      keyPem: fs.readFileSync(file('key.pem'), 'utf8'),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
