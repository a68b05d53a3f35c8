// TPP clients for their whole life (issue 14): show, update (keys, jwks_uri, DN, scopes, name),
// revoke, delete (tokens stop, pending SETs discarded, audit rows kept) and adding a revoked or
// deleted id again: through the signed admin API, the real CLI, and a jwks_uri served over HTTPS.
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { ClientsStore } from '../src/db/stores/clientsStore.js';
import { Clients, validatePublicJwks } from '../src/domain/clients.js';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { JWKS_MAX_BYTES, RemoteJwks } from '../src/net/remoteJwks.js';
import { cliEnv, requireBuild, runCli, type CliResult } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { subscribe } from './helpers/fixtures.js';
import { call } from './helpers/http.js';
import { eventually, publish, pushEnv } from './helpers/push.js';
import { startTestServer, testPki, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';

const SECRET = 'client-lifecycle-secret-0123456789';

interface ClientView {
  client_id: string;
  name: string;
  scopes: string[];
  status: string;
  jwks?: { keys: { kid: string }[] };
  jwks_uri?: string;
  tls_client_auth_subject_dn: string | null;
  deleted_at: string | null;
  discarded_sets?: number;
}

/** An HTTPS server (test CA) answering GET /jwks with whatever `body` holds now. */
async function startJwksServer() {
  const pki = testPki();
  const state = { body: '{"keys":[]}', requests: 0 };
  const server = https.createServer(
    { cert: fs.readFileSync(pki.serverCert), key: fs.readFileSync(pki.serverKey) },
    (_req, res) => {
      state.requests++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(state.body);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    state,
    url: `https://localhost:${port}/jwks`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('client lifecycle', () => {
  let db: TestDatabase;
  let server: TestServer;
  let jwksServer: Awaited<ReturnType<typeof startJwksServer>>;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, { env: pushEnv({ ADMIN_API_SECRET: SECRET }) });
    jwksServer = await startJwksServer();
  });
  afterAll(async () => {
    await server?.stop();
    await jwksServer?.close();
    await db?.drop();
  });

  async function admin(method: string, urlPath: string, body?: unknown) {
    const raw = body === undefined ? '' : JSON.stringify(body);
    const res = await fetch(`${server.adminUrl}${urlPath}`, {
      method,
      headers: {
        'content-type': 'application/json',
        'x-ob-events-signature': signAdminRequest({
          secret: SECRET,
          method,
          path: urlPath,
          body: raw,
        }),
      },
      ...(raw !== '' ? { body: raw } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as ClientView };
  }

  async function pollStatus(tpp: TestTpp, token: string): Promise<number> {
    const res = await call(tpp.agent, `${server.url}/open-banking/v3.1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"returnImmediately":true}',
    });
    return res.status;
  }

  describe('admin API', () => {
    it('when a pipeline registers, shows, updates and lists a client, then each answer is the client as JSON', async () => {
      const key = await createSigningKeyPair();
      const created = await admin('POST', '/admin/v1/clients', {
        client_id: 'pipeline-tpp-1',
        name: 'Pipeline TPP',
        jwks: { keys: [key.publicJwk] },
        scopes: ['accounts'],
      });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ client_id: 'pipeline-tpp-1', status: 'active' });

      const shown = await admin('GET', '/admin/v1/clients/pipeline-tpp-1');
      expect(shown.body).toMatchObject({ name: 'Pipeline TPP', scopes: ['accounts'] });

      const newKey = await createSigningKeyPair();
      const updated = await admin('PATCH', '/admin/v1/clients/pipeline-tpp-1', {
        name: 'Renamed',
        scopes: ['accounts', 'eventpolling'],
        jwks: { keys: [newKey.publicJwk] },
        tls_client_auth_subject_dn: 'CN=pipeline-tpp-1,O=Example,C=GB',
      });
      expect(updated.status).toBe(200);
      expect(updated.body).toMatchObject({
        name: 'Renamed',
        scopes: ['accounts', 'eventpolling'],
        tls_client_auth_subject_dn: 'CN=pipeline-tpp-1,O=Example,C=GB',
      });
      expect(updated.body.jwks!.keys.map((k) => k.kid)).toEqual([newKey.kid]);

      // A new transport certificate pinned, then every pin removed; the DN stays.
      const pin = 'ab'.repeat(32);
      const pinned = await admin('PATCH', '/admin/v1/clients/pipeline-tpp-1', {
        tls_cert_thumbprints: [pin],
      });
      expect(pinned.status).toBe(200);
      expect(pinned.body).toMatchObject({
        tls_cert_thumbprints: [Buffer.from(pin, 'hex').toString('base64url')],
        tls_client_auth_subject_dn: 'CN=pipeline-tpp-1,O=Example,C=GB',
      });
      const unpinned = await admin('PATCH', '/admin/v1/clients/pipeline-tpp-1', {
        tls_cert_thumbprints: [],
      });
      expect(unpinned.body).toMatchObject({ tls_cert_thumbprints: [] });
      const notAList = await admin('PATCH', '/admin/v1/clients/pipeline-tpp-1', {
        tls_cert_thumbprints: pin,
      });
      expect(notAList.status).toBe(400);

      const list = (await admin('GET', '/admin/v1/clients')).body as unknown as {
        clients: ClientView[];
      };
      expect(list.clients.map((c) => c.client_id)).toContain('pipeline-tpp-1');
    });

    it('when the client id is active already, then a second POST is 409 and the first registration stays', async () => {
      const key = await createSigningKeyPair();
      const body = { client_id: 'pipeline-tpp-2', jwks: { keys: [key.publicJwk] } };
      expect((await admin('POST', '/admin/v1/clients', body)).status).toBe(201);
      expect((await admin('POST', '/admin/v1/clients', { ...body, name: 'x' })).status).toBe(409);
      expect((await admin('GET', '/admin/v1/clients/pipeline-tpp-2')).body.name).toBe(
        'pipeline-tpp-2',
      );
    });

    it('when a request is bad (unsigned, unknown member, both jwks and jwks_uri, no such client), then it is a 4xx and nothing changes', async () => {
      const unsigned = await fetch(`${server.adminUrl}/admin/v1/clients`);
      expect(unsigned.status).toBe(401);
      const key = await createSigningKeyPair();
      const unknown = await admin('POST', '/admin/v1/clients', {
        client_id: 'bad-1',
        jwks: { keys: [key.publicJwk] },
        colour: 'blue',
      });
      expect(unknown.status).toBe(400);
      const both = await admin('POST', '/admin/v1/clients', {
        client_id: 'bad-1',
        jwks: { keys: [key.publicJwk] },
        jwks_uri: jwksServer.url,
      });
      expect(both.status).toBe(400);
      expect((await admin('GET', '/admin/v1/clients/bad-1')).status).toBe(404);
      expect((await admin('PATCH', '/admin/v1/clients/nobody', { name: 'x' })).status).toBe(404);
      expect((await admin('DELETE', '/admin/v1/clients/nobody')).status).toBe(404);
    });

    it('when a client is deleted, then its token stops, its subscription and pending SETs go, the audit rows stay, and the id can be added again', async () => {
      const tpp = await createTestTpp(server);
      await subscribe(db.knex, tpp.clientId);
      const jtis = await publish(server, tpp.clientId, 2);
      const token = await tpp.accessToken();
      expect(await pollStatus(tpp, token)).toBe(200);

      const deleted = await admin('DELETE', `/admin/v1/clients/${tpp.clientId}`);
      expect(deleted.status).toBe(200);
      expect(deleted.body).toMatchObject({ status: 'deleted', discarded_sets: 2 });
      expect(await pollStatus(tpp, token)).toBe(401);
      expect(await db.knex('event_subscriptions').where({ client_id: tpp.clientId })).toEqual([]);
      const rows = await db.knex('event_deliveries').whereIn('jti', jtis);
      expect(
        rows.map((r: { state: string; resolution: string }) => [r.state, r.resolution]),
      ).toEqual([
        ['discarded', 'client_deleted'],
        ['discarded', 'client_deleted'],
      ]);
      expect(await db.knex('events').whereIn('jti', jtis)).toHaveLength(2);
      expect((await admin('GET', `/admin/v1/clients/${tpp.clientId}`)).body.status).toBe('deleted');
      await expect(tpp.accessToken()).rejects.toThrow(/401/);

      const again = await admin('POST', '/admin/v1/clients', {
        client_id: tpp.clientId,
        jwks: { keys: [publicJwk(tpp)] },
      });
      expect(again.status).toBe(201);
      expect(again.body).toMatchObject({ status: 'active', deleted_at: null });
      expect(await pollStatus(tpp, await tpp.accessToken())).toBe(200);
    });

    it('when a revoked client is added again, then it gets tokens again', async () => {
      const tpp = await createTestTpp(server);
      expect((await admin('POST', `/admin/v1/clients/${tpp.clientId}/revoke`)).body.status).toBe(
        'revoked',
      );
      await expect(tpp.accessToken()).rejects.toThrow(/401/);
      const pub = publicJwk(tpp);
      const again = await admin('POST', '/admin/v1/clients', {
        client_id: tpp.clientId,
        jwks: { keys: [pub] },
      });
      expect(again.status).toBe(201);
      expect(await pollStatus(tpp, await tpp.accessToken())).toBe(200);
    });
  });

  describe('jwks_uri', () => {
    it('when a client is registered with a jwks_uri, then its assertions and request signatures are verified with the keys fetched from it', async () => {
      const tpp = await createTestTpp(server);
      jwksServer.state.body = JSON.stringify({ keys: [publicJwk(tpp)] });
      const updated = await admin('PATCH', `/admin/v1/clients/${tpp.clientId}`, {
        jwks_uri: jwksServer.url,
      });
      expect(updated.status).toBe(200);
      expect(updated.body.jwks_uri).toBe(jwksServer.url);
      expect(updated.body.jwks).toBeUndefined();
      const row = await db.knex('clients').where({ client_id: tpp.clientId }).first();
      expect(row.jwks).toBeNull();
      expect(await pollStatus(tpp, await tpp.accessToken())).toBe(200);
    });

    it('when the jwks_uri serves no usable JWK Set, then registration is refused with 400 naming jwks_uri', async () => {
      jwksServer.state.body = 'not json';
      const r = await admin('POST', '/admin/v1/clients', {
        client_id: 'uri-bad-1',
        jwks_uri: jwksServer.url,
      });
      expect(r.status).toBe(400);
      expect(JSON.stringify(r.body)).toMatch(/jwks_uri/);
      const http = await admin('POST', '/admin/v1/clients', {
        client_id: 'uri-bad-1',
        jwks_uri: jwksServer.url.replace('https:', 'http:'),
      });
      expect(http.status).toBe(400);
    });

    it('when the JWK Set is larger than the cap, then it is refused', async () => {
      jwksServer.state.body = JSON.stringify({ keys: [], pad: 'x'.repeat(JWKS_MAX_BYTES) });
      const r = await admin('POST', '/admin/v1/clients', {
        client_id: 'uri-big-1',
        jwks_uri: jwksServer.url,
      });
      expect(r.status).toBe(400);
      expect(JSON.stringify(r.body)).toMatch(/larger than/);
    });

    it('when the jwks_uri resolves to a loopback address and private networks are not allowed, then it is refused (address policy)', async () => {
      const key = await createSigningKeyPair();
      jwksServer.state.body = JSON.stringify({ keys: [key.publicJwk] });
      const clients = new Clients({
        store: ClientsStore.create(db.knex),
        knex: db.knex,
        clock: new ManualClock(),
        remoteJwks: new RemoteJwks({
          allowPrivate: false,
          ca: fs.readFileSync(testPki().caCert),
          clock: new ManualClock(),
          validate: validatePublicJwks,
        }),
      });
      await expect(
        clients.register({ clientId: 'uri-loopback-1', jwksUri: jwksServer.url }),
      ).rejects.toThrow(/jwks_uri: .*(loopback|refus)/i);
    });

    it('when a kid is not in the cached set, then the set is fetched again, at most once per cooldown', async () => {
      const clock = new ManualClock();
      const remote = new RemoteJwks({
        allowPrivate: true,
        ca: fs.readFileSync(testPki().caCert),
        clock,
        validate: validatePublicJwks,
      });
      const [a, b] = [await createSigningKeyPair(), await createSigningKeyPair()];
      jwksServer.state.body = JSON.stringify({ keys: [a.publicJwk] });
      await remote.fetch(jwksServer.url);
      const before = jwksServer.state.requests;
      jwksServer.state.body = JSON.stringify({ keys: [a.publicJwk, b.publicJwk] });
      // Within the cooldown an unknown kid does not reach the TPP's server.
      expect((await remote.keys(jwksServer.url, b.kid)).keys.map((k) => k.kid)).toEqual([a.kid]);
      expect(jwksServer.state.requests).toBe(before);
      clock.advance(31_000);
      const keys = await remote.keys(jwksServer.url, b.kid);
      expect(keys.keys.map((k) => k.kid)).toEqual([a.kid, b.kid]);
      expect(jwksServer.state.requests).toBe(before + 1);
      await remote.close();
    });
  });

  describe('CLI', () => {
    let env: Record<string, string>;
    let tmp: string;
    const ob = (args: string[]) => runCli(args, { env, cwd: tmp });
    const json = (r: CliResult) => {
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as ClientView;
    };

    beforeAll(() => {
      requireBuild();
      env = cliEnv(db, { PUSH_CA_FILE: testPki().caCert, CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true' });
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-clients-'));
    });
    afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it('when an operator adds, shows, updates, revokes, re-adds, deletes and re-adds a client, then each step prints the client and takes effect', async () => {
      const [k1, k2] = [await createSigningKeyPair(), await createSigningKeyPair()];
      const jwks1 = path.join(tmp, 'jwks1.json');
      const jwks2 = path.join(tmp, 'jwks2.json');
      fs.writeFileSync(jwks1, JSON.stringify({ keys: [k1.publicJwk] }));
      fs.writeFileSync(jwks2, JSON.stringify({ keys: [k2.publicJwk] }));

      expect(
        json(await ob(['clients', 'add', '--client-id', 'cli-tpp-1', '--jwks', jwks1])),
      ).toMatchObject({ client_id: 'cli-tpp-1', status: 'active' });
      expect(json(await ob(['clients', 'show', 'cli-tpp-1'])).jwks!.keys[0]!.kid).toBe(k1.kid);

      const updated = json(
        await ob([
          'clients',
          'update',
          'cli-tpp-1',
          '--jwks',
          jwks2,
          '--name',
          'CLI TPP',
          '--scopes',
          'accounts eventpolling',
          '--tls-subject-dn',
          'CN=cli-tpp-1,O=Example,C=GB',
        ]),
      );
      expect(updated).toMatchObject({
        name: 'CLI TPP',
        scopes: ['accounts', 'eventpolling'],
        tls_client_auth_subject_dn: 'CN=cli-tpp-1,O=Example,C=GB',
      });
      expect(updated.jwks!.keys[0]!.kid).toBe(k2.kid);

      jwksServer.state.body = JSON.stringify({ keys: [k1.publicJwk] });
      const byUri = json(
        await ob(['clients', 'update', 'cli-tpp-1', '--jwks-uri', jwksServer.url]),
      );
      expect(byUri.jwks_uri).toBe(jwksServer.url);

      const add = await ob(['clients', 'add', '--client-id', 'cli-tpp-1', '--jwks', jwks1]);
      expect(add.code).not.toBe(0);
      expect(add.stderr).toMatch(/already registered and active/);

      expect(json(await ob(['clients', 'revoke', 'cli-tpp-1'])).status).toBe('revoked');
      expect(
        json(await ob(['clients', 'add', '--client-id', 'cli-tpp-1', '--jwks', jwks1])).status,
      ).toBe('active');

      const deleted = json(await ob(['clients', 'delete', 'cli-tpp-1']));
      expect(deleted).toMatchObject({ status: 'deleted', discarded_sets: 0 });
      expect(json(await ob(['clients', 'show', 'cli-tpp-1'])).status).toBe('deleted');
      const list = JSON.parse((await ob(['clients', 'list'])).stdout) as ClientView[];
      expect(list.map((c) => c.client_id)).not.toContain('cli-tpp-1');
      const readded = json(
        await ob(['clients', 'add', '--client-id', 'cli-tpp-1', '--jwks-uri', jwksServer.url]),
      );
      expect(readded).toMatchObject({ status: 'active', jwks_uri: jwksServer.url });
    }, 180_000);

    it('when update or delete names no client, then it exits non-zero saying so', async () => {
      const r = await ob(['clients', 'delete', 'nobody-here']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/no client nobody-here/);
      const u = await ob(['clients', 'update', 'nobody-here', '--name', 'x']);
      expect(u.code).not.toBe(0);
    });
  });

  it('when a deleted client had a token, then every replica refuses it within 2 s', async () => {
    const tpp = await createTestTpp(server);
    const token = await tpp.accessToken();
    expect(await pollStatus(tpp, token)).toBe(200);
    // As if another process (the CLI, another replica) deleted it: this one only caches 1 s.
    await db.knex('clients').where({ client_id: tpp.clientId }).update({ status: 'deleted' });
    await eventually(
      async () => ((await pollStatus(tpp, token)) === 401 ? true : undefined),
      2_500,
    );
  });
});

function publicJwk(tpp: TestTpp) {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = tpp.signingKey;
  return pub;
}
