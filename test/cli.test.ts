// The real CLI (`node bin/ob-events.js`, running dist/) against a test database: every command of
// the foundation with good and bad input. Good input prints JSON on stdout and nothing else; bad
// input exits non-zero with exactly one line on stderr, `ob-events: <why>`, and nothing on stdout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pendingMigrations } from '../src/db/migrate.js';
import { DEMO_TPP } from '../src/crypto/devPki.js';
import { migrations } from '../migrations/index.js';
import { cliEnv, requireBuild, runCli, type CliResult } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { readPki } from './helpers/server.js';

interface ClientView {
  client_id: string;
  token_endpoint_auth_method: string;
  tls_client_auth_subject_dn: string | null;
  scopes: string[];
  status: string;
  revoked_at: string | null;
  jwks: { keys: { kid: string; d?: string }[] };
}

interface KeyView {
  kid: string;
  alg: string;
  status: string;
  retireAfter: string | null;
}

/** Asserts success with exactly one JSON value on stdout and returns it. */
function json<T>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!) as T;
}

/**
 * Asserts failure: non-zero, nothing on stdout, one `ob-events: ...` line on stderr besides the
 * JSON log lines (a command that opens a database first logs which one).
 */
function refused(r: CliResult, reason: RegExp): void {
  expect(r.code, r.stdout + r.stderr).not.toBe(0);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^ob-events: /);
  expect(lines[0]).toMatch(reason);
}

/** Every stderr line is a JSON log line (LOG_FORMAT=json): no stray output from libraries. */
function onlyLogLines(stderr: string): void {
  for (const line of stderr.split('\n').filter((l) => l !== '')) {
    expect(() => JSON.parse(line) as unknown, line).not.toThrow();
  }
}

