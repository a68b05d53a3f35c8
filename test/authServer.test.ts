// The bank AS as ob-events reads it (src/net/authServer.ts), against a small HTTPS server whose
// discovery document and JWKS the test controls: the JWKS is fetched again for an unknown kid,
// at most once per cooldown; discovery must name exactly the configured issuer.
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { importJWK, jwtVerify, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../src/clock.js';
import type { AuthServerConfig } from '../src/config.js';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import {
  AS_JWKS_COOLDOWN_MS,
  AuthServer,
  AuthServerUnavailableError,
} from '../src/net/authServer.js';
import { testPki } from './helpers/server.js';

describe('the bank AS client', () => {
  const pki = testPki();
  const state = { issuer: '', jwks: '{"keys":[]}', jwksRequests: 0 };
  let server: https.Server;
  let issuer: string;

  beforeAll(async () => {
    server = https.createServer(
      { cert: fs.readFileSync(pki.serverCert), key: fs.readFileSync(pki.serverKey) },
      (req, res) => {
        if (req.url === '/.well-known/openid-configuration') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ issuer: state.issuer, jwks_uri: `${issuer}/jwks` }));
        } else if (req.url === '/jwks') {
          state.jwksRequests++;
          res.writeHead(200, { 'content-type': 'application/json' }).end(state.jwks);
        } else res.writeHead(404).end();
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    issuer = `https://localhost:${(server.address() as AddressInfo).port}`;
    state.issuer = issuer;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  afterEach(() => {
    vi.useRealTimers();
    state.issuer = issuer;
  });

  function config(): AuthServerConfig {
    return {
      issuer,
      caFile: pki.caCert,
      audience: 'https://ob-events.test',
      algorithms: ['PS256'],
      clientIdClaim: 'client_id',
      requireCertificateBinding: true,
      introspection: {
        method: 'none',
        clientId: undefined,
        clientSecret: undefined,
        keyFile: undefined,
        keyKid: undefined,
        certFile: undefined,
        certKeyFile: undefined,
        cacheSeconds: 30,
      },
    };
  }

  it('when a token names a kid the cached JWKS lacks, then the JWKS is fetched again, but not more than once per cooldown', async () => {
    const [a, b] = [await createSigningKeyPair(), await createSigningKeyPair()];
    state.jwks = JSON.stringify({ keys: [a.publicJwk] });
    const as = new AuthServer(config(), systemClock);
    const sign = async (k: typeof a) =>
      new SignJWT({ client_id: 'tpp' })
        .setProtectedHeader({ alg: 'PS256', kid: k.kid })
        .setIssuer(issuer)
        .setExpirationTime('5m')
        .sign(await importJWK(k.privateJwk, 'PS256'));
    const verify = async (token: string) =>
      jwtVerify(token, await as.keys(), { algorithms: ['PS256'] });

    await verify(await sign(a));
    const afterFirst = state.jwksRequests;
    vi.useFakeTimers({ toFake: ['Date'] });
    state.jwks = JSON.stringify({ keys: [a.publicJwk, b.publicJwk] }); // the AS rotates
    const withB = await sign(b);
    await expect(verify(withB)).rejects.toThrow(/no applicable key|matching/i);
    await expect(verify(withB)).rejects.toThrow();
    expect(state.jwksRequests).toBe(afterFirst); // within the cooldown: the AS is not asked
    const withinCooldown = state.jwksRequests;
    vi.setSystemTime(Date.now() + AS_JWKS_COOLDOWN_MS + 1_000);
    await expect(verify(withB)).resolves.toBeDefined();
    expect(state.jwksRequests).toBe(withinCooldown + 1);
    await as.close();
  });

  it('when discovery names another issuer, then the AS is treated as unavailable (503), naming both', async () => {
    state.issuer = 'https://impostor.example';
    const as = new AuthServer(config(), systemClock);
    await expect(as.metadata()).rejects.toBeInstanceOf(AuthServerUnavailableError);
    await expect(as.metadata()).rejects.toThrow(/impostor\.example.*not AUTH_ISSUER_URL/);
    await as.close();
  });
});
