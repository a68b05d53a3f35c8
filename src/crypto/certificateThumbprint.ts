// RFC 8705 §3.1 certificate thumbprint: base64url(SHA-256(DER of the client certificate)), the
// value an access token carries as `cnf.x5t#S256` and the resource server compares with the
// certificate on the connection.
import { createHash, type X509Certificate } from 'node:crypto';

// A connection's certificate object lives as long as the connection (clientCertificate.ts keeps
// one per socket), so each keep-alive request reuses its thumbprint.
const thumbprints = new WeakMap<X509Certificate, string>();

export function certificateThumbprint(cert: X509Certificate | Buffer): string {
  if (Buffer.isBuffer(cert)) return sha256(cert);
  let thumbprint = thumbprints.get(cert);
  if (thumbprint === undefined) {
    thumbprint = sha256(cert.raw);
    thumbprints.set(cert, thumbprint);
  }
  return thumbprint;
}

function sha256(der: Buffer): string {
  return createHash('sha256').update(der).digest('base64url');
}
