// A registered TPP for tests: its own transport certificate (from the test CA), its own PS256
// signing key, an mTLS agent, and `accessToken()` that does the client credentials grant the way
// a real TPP would (a fresh private_key_jwt assertion, or tls_client_auth).
import { createHash, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import type { Agent } from 'undici';
import { createSigningKeyPair, issueCertificate } from '../../src/crypto/devPki.js';
import { call, mtlsAgent } from './http.js';
import { readPki, testPki, type TestServer } from './server.js';

export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface TestTpp {
  clientId: string;
  /** undici Agent doing mTLS with this TPP's own client certificate. */
  agent: Agent;
  certPem: string;
  keyPem: string;
  /** Private PS256 JWK with `kid` set; its public half is the client's registered JWKS. */
  signingKey: JWK;
  kid: string;
  /** POST /token (client credentials) with a fresh assertion; throws unless 200. */
  accessToken(scope?: string): Promise<string>;
}

export interface CreateTestTppOptions {
  clientId?: string;
  scopes?: string[];
  authMethod?: 'private_key_jwt' | 'tls_client_auth';
}

export async function createTestTpp(
  server: TestServer,
  opts: CreateTestTppOptions = {},
): Promise<TestTpp> {
  const clientId = opts.clientId ?? `tpp-${randomBytes(6).toString('hex')}`;
  const authMethod = opts.authMethod ?? 'private_key_jwt';
  const pki = readPki();
  const cert = issueCertificate(
    { certPem: pki.ca, keyPem: fs.readFileSync(testPki().caKey, 'utf8') },
    { commonName: clientId, organization: 'ob-events tests', country: 'GB', usage: 'client' },
  );
  const signing = await createSigningKeyPair();
  await server.server.services.clients.register({
    clientId,
    jwks: { keys: [signing.publicJwk] },
    authMethod,
    // Every test TPP has its transport identity, as production requires (private_key_jwt too).
    tlsSubjectDn: `CN=${clientId},O=ob-events tests,C=GB`,
    scopes: opts.scopes,
  });
  const agent = mtlsAgent({ ca: pki.ca, cert: cert.certPem, key: cert.keyPem });
  const tpp: TestTpp = {
    clientId,
    agent,
    certPem: cert.certPem,
    keyPem: cert.keyPem,
    signingKey: signing.privateJwk,
    kid: signing.kid,
    accessToken: async (scope) => {
      const form: Record<string, string> = { grant_type: 'client_credentials' };
      if (scope !== undefined) form.scope = scope;
      if (authMethod === 'private_key_jwt') {
        form.client_assertion_type = JWT_BEARER;
        form.client_assertion = await signClientAssertion(tpp, server);
      } else {
        form.client_id = clientId;
      }
      const res = await postToken(server, agent, form);
      if (res.status !== 200) throw new Error(`POST /token: ${res.status} ${res.text}`);
      return res.json<{ access_token: string }>().access_token;
    },
  };
  return tpp;
}

/**
 * A client assertion signed with the TPP's key: valid by default (iss = sub = client id,
 * aud = the token endpoint, exp in 5 minutes, random jti). `claims` overrides or adds claims
 * (a value of `undefined` removes one); `header` overrides the protected header.
 */
export async function signClientAssertion(
  tpp: Pick<TestTpp, 'clientId' | 'signingKey' | 'kid'>,
  server: TestServer,
  opts: { claims?: Record<string, unknown>; header?: Record<string, unknown>; key?: JWK } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    iss: tpp.clientId,
    sub: tpp.clientId,
    aud: `${server.config.http.publicUrl}/token`,
    jti: randomUUID(),
    iat: now,
    exp: now + 300,
    ...opts.claims,
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  const key = await importJWK(opts.key ?? tpp.signingKey, 'PS256');
  return new SignJWT(claims as JWTPayload)
    .setProtectedHeader({ alg: 'PS256', kid: tpp.kid, ...opts.header } as { alg: string })
    .sign(key);
}

/** POST /token with a form body over the given agent. */
export function postToken(server: TestServer, agent: Agent, form: Record<string, string>) {
  return call(agent, `${server.url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
}

/** The SHA-256 thumbprint (base64url of the DER) of a PEM certificate, as in `cnf.x5t#S256`. */
export function thumbprintOf(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('base64url');
}
