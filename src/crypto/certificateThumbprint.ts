// RFC 8705 §3.1 certificate thumbprint: base64url(SHA-256(DER of the client certificate)), the
// value an access token carries as `cnf.x5t#S256` and the resource server compares with the
// certificate on the connection.
import { createHash, type X509Certificate } from 'node:crypto';
import { memoised } from '../memo.js';

// A request asks for its certificate's thumbprint several times (rate limit, pins, the token's
// cnf, the binding check): computed once per certificate object. `cert.raw` copies the DER out
// on every read, and a certificate object never changes. clientCertificate.ts keeps one object
// per connection, so keep-alive requests reuse it too.
const thumbprints = new WeakMap<X509Certificate, string>();

export function certificateThumbprint(cert: X509Certificate | Buffer): string {
  if (Buffer.isBuffer(cert)) return sha256(cert);
  return memoised(thumbprints, cert, () => sha256(cert.raw));
}

function sha256(der: Buffer): string {
  return createHash('sha256').update(der).digest('base64url');
}
