// The README's curl walkthrough, run as written: its `sh walkthrough` blocks are extracted from
// README.md (not copied here) and run in order by bash against a server this test starts, in a
// folder whose certs/dev is the test PKI. If the README and the server drift apart, this fails.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuild } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startTestServer, testPki, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';

const ROOT = path.resolve(import.meta.dirname, '..');

export function walkthroughBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh walkthrough\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

describe('the README walkthrough', () => {
  let db: TestDatabase;
  let server: TestServer;
  let dir: string;

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    server = await startTestServer(db);
    // Inside the project, so `npx ob-events` finds this package's own command.
    dir = path.join(ROOT, '.tmp', `walkthrough-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(path.join(dir, 'certs'), { recursive: true });
    fs.symlinkSync(path.dirname(testPki().caCert), path.join(dir, 'certs', 'dev'));
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('when its commands run in order against a server, then each step succeeds and the event arrives and is acknowledged', async () => {
    const blocks = walkthroughBlocks(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    const script = ['set -euo pipefail', ...blocks].join('\n');
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? dir,
      OB: server.url,
      PUBLIC_URL: TEST_PUBLIC_URL,
      LOG_LEVEL: 'warn',
      ...db.env,
    };
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve) => {
        const child = spawn('bash', ['-c', script], { cwd: dir, env });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      },
    );
    expect(result.code, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(0);

    // Step 1: the client, as JSON.
    expect(result.stdout).toContain('"client_id":"demo-tpp"');
    // Step 3: the subscription was created and read back.
    const created = JSON.parse(fs.readFileSync(path.join(dir, 'created.json'), 'utf8')) as {
      Data: { EventSubscriptionId: string };
    };
    expect(created.Data.EventSubscriptionId).toMatch(/^es_/);
    // Step 5: one SET came back, for the demo TPP, and was acknowledged.
    const poll = JSON.parse(fs.readFileSync(path.join(dir, 'poll.json'), 'utf8')) as {
      sets: Record<string, string>;
    };
    const jtis = Object.keys(poll.sets);
    expect(jtis).toHaveLength(1);
    expect(result.stdout).toContain('"aud":"demo-tpp"');
    expect(result.stdout).toContain('{"sets":{},"moreAvailable":false}');
    const delivery = await db.knex('event_deliveries').where({ jti: jtis[0] }).first();
    expect(delivery.state).toBe('acknowledged');
    // Step 6: replaced, then deleted.
    expect(result.stdout.trim().split('\n').at(-1)).toBe('204');
    expect(
      await db.knex('event_subscriptions').where({ client_id: 'demo-tpp' }).first(),
    ).toBeUndefined();
  });
});
