// `ob-events tpp assertion` (the real CLI, dist/): the README's curl walkthrough, with the demo TPP
// of the development PKI.
import fs from 'node:fs';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TPP } from '../src/crypto/devPki.js';
import { cliEnv, requireBuild, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { mtlsAgent } from './helpers/http.js';
import {
  readPki,
  startTestServer,
  testPki,
  TEST_PUBLIC_URL,
  type TestServer,
} from './helpers/server.js';
import { postToken, JWT_BEARER, thumbprintOf } from './helpers/tpp.js';

describe('ob-events tpp assertion', () => {
  let db: TestDatabase;
  let server: TestServer;
  const pki = readPki();
  const demo = mtlsAgent({ ca: pki.ca, cert: pki.tppCert, key: pki.tppKey });
  const env = cliEnv(undefined, { PUBLIC_URL: TEST_PUBLIC_URL });

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    server = await startTestServer(db);
    await server.server.services.clients.register({
      clientId: DEMO_TPP.clientId,
      jwks: JSON.parse(fs.readFileSync(pki.tppJwksPath, 'utf8')),
    });
  });
  afterAll(async () => {
    await demo.close();
    await server?.stop();
    await db?.drop();
  });

  it('when the demo TPP signs an assertion with the CLI, then POST /token gives it a token bound to its certificate', async () => {
    const r = await runCli(
      ['tpp', 'assertion', '--client-id', DEMO_TPP.clientId, '--key', testPki().tppPrivateJwk],
      { env },
    );
    expect(r.code, r.stderr).toBe(0);
    const assertion = r.stdout.trim();
    expect(r.stdout).toBe(`${assertion}\n`);
    expect(decodeProtectedHeader(assertion)).toMatchObject({
      alg: 'PS256',
      kid: pki.tppPrivateJwk.kid,
    });
    const claims = decodeJwt(assertion);
    expect(claims).toMatchObject({
      iss: DEMO_TPP.clientId,
      sub: DEMO_TPP.clientId,
      aud: `${TEST_PUBLIC_URL}/token`,
    });
    expect(claims.exp! - claims.iat!).toBe(300);

    const res = await postToken(server, demo, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
    });
    expect(res.status, res.text).toBe(200);
    const token = res.json<{ access_token: string }>().access_token;
    expect((decodeJwt(token).cnf as Record<string, string>)['x5t#S256']).toBe(
      thumbprintOf(pki.tppCert),
    );
  });

  it('when --aud and --kid are given, then the assertion carries them', async () => {
    const r = await runCli(
      [
        'tpp',
        'assertion',
        '--client-id',
        'x',
        '--key',
        testPki().tppPrivateJwk,
        '--kid',
        'other-kid',
        '--aud',
        'https://bank.example',
      ],
      { env },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(decodeProtectedHeader(r.stdout.trim()).kid).toBe('other-kid');
    expect(decodeJwt(r.stdout.trim()).aud).toBe('https://bank.example');
  });

  it('when the key file is a public JWK Set, then it exits non-zero with one line', async () => {
    const r = await runCli(['tpp', 'assertion', '--client-id', 'x', '--key', pki.tppJwksPath], {
      env,
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^ob-events: /);
  });
});
