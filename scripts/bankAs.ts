// "The bank's authorization server" for the resource-server tests and `npm run demo --
// --with-bank-as`: a real, certified OpenID Provider (panva's oidc-provider, a dev dependency)
// served over HTTPS with a certificate from the dev PKI, configured as a UK bank's AS would be
// for ob-events:
//
// - client credentials grant; TPPs authenticate with private_key_jwt or tls_client_auth;
// - every TPP token is bound to the TPP's transport certificate (RFC 8705 cnf.x5t#S256);
// - with a resource indicator (RFC 8707, `resource=<ob-events PUBLIC_URL>`) the token is a JWT
//   (RFC 9068 at+jwt, PS256) whose aud is that resource; without one it is opaque, and ob-events
//   asks the introspection endpoint (RFC 7662) about it;
// - ob-events itself is a client of the AS for introspection (client_secret_basic,
//   private_key_jwt or tls_client_auth).
//
// And the TPP side: `bankTokenSource` gets tokens from it with openid-client over mTLS.
import { type X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { importJWK, type JWK } from 'jose';
import * as oidc from 'openid-client';
import Provider from 'oidc-provider';
import { Agent, fetch as undiciFetch } from 'undici';
import { createSigningKeyPair, issueCertificate, type PemPair } from '../src/crypto/devPki.js';
import { certificateSubject, parseDn, sameDn } from '../src/crypto/distinguishedName.js';

export const BANK_SCOPES = 'accounts payments fundsconfirmations eventpolling';

/** A client of the bank's AS, as its registration (RFC 7591 metadata). */
export type BankAsClient =
  | { clientId: string; method: 'private_key_jwt'; publicJwk: JWK; boundTokens?: boolean }
  | { clientId: string; method: 'tls_client_auth'; subjectDn: string; boundTokens?: boolean }
  | { clientId: string; method: 'client_secret_basic'; secret: string };

export interface BankAs {
  issuer: string;
  /** The provider itself: tests revoke tokens through it (`ClientCredentials.find`). */
  provider: InstanceType<typeof Provider>;
  /** The AS's private signing JWK (tests sign "almost right" tokens with it). */
  signingJwk: JWK;
  stop(): Promise<void>;
}

export interface StartBankAsOptions {
  /** The dev PKI's CA: signs the AS's server certificate, and is the only CA it trusts for mTLS. */
  ca: PemPair;
  clients: BankAsClient[];
  /** Lifetime of access tokens, seconds; default 300. */
  accessTokenTtlSeconds?: number;
  port?: number;
}

export async function startBankAs(opts: StartBankAsOptions): Promise<BankAs> {
  const serverCert = issueCertificate(opts.ca, {
    commonName: 'bank-as.localhost',
    organization: 'Example Bank',
    country: 'GB',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) =>
    res.writeHead(503).end();
  const server = https.createServer(
    {
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      ca: opts.ca.certPem,
      // The AS asks every caller for a certificate; tls_client_auth and bound tokens need one,
      // discovery and the JWKS do not.
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => handler(req, res),
  );
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const issuer = `https://localhost:${(server.address() as AddressInfo).port}`;

  const signing = await createSigningKeyPair();
  const signingJwk: JWK = { ...signing.privateJwk, alg: 'PS256', use: 'sig' };
  const ttl = opts.accessTokenTtlSeconds ?? 300;
  const peer = (ctx: { socket: unknown }) =>
    (ctx.socket as TLSSocket).getPeerX509Certificate?.() as X509Certificate | undefined;

  const provider = new Provider(issuer, {
    clients: opts.clients.map(registration),
    jwks: { keys: [signingJwk] },
    scopes: BANK_SCOPES.split(' '),
    clientAuthMethods: ['private_key_jwt', 'tls_client_auth', 'client_secret_basic'],
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: 'PS256',
    },
    enabledJWA: {
      clientAuthSigningAlgValues: ['PS256', 'ES256'],
    },
    ttl: { ClientCredentials: ttl },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // ob-events (a confidential client) may introspect any TPP's token.
      introspection: {
        enabled: true,
        allowedPolicy: (_ctx: unknown, client: { clientAuthMethod: string }) =>
          client.clientAuthMethod !== 'none',
      },
      revocation: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        getCertificate: (ctx: { socket: unknown }) => peer(ctx),
        certificateAuthorized: (ctx: { socket: unknown }) => (ctx.socket as TLSSocket).authorized,
        certificateSubjectMatches: (
          ctx: { socket: unknown },
          property: string,
          expected: string,
        ) => {
          const cert = peer(ctx);
          return (
            property === 'tls_client_auth_subject_dn' &&
            cert !== undefined &&
            sameDn(certificateSubject(cert), parseDn(expected))
          );
        },
      },
      resourceIndicators: {
        enabled: true,
        // No resource asked for: an opaque token (no aud) that resource servers introspect.
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resource: string) => ({
          scope: BANK_SCOPES,
          audience: resource,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'PS256' } },
        }),
      },
    },
  });
  provider.on('server_error', (_ctx: unknown, err: Error) => {
    process.stderr.write(`bank AS server_error: ${err.stack ?? err.message}\n`);
  });
  handler = provider.callback();

  return {
    issuer,
    provider,
    signingJwk,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function registration(c: BankAsClient): Record<string, unknown> {
  const common = { client_id: c.clientId, scope: BANK_SCOPES };
  switch (c.method) {
    case 'private_key_jwt':
      return {
        ...common,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'PS256',
        jwks: { keys: [c.publicJwk] },
        tls_client_certificate_bound_access_tokens: c.boundTokens ?? true,
      };
    case 'tls_client_auth':
      return {
        ...common,
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: c.subjectDn,
        tls_client_certificate_bound_access_tokens: c.boundTokens ?? true,
      };
    case 'client_secret_basic':
      return {
        ...common,
        token_endpoint_auth_method: 'client_secret_basic',
        client_secret: c.secret,
      };
  }
}

export interface BankTokenSourceOptions {
  issuer: string;
  clientId: string;
  /** The dev CA (trusts the AS's certificate). */
  ca: string;
  /** The TPP's transport certificate: tokens are bound to it. */
  cert: string;
  key: string;
  /** private_key_jwt: the TPP's private signing JWK (with kid); absent: tls_client_auth. */
  signingJwk?: JWK;
  /** RFC 8707 resource indicator: ob-events' PUBLIC_URL gets a JWT; absent: an opaque token. */
  resource?: string;
  scope?: string;
}

/**
 * The TPP's side: client credentials at the bank's AS with openid-client, over mTLS with the
 * TPP's certificate. Returns a function giving a current token (renewed 30 s before expiry),
 * as the TPP SDK's `tokenProvider` wants.
 */
export async function bankTokenSource(o: BankTokenSourceOptions): Promise<{
  token: () => Promise<string>;
  close: () => Promise<void>;
}> {
  const agent = new Agent({ connect: { ca: o.ca, cert: o.cert, key: o.key } });
  const viaAgent = ((url: string, options: object) =>
    undiciFetch(url, { ...options, dispatcher: agent } as Parameters<
      typeof undiciFetch
    >[1])) as unknown as oidc.CustomFetch;
  const auth = o.signingJwk
    ? oidc.PrivateKeyJwt({
        key: (await importJWK(o.signingJwk, 'PS256')) as oidc.CryptoKey,
        kid: o.signingJwk.kid!,
      })
    : oidc.TlsClientAuth();
  const config = await oidc.discovery(new URL(o.issuer), o.clientId, undefined, auth, {
    [oidc.customFetch]: viaAgent,
  });
  config[oidc.customFetch] = viaAgent;
  let cached: { token: string; renewAt: number } | undefined;
  return {
    token: async () => {
      if (cached && Date.now() < cached.renewAt) return cached.token;
      const params: Record<string, string> = { scope: o.scope ?? BANK_SCOPES };
      if (o.resource) params.resource = o.resource;
      const answer = await oidc.clientCredentialsGrant(config, params).catch((err: unknown) => {
        if (err instanceof oidc.ResponseBodyError) {
          throw new Error(
            `token refused by the bank AS: ${err.error} (${err.error_description ?? ''})`,
          );
        }
        throw err;
      });
      const life = (answer.expires_in ?? 60) * 1000;
      cached = {
        token: answer.access_token,
        renewAt: Date.now() + life - Math.min(30_000, life / 2),
      };
      return cached.token;
    },
    close: () => agent.close(),
  };
}
