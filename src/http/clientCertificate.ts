// Puts the TPP's transport certificate into the request context.
//
// Direct mTLS (the default): the handshake has already verified the certificate against
// TLS_CLIENT_CA_FILE; without one the request goes no further.
//
// Behind a TLS-terminating proxy (CLIENT_CERT_HEADER set, off by default): the handshake no
// longer requires a certificate. A connection from an address in TRUSTED_PROXIES is a proxied one:
// it must carry the header (the URL-encoded PEM of the TPP's certificate, as nginx's
// $ssl_client_escaped_cert or an AWS ALB's X-Amzn-Mtls-Clientcert send it; intermediates may
// follow the leaf), and that certificate is checked here as the handshake would have (chain to
// TLS_CLIENT_CA_FILE, validity dates, client usage). Any other connection is a direct one: it must
// have presented a verified certificate itself, and the header is ignored, so nobody can name a
// certificate they do not hold by sending the header past the proxy.
import fs from 'node:fs';
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { RequestHandler } from 'express';
import ipaddr from 'ipaddr.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import {
  CertificateChainError,
  parsePemCertificates,
  verifyClientCertificateChain,
} from '../crypto/certificateChain.js';
import { UnauthenticatedError } from '../errors.js';
import { requestContext } from './context.js';

export interface ProxyCertificateOptions {
  /** Lower-case header name carrying the URL-encoded PEM certificate. */
  header: string;
  /** Addresses or CIDR ranges of the proxies allowed to send the header. */
  trustedProxies: readonly string[];
  /** The CAs of TLS_CLIENT_CA_FILE. */
  trustedCas: readonly X509Certificate[];
  clock: Clock;
}

/** Proxy mode options from the configuration, or undefined when proxy mode is off. */
export function proxyCertificateOptions(
  config: Config,
  clock: Clock,
): ProxyCertificateOptions | undefined {
  const header = config.http.clientCertHeader;
  if (header === undefined) return undefined;
  const trustedCas = parsePemCertificates(fs.readFileSync(config.http.tlsClientCaFile, 'utf8'));
  if (trustedCas.length === 0) {
    throw new Error(`TLS_CLIENT_CA_FILE ${config.http.tlsClientCaFile} holds no certificate`);
  }
  return { header, trustedProxies: config.http.trustedProxies, trustedCas, clock };
}

export function clientCertificate(proxy?: ProxyCertificateOptions): RequestHandler {
  const isTrustedProxy = proxy ? addressMatcher(proxy.trustedProxies) : () => false;
  return (req, res, next) => {
    const socket = req.socket as TLSSocket;
    const ctx = requestContext(res);
    if (proxy && isTrustedProxy(socket.remoteAddress)) {
      ctx.clientCertificate = forwardedCertificate(req.get(proxy.header), proxy);
      next();
      return;
    }
    if (proxy && req.get(proxy.header) !== undefined) {
      ctx.log.warn(
        { remoteAddress: socket.remoteAddress, header: proxy.header },
        'client certificate header from an address not in TRUSTED_PROXIES: ignored',
      );
    }
    const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined;
    if (!cert) throw new UnauthenticatedError('no verified client certificate on the connection');
    ctx.clientCertificate = cert;
    next();
  };
}

function forwardedCertificate(
  value: string | undefined,
  proxy: ProxyCertificateOptions,
): X509Certificate {
  if (value === undefined || value.trim() === '') {
    throw new UnauthenticatedError(`proxied request without the ${proxy.header} header`);
  }
  let pem: string;
  try {
    pem = decodeURIComponent(value);
  } catch {
    throw new UnauthenticatedError(`${proxy.header}: not URL-encoded`);
  }
  try {
    const [leaf, ...intermediates] = parsePemCertificates(pem);
    if (!leaf) throw new UnauthenticatedError(`${proxy.header}: no PEM certificate`);
    verifyClientCertificateChain(
      leaf,
      intermediates,
      proxy.trustedCas,
      new Date(proxy.clock.now()),
    );
    return leaf;
  } catch (err) {
    if (err instanceof CertificateChainError) {
      throw new UnauthenticatedError(`${proxy.header}: ${err.failure}: ${err.message}`);
    }
    throw err;
  }
}

function addressMatcher(entries: readonly string[]): (address: string | undefined) => boolean {
  const ranges = entries.map((e) =>
    e.includes('/') ? ipaddr.parseCIDR(e) : exactRange(ipaddr.process(e)),
  );
  return (address) => {
    if (address === undefined || !ipaddr.isValid(address)) return false;
    // IPv4 clients of a dual-stack listener appear as ::ffff:a.b.c.d.
    const ip = ipaddr.process(address);
    return ranges.some(([net, bits]) => ip.kind() === net.kind() && ip.match([net, bits]));
  };
}

function exactRange(ip: ipaddr.IPv4 | ipaddr.IPv6): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  return [ip, ip.kind() === 'ipv4' ? 32 : 128];
}
