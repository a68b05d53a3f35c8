// Puts the TPP's transport certificate into the request context.
//
// Direct mTLS (the default): the handshake has already verified the certificate against
// TLS_CLIENT_CA_FILE; without one the request goes no further.
//
// Behind a TLS-terminating proxy (CLIENT_CERT_HEADER set, off by default): the proxy is
// authenticated, not merely located. It connects with its own client certificate issued by a CA
// in PROXY_CA_FILE (a CA that must not also be in TLS_CLIENT_CA_FILE) and from an address in
// TRUSTED_PROXIES; only such a connection may carry the header (the URL-encoded PEM of the TPP's
// certificate, as nginx's $ssl_client_escaped_cert sends it; intermediates may follow the leaf),
// exactly once (a proxy that appends a second instance must not let a client choose the
// certificate), and that certificate is checked here as strictly as the handshake would have
// (src/crypto/certificateChain.ts). Any other connection is a direct one: it must have presented
// a verified TPP certificate itself, and the header is ignored.
//
// Revocation (CRL_FILES): checked in both modes, for the certificate and its intermediates.
import fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import ipaddr from 'ipaddr.js';
import { memoised } from '../memo.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import {
  CertificateChainError,
  parsePemCertificates,
  verifyClientCertificateChain,
} from '../crypto/certificateChain.js';
import { RevocationLists } from '../crypto/revocation.js';
import { UnauthenticatedError } from '../errors.js';
import type { Logger } from '../logger.js';
import { requestContext } from './context.js';

export interface ProxyCertificateOptions {
  /** Lower-case header name carrying the URL-encoded PEM certificate. */
  header: string;
  /** Addresses or CIDR ranges of the proxies allowed to send the header. */
  trustedProxies: readonly string[];
  /** The CAs of TLS_CLIENT_CA_FILE. */
  trustedCas: readonly X509Certificate[];
  /** The CAs of PROXY_CA_FILE: a connection whose certificate chains to one is a proxy's. */
  proxyCas: readonly X509Certificate[];
  clock: Clock;
}

/** Proxy mode options from the configuration, or undefined when proxy mode is off. */
export function proxyCertificateOptions(
  config: Config,
  clock: Clock,
): ProxyCertificateOptions | undefined {
  const header = config.http.clientCertHeader;
  if (header === undefined) return undefined;
  const trustedCas = readCas('TLS_CLIENT_CA_FILE', config.http.tlsClientCaFile);
  const proxyCas = readCas('PROXY_CA_FILE', config.http.proxyCaFile!);
  const shared = proxyCas.find((p) => trustedCas.some((t) => sameCa(p, t)));
  if (shared) {
    throw new Error(
      `PROXY_CA_FILE must be a CA of its own: "${shared.subject.replace(/\n/g, ', ')}" is also in TLS_CLIENT_CA_FILE, so a TPP certificate could act as the proxy`,
    );
  }
  return { header, trustedProxies: config.http.trustedProxies, trustedCas, proxyCas, clock };
}

/** The CRLs of CRL_FILES, or undefined when none are configured. */
export function revocationLists(
  config: Config,
  clock: Clock,
  logger: Logger,
): RevocationLists | undefined {
  if (config.http.crlFiles.length === 0) return undefined;
  return new RevocationLists({
    files: config.http.crlFiles,
    reloadMs: config.http.crlReloadSeconds * 1000,
    now: () => clock.now(),
    onReloadError: (err) =>
      logger.error({ err: err.message }, 'CRL_FILES: reload failed, the previous lists stay'),
    onReloaded: (files) => logger.info({ files }, 'CRL_FILES reloaded'),
  });
}

export function clientCertificate(check: ClientCertificateCheck): RequestHandler {
  return (req, res, next) => {
    const ctx = requestContext(res);
    ctx.clientCertificate = check(req, (line) =>
      ctx.log.warn(
        line,
        'client certificate header on a connection without a proxy certificate: ignored',
      ),
    );
    next();
  };
}

/**
 * The TPP's certificate for a request, or UnauthenticatedError; `onIgnoredHeader` hears of a
 * certificate header sent on a direct connection (ignored, logged by the caller). Needs only the
 * node request, so fixed responses answered before express check exactly the same.
 */
