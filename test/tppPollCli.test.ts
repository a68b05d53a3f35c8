// `ob-events tpp poll [--follow]` (the real CLI, dist/) against a test server: verified events as
// JSON lines on stdout, acknowledged; --follow until SIGTERM.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, cliEnv, requireBuild, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { subscribe } from './helpers/fixtures.js';
import { readPki, startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';
import { deliveryState, publishFor } from './helpers/tppSdk.js';

describe('ob-events tpp poll', () => {
  let db: TestDatabase;
  let server: TestServer;
  let dir: string;
  const env = cliEnv(undefined);

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    server = await startTestServer(db, { env: { LONG_POLL_SECONDS: '5' } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpp-poll-'));
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A subscribed TPP with its files on disk, and the CLI arguments naming them. */
  async function tppWithFiles(): Promise<{ tpp: TestTpp; args: string[] }> {
    const tpp = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId);
    const file = (name: string, text: string) => {
      const p = path.join(dir, `${tpp.clientId}.${name}`);
      fs.writeFileSync(p, text);
      return p;
    };
    const args = [
      ...['--url', server.url, '--client-id', tpp.clientId],
      ...['--cert', file('crt', tpp.certPem), '--key', file('key', tpp.keyPem)],
      ...[
        '--ca',
        file('ca', readPki().ca),
        '--signing-key',
        file('jwk', JSON.stringify(tpp.signingKey)),
      ],
    ];
    return { tpp, args };
  }

  const lines = (stdout: string) =>
    stdout
      .split('\n')
      .filter((l) => l !== '')
      .map(
        (l) =>
          JSON.parse(l) as { jti: string; eventTypes: string[]; claims: Record<string, unknown> },
      );

  it('when events wait, then it prints each verified event as a JSON line, acknowledges them all and exits 0', async () => {
    const { tpp, args } = await tppWithFiles();
    const jtis = await publishFor(server, tpp.clientId, 3);
    const r = await runCli(
      ['tpp', 'poll', ...args, '--issuer', TEST_PUBLIC_URL, '--max-events', '2'],
      { env },
    );
    expect(r.code, r.stderr).toBe(0);
    const printed = lines(r.stdout);
    expect(printed.map((l) => l.jti)).toEqual(jtis);
    expect(printed[0]).toMatchObject({
      eventTypes: ['UK.OBIE.Resource-Update'],
      claims: { iss: TEST_PUBLIC_URL, aud: tpp.clientId, jti: jtis[0] },
    });
    for (const jti of jtis) expect((await deliveryState(db, jti))?.state).toBe('acknowledged');
  });

  it('when nothing waits, then it prints nothing and exits 0 at once', async () => {
    const { args } = await tppWithFiles();
    const r = await runCli(['tpp', 'poll', ...args], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.ms).toBeLessThan(4_000); // no long poll (5 s) was held
  });

  it("when the expected issuer is not the server's, then it exits non-zero with one line", async () => {
    const { args } = await tppWithFiles();
    const r = await runCli(['tpp', 'poll', ...args, '--issuer', 'https://other-bank.example'], {
      env,
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^ob-events: .*issuer/);
  });

  it('when --follow, then it prints events as they are published and, on SIGTERM, acknowledges them and exits 0', async () => {
    const { tpp, args } = await tppWithFiles();
    const [first] = await publishFor(server, tpp.clientId, 1);
    const child = spawn(process.execPath, [CLI, 'tpp', 'poll', '--follow', ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const waitForLines = async (n: number) => {
      const deadline = Date.now() + 15_000;
      while (lines(stdout).length < n) {
        if (Date.now() > deadline) throw new Error(`waited for ${n} lines:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await waitForLines(1);
      const [second] = await publishFor(server, tpp.clientId, 1); // wakes the long poll
      await waitForLines(2);
      const stopped = Date.now();
      child.kill('SIGTERM');
      expect(await exited, stderr).toBe(0);
      expect(Date.now() - stopped).toBeLessThan(3_000);
      expect(lines(stdout).map((l) => l.jti)).toEqual([first, second]);
      for (const jti of [first!, second!])
        expect((await deliveryState(db, jti))?.state).toBe('acknowledged');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
