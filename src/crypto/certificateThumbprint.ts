// RFC 8705 §3.1 certificate thumbprint: base64url(SHA-256(DER of the client certificate)), the
// value an access token carries as `cnf.x5t#S256` and the resource server compares with the
// certificate on the connection.
import { createHash, type X509Certificate } from 'node:crypto';

export function certificateThumbprint(cert: X509Certificate | Buffer): string {
  const der = Buffer.isBuffer(cert) ? cert : cert.raw;
  return createHash('sha256').update(der).digest('base64url');
}