export type ClientCertificateCheck = (
  req: IncomingMessage,
  onIgnoredHeader: (line: { remoteAddress: string | undefined; header: string }) => void,
) => X509Certificate;

export function clientCertificateCheck(
  proxy?: ProxyCertificateOptions,
  revocation?: RevocationLists,
): ClientCertificateCheck {
  const isTrustedProxy = proxy ? addressMatcher(proxy.trustedProxies) : () => false;
  return (req, onIgnoredHeader) => {
    const socket = req.socket as TLSSocket;
    const peer = socket.authorized ? peerCertificate(socket) : undefined;
    const chain = peer && (proxy || revocation) ? peerChain(socket) : [];
    if (proxy && peer && chain.some((c) => proxy.proxyCas.some((ca) => issuedBy(c, ca)))) {
      if (!isTrustedProxy(socket.remoteAddress)) {
        throw new UnauthenticatedError(
          `proxy certificate from ${socket.remoteAddress}, which is not in TRUSTED_PROXIES`,
        );
      }
      return forwardedCertificate(req, proxy, revocation);
    }
    if (proxy && headerValues(req, proxy.header).length > 0) {
      onIgnoredHeader({ remoteAddress: socket.remoteAddress, header: proxy.header });
    }
    if (!peer) throw new UnauthenticatedError('no verified client certificate on the connection');
    if (revocation) checkChainNotRevoked(chain, revocation);
    return peer;
  };
}

function forwardedCertificate(
  req: IncomingMessage,
  proxy: ProxyCertificateOptions,
  revocation: RevocationLists | undefined,
): X509Certificate {
  const values = headerValues(req, proxy.header);
  if (values.length > 1) {
    throw new UnauthenticatedError(`${values.length} instances of the ${proxy.header} header`);
  }
  const value = values[0];
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
      revocation ? (cert, issuer) => revocation.isRevoked(cert, issuer) : undefined,
    );
    return leaf;
  } catch (err) {
    if (err instanceof CertificateChainError) {
      throw new UnauthenticatedError(`${proxy.header}: ${err.failure}: ${err.message}`);
    }
    throw err;
  }
}

function checkChainNotRevoked(chain: X509Certificate[], revocation: RevocationLists): void {
  try {
    for (let i = 0; i + 1 < chain.length; i++) {
      if (revocation.isRevoked(chain[i]!, chain[i + 1]!)) {
        throw new UnauthenticatedError(`client certificate "${chain[i]!.subject}" is revoked`);
      }
    }
  } catch (err) {
    if (err instanceof CertificateChainError) {
      throw new UnauthenticatedError(`client certificate: ${err.failure}: ${err.message}`);
    }
    throw err;
  }
}

/** Every instance of a header as sent (req.headers joins duplicates into one value). */
function headerValues(req: IncomingMessage, name: string): string[] {
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  }
  return out;
}

// Per connection, not per request: one connection carries one client certificate and chain
// (the API listener refuses TLS renegotiation, listeners.ts), so keep-alive requests reuse what
// the first one read.
const peers = new WeakMap<TLSSocket, X509Certificate>();
const chains = new WeakMap<TLSSocket, X509Certificate[]>();

function peerCertificate(socket: TLSSocket): X509Certificate | undefined {
  return memoised(peers, socket, () => socket.getPeerX509Certificate());
}

/** The verified peer chain, leaf first, up to the trust anchor from the server's CA list. */
function peerChain(socket: TLSSocket): X509Certificate[] {
  return memoised(chains, socket, () => readPeerChain(socket));
}

function readPeerChain(socket: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let c = socket.getPeerCertificate(true);
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(new X509Certificate(c.raw));
    c = c.issuerCertificate;
  }
  return out;
}

function issuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  if (cert.raw.equals(ca.raw)) return true;
  try {
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

function sameCa(a: X509Certificate, b: X509Certificate): boolean {
  return (
    a.raw.equals(b.raw) ||
    (a.subject === b.subject &&
      a.publicKey
        .export({ format: 'der', type: 'spki' })
        .equals(b.publicKey.export({ format: 'der', type: 'spki' })))
  );
}

function readCas(variable: string, file: string): X509Certificate[] {
  const cas = parsePemCertificates(fs.readFileSync(file, 'utf8'));
  if (cas.length === 0) throw new Error(`${variable} ${file} holds no certificate`);
  return cas;
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
