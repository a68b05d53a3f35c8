// Puts the TPP's transport certificate into the request context. With a direct mTLS connection
// the handshake has already verified it against TLS_CLIENT_CA_FILE.
import type { TLSSocket } from 'node:tls';
import type { RequestHandler } from 'express';
import { UnauthenticatedError } from '../errors.js';
import { requestContext } from './context.js';

export function clientCertificate(): RequestHandler {
  return (req, res, next) => {
    const socket = req.socket as TLSSocket;
    const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined;
    if (!cert) {
      next(new UnauthenticatedError('no verified client certificate on the connection'));
      return;
    }
    requestContext(res).clientCertificate = cert;
    next();
  };
}