describe('ob-events CLI', () => {
  let db: TestDatabase;
  let env: Record<string, string>;
  let tmp: string;
  const pki = readPki();
  const timings: Record<string, number> = {};
  const ob = (args: string[], extra: Record<string, string> = {}) =>
    runCli(args, { env: { ...env, ...extra }, cwd: tmp });

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    env = cliEnv(db);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-cli-'));
  });
  afterAll(async () => {
    await db?.drop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    console.info(
      `CLI wall time (${db?.kind}): ${Object.entries(timings)
        .map(([k, ms]) => `${k} ${Math.round(ms)} ms`)
        .join(', ')}`,
    );
  });

  describe('start-up', () => {
    // How fast it answers is measured in bench/cli.bench.ts, not here.
    it('when asked for --help, then it prints the commands', async () => {
      const r = await ob(['--help']);
      timings['--help'] = r.ms;
      expect(r.code).toBe(0);
      for (const command of ['serve', 'migrate', 'certs', 'clients', 'keys']) {
        expect(r.stdout).toContain(command);
      }
    });

    it('when the command is unknown, then it exits non-zero with one line', async () => {
      refused(await ob(['frobnicate']), /unknown command 'frobnicate'/);
    });

    it('when a subcommand is misspelt, then the one line suggests the right one', async () => {
      refused(await ob(['clients', 'lst']), /unknown command 'lst'.*list/);
    });

    it('when an option is unknown, then it exits non-zero with one line', async () => {
      refused(await ob(['clients', 'list', '--all-of-them']), /unknown option '--all-of-them'/);
    });

    it('when serve gets a bad PORT, then it exits non-zero naming PORT and why', async () => {
      refused(await ob(['serve'], { PORT: 'abc' }), /PORT: must be a whole number/);
    });

    it('when any command gets a bad configuration value, then it exits non-zero naming it', async () => {
      refused(await ob(['clients', 'list'], { DATABASE_URL: 'mysql://db/x' }), /DATABASE_URL/);
    });

    it('when the database cannot be reached, then stdout stays empty and the last line says why', async () => {
      const r = await ob(['clients', 'list'], {
        DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none',
      });
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^ob-events: .*ECONNREFUSED/);
    });
  });

  describe('migrate', () => {
    let fresh: TestDatabase;
    beforeAll(async () => {
      fresh = await createTestDatabase();
    });
    afterAll(async () => {
      await fresh?.drop();
    });
    const names = migrations.map((m) => m.name);

    it('when the schema is current, then migrate applies nothing and says so in JSON', async () => {
      expect(json(await ob(['migrate']))).toEqual({ applied: [] });
    });

    it('when migrate --rollback runs, then it reverts the last batch and migrations are pending', async () => {
      const r = await runCli(['migrate', '--rollback'], { env: cliEnv(fresh), cwd: tmp });
      const { reverted } = json<{ reverted: string[] }>(r);
      expect(reverted.length).toBeGreaterThan(0);
      expect(await pendingMigrations(fresh.knex)).toEqual(expect.arrayContaining(reverted));
    });

    it('when migrate --rollback --all runs, then nothing is left applied', async () => {
      const r = await runCli(['migrate', '--rollback', '--all'], { env: cliEnv(fresh), cwd: tmp });
      json(r);
      expect(await pendingMigrations(fresh.knex)).toEqual(names);
    });

    it('when migrate runs after the rollback, then it applies every migration again', async () => {
      const r = await runCli(['migrate'], { env: cliEnv(fresh), cwd: tmp });
      expect(json<{ applied: string[] }>(r).applied).toEqual(names);
      expect(await pendingMigrations(fresh.knex)).toEqual([]);
    });

    it('when MIGRATE_ON_START=false and the schema is behind, then other commands refuse to run', async () => {
      await runCli(['migrate', '--rollback', '--all'], { env: cliEnv(fresh), cwd: tmp });
      const r = await runCli(['clients', 'list'], {
        env: cliEnv(fresh, { MIGRATE_ON_START: 'false' }),
        cwd: tmp,
      });
      refused(r, /ob-events migrate/);
    });

    it('when migrate gets an unknown option, then it exits non-zero with one line', async () => {
      refused(await ob(['migrate', '--down']), /unknown option '--down'/);
    });
  });

  describe('certs dev', () => {
    it('when --out names a directory, then it writes the PKI there and prints where as JSON', async () => {
      const out = path.join(tmp, 'pki');
      const r = await ob(['certs', 'dev', '--out', out]);
      const printed = json<{ dir: string; files: Record<string, string> }>(r);
      expect(printed.dir).toBe(out);
      for (const name of [
        'ca.crt',
        'ca.key',
        'server.crt',
        'server.key',
        'tpp.crt',
        'tpp.key',
        'tpp.jwks.json',
        'tpp.private.jwk.json',
      ]) {
        expect(fs.existsSync(path.join(out, name)), name).toBe(true);
      }
      expect(Object.values(printed.files)).toContain(path.join(out, 'tpp.jwks.json'));
    });

    it('when --out is an existing file, then it exits non-zero with one line', async () => {
      const file = path.join(tmp, 'a-file');
      fs.writeFileSync(file, 'x');
      refused(await ob(['certs', 'dev', '--out', file]), /EEXIST|ENOTDIR|not a directory|exists/i);
    });
  });

  describe('clients', () => {
    const badJwks = (name: string, content: string) => {
      const file = path.join(tmp, name);
      fs.writeFileSync(file, content);
      return file;
    };

    it('when a private_key_jwt client is added with the demo TPP JWKS, then it prints the client as JSON', async () => {
      const r = await ob(['clients', 'add', '--client-id', 'tpp-jwt', '--jwks', pki.tppJwksPath]);
      timings['clients add'] = r.ms;
      const client = json<ClientView>(r);
      expect(client).toMatchObject({
        client_id: 'tpp-jwt',
        token_endpoint_auth_method: 'private_key_jwt',
        tls_client_auth_subject_dn: null,
        scopes: ['accounts', 'payments', 'fundsconfirmations'],
        status: 'active',
        revoked_at: null,
      });
      expect(client.jwks.keys[0]?.kid).toBe(pki.tppPrivateJwk.kid);
    });

    it('when a tls_client_auth client is added with its subject DN and scopes, then they are stored', async () => {
      const r = await ob([
        'clients',
        'add',
        '--client-id',
        'tpp-mtls',
        '--auth',
        'tls_client_auth',
        '--tls-subject-dn',
        DEMO_TPP.subjectDn,
        '--scopes',
        'accounts eventpolling',
        '--name',
        'Demo TPP over mTLS',
        '--jwks',
        pki.tppJwksPath,
      ]);
      expect(json<ClientView>(r)).toMatchObject({
        client_id: 'tpp-mtls',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: DEMO_TPP.subjectDn,
        scopes: ['accounts', 'eventpolling'],
      });
    });

    it('when --tls-cert-thumbprint is given twice (x5t#S256 and SHA-256 hex), then both are pinned as x5t#S256', async () => {
      const hex = 'AB:'.repeat(31) + 'AB';
      const x5t = Buffer.alloc(32, 1).toString('base64url');
      const r = await ob([
        'clients',
        'add',
        '--client-id',
        'tpp-pinned',
        '--tls-cert-thumbprint',
        x5t,
        '--tls-cert-thumbprint',
        hex,
        '--jwks',
        pki.tppJwksPath,
      ]);
      expect(json<{ tls_cert_thumbprints: string[] }>(r).tls_cert_thumbprints).toEqual([
        x5t,
        Buffer.alloc(32, 0xab).toString('base64url'),
      ]);
      refused(
        await ob([
          'clients',
          'add',
          '--client-id',
          'tpp-bad-pin',
          '--tls-cert-thumbprint',
          'nope',
          '--jwks',
          pki.tppJwksPath,
        ]),
        /thumbprint/,
      );
    });

    it('when --jwks is missing, then it exits non-zero with one line', async () => {
      refused(await ob(['clients', 'add', '--client-id', 'x']), /--jwks/);
    });

    it('when the JWKS file cannot be read, then it exits non-zero naming the file', async () => {
      const missing = path.join(tmp, 'nope.json');
      refused(
        await ob(['clients', 'add', '--client-id', 'x', '--jwks', missing]),
        /cannot read .*nope\.json.*ENOENT/,
      );
      refused(await ob(['clients', 'add', '--client-id', 'x', '--jwks', tmp]), /cannot read/);
    });

    it('when the JWKS file is not JSON, then it exits non-zero saying so', async () => {
      const file = badJwks('broken.json', '{"keys": [');
      refused(await ob(['clients', 'add', '--client-id', 'x', '--jwks', file]), /not valid JSON/);
    });

    it('when the JWKS holds private key members, then it is refused', async () => {
      const file = badJwks('private.json', JSON.stringify({ keys: [pki.tppPrivateJwk] }));
      refused(
        await ob(['clients', 'add', '--client-id', 'x', '--jwks', file]),
        /private key material/,
      );
    });

    it('when the JWKS is a bare JWK rather than a set, then it is refused', async () => {
      const file = badJwks('bare.json', JSON.stringify(pki.tppPrivateJwk));
      refused(await ob(['clients', 'add', '--client-id', 'x', '--jwks', file]), /"keys" array/);
    });

    it('when the client id has characters outside the allowed set, then it is refused', async () => {
      refused(
        await ob(['clients', 'add', '--client-id', 'bad id!', '--jwks', pki.tppJwksPath]),
        /client id must be/,
      );
    });

    it('when tls_client_auth comes without a subject DN, then it is refused', async () => {
      refused(
        await ob([
          'clients',
          'add',
          '--client-id',
          'x',
          '--auth',
          'tls_client_auth',
          '--jwks',
          pki.tppJwksPath,
        ]),
        /subject DN/,
      );
    });

    it('when the auth method or a scope is unknown, then it is refused', async () => {
      refused(
        await ob([
          'clients',
          'add',
          '--client-id',
          'x',
          '--auth',
          'basic',
          '--jwks',
          pki.tppJwksPath,
        ]),
        /basic.*private_key_jwt, tls_client_auth/,
      );
      refused(
        await ob([
          'clients',
          'add',
          '--client-id',
          'x',
          '--scopes',
          'openid',
          '--jwks',
          pki.tppJwksPath,
        ]),
        /unknown: openid/,
      );
    });

    it('when the client id is taken, then the second add is refused', async () => {
      refused(
        await ob(['clients', 'add', '--client-id', 'tpp-jwt', '--jwks', pki.tppJwksPath]),
        /tpp-jwt is already registered/,
      );
    });

    it('when clients are listed, then stdout is a JSON array of them', async () => {
      const r = await ob(['clients', 'list']);
      timings['clients list'] = r.ms;
      const list = json<ClientView[]>(r);
      // Every client the tests above registered, in registration order.
      expect(list.map((c) => c.client_id)).toEqual(['tpp-jwt', 'tpp-mtls', 'tpp-pinned']);
    });

    it('when a client is revoked, then it prints the revoked client and the list shows it revoked', async () => {
      const revoked = json<ClientView>(await ob(['clients', 'revoke', 'tpp-jwt']));
      expect(revoked.status).toBe('revoked');
      expect(revoked.revoked_at).not.toBeNull();
      const list = json<ClientView[]>(await ob(['clients', 'list']));
      expect(list.find((c) => c.client_id === 'tpp-jwt')?.status).toBe('revoked');
      expect(list.find((c) => c.client_id === 'tpp-mtls')?.status).toBe('active');
    });

    it('when the client to revoke does not exist, then it exits non-zero with one line', async () => {
      refused(await ob(['clients', 'revoke', 'nobody']), /no client nobody/);
    });

    it('when revoke has no id, then it exits non-zero with one line', async () => {
      refused(await ob(['clients', 'revoke']), /missing required argument 'id'/);
    });
  });

  describe('keys', () => {
    it('when keys are listed, then there is exactly one active PS256 key', async () => {
      const keys = json<KeyView[]>(await ob(['keys', 'list']));
      expect(keys).toHaveLength(1);
      expect(keys[0]).toMatchObject({ alg: 'PS256', status: 'active' });
    });

    it('when keys are rotated, then the new kid is active, the old one retiring, and list shows both', async () => {
      const [before] = json<KeyView[]>(await ob(['keys', 'list']));
      const r = await ob(['keys', 'rotate'], { LOG_FORMAT: 'json' });
      const rotated = json<KeyView>(r);
      onlyLogLines(r.stderr); // the "stored unencrypted" warning is a log line on stderr
      expect(rotated.kid).not.toBe(before?.kid);
      expect(rotated.status).toBe('active');
      const keys = json<KeyView[]>(await ob(['keys', 'list']));
      const byKid = new Map(keys.map((k) => [k.kid, k]));
      expect(byKid.get(rotated.kid)?.status).toBe('active');
      expect(byKid.get(before!.kid)?.status).toBe('retiring');
      // retiring keys stay published for the overlap (SIGNING_KEY_OVERLAP_DAYS, default 7)
      const retireAfter = Date.parse(byKid.get(before!.kid)!.retireAfter!);
      expect(retireAfter).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    });

    it('when keys gets an unknown subcommand, then it exits non-zero with one line', async () => {
      refused(await ob(['keys', 'delete']), /unknown command 'delete'/);
    });
  });
});
