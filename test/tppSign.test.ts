// `ob-events tpp sign` (the real CLI, dist/): the README's curl walkthrough signs subscription
// bodies with it; here the demo TPP of the development PKI does the same against a test server.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TPP } from '../src/crypto/devPki.js';
import { CLI, cliEnv, requireBuild } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { call, mtlsAgent } from './helpers/http.js';
import { OB_CRIT, OB_IAT, OB_ISS, OB_TAN } from './helpers/jws.js';
import { readPki, startTestServer, testPki, type TestServer } from './helpers/server.js';
import { signClientAssertion, postToken, JWT_BEARER } from './helpers/tpp.js';

function sign(args: string[], stdin: string, env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'tpp', 'sign', ...args], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

describe('ob-events tpp sign', () => {
  let db: TestDatabase;
  let server: TestServer;
  const pki = readPki();
  const demo = mtlsAgent({ ca: pki.ca, cert: pki.tppCert, key: pki.tppKey });
  const env = cliEnv(undefined);
  const key = testPki().tppPrivateJwk;

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

  it('when the demo TPP signs a body with the CLI, then POST /event-subscriptions accepts the signature', async () => {
    // A body as a file would hold it, trailing newline included: the signature covers every byte.
    const body =
      '{"Data":{"Version":"3.1","CallbackUrl":"https://localhost/open-banking/v3.1/event-notifications"}}\n';
    const r = await sign(['--key', key, '--iss', DEMO_TPP.clientId], body, env);
    expect(r.code, r.stderr).toBe(0);
    const signature = r.stdout.trim();
    expect(r.stdout).toBe(`${signature}\n`);
    const [h, empty] = signature.split('.');
    expect(empty).toBe('');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
    expect(header).toMatchObject({
      alg: 'PS256',
      kid: pki.tppPrivateJwk.kid,
      typ: 'JOSE',
      crit: OB_CRIT,
      [OB_ISS]: DEMO_TPP.clientId,
      [OB_TAN]: 'openbanking.org.uk',
    });
    expect(typeof header[OB_IAT]).toBe('number');

    const token = await postToken(server, demo, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await signClientAssertion(
        { clientId: DEMO_TPP.clientId, signingKey: pki.tppPrivateJwk, kid: pki.tppPrivateJwk.kid! },
        server,
      ),
    });
    expect(token.status, token.text).toBe(200);
    const res = await call(demo, `${server.url}/open-banking/v3.1/event-subscriptions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token.json<{ access_token: string }>().access_token}`,
        'content-type': 'application/json',
        'x-jws-signature': signature,
      },
      body,
    });
    expect(res.status, res.text).toBe(201);
  });

  it('when --tan and --kid are given, then the header carries them', async () => {
    const r = await sign(
      ['--key', key, '--kid', 'other-kid', '--iss', 'org/ssa', '--tan', 'example.org'],
      '{}',
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    const header = JSON.parse(
      Buffer.from(r.stdout.split('.')[0]!, 'base64url').toString(),
    ) as Record<string, unknown>;
    expect(header).toMatchObject({
      kid: 'other-kid',
      [OB_ISS]: 'org/ssa',
      [OB_TAN]: 'example.org',
    });
  });

  it('when the key file is a public JWK Set, then it exits non-zero with one line', async () => {
    const r = await sign(['--key', pki.tppJwksPath, '--iss', 'x'], '{}', env);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^ob-events: .*JWK/);
  });

  it('when --iss is missing, then it exits non-zero with one line', async () => {
    const r = await sign(['--key', key], '{}', env);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--iss/);
  });
});
