// The operator console, end to end: its security rules over plain HTTP (log-in, session cookie,
// CSRF, escaping), then an operator's session in a real browser (Debian's Chromium driven by
// playwright-core): log in, see the clients, a TPP's deliveries, replay since T, retry a dead
// letter. The browser part saves the screenshots the README shows (docs/screenshots/).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { registerClient, subscribe } from './helpers/fixtures.js';
import { delivery, deliveryWhen, publish, pushEnv } from './helpers/push.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const PASSWORD = 'console-test-password-42';
const CHROMIUM = '/usr/bin/chromium';
// The README's screenshots are rewritten only when asked (UPDATE_SCREENSHOTS=1), so a test run
// leaves the checkout clean; otherwise they go to a temporary folder (still taken, still checked).
const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS
  ? path.resolve(import.meta.dirname, '../docs/screenshots')
  : fs.mkdtempSync(path.join(os.tmpdir(), 'ob-console-shots-'));
const EVIL_NAME = '<script>alert("pwned")</script> Evil & Co';

/** A tiny cookie jar for fetch. */
class Jar {
  private readonly values = new Map<string, string>();
  take(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i);
      const value = pair!.slice(i + 1);
      if (value === '') this.values.delete(name);
      else this.values.set(name, value);
    }
  }
  header(): string {
    return [...this.values].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

function hiddenCsrf(page: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(page);
  if (!m) throw new Error('no CSRF field on the page');
  return m[1]!;
}

describe('operator console', () => {
  let db: TestDatabase;
  let server: TestServer;
  let receiver: Receiver;
  let rejecting: Receiver;
  let pushClient: string;
  let rejectingClient: string;
  let evilClient: string;
  let acked: string[];
  let rejectedJti: string;
  let since: Date;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db, {
      env: pushEnv({ PUSH_MAX_ATTEMPTS: '2', OPERATOR_PASSWORD: PASSWORD }),
    });
    receiver = await startReceiver();
    rejecting = await startReceiver(() => ({
      status: 400,
      body: '{"err":"invalid_key","description":"cannot verify the signature"}',
    }));
    pushClient = await registerClient(server, 'acme-payments');
    await subscribe(db.knex, pushClient, { callbackUrl: receiver.callbackUrl });
    rejectingClient = await registerClient(server, 'globex-budgeting');
    await subscribe(db.knex, rejectingClient, { callbackUrl: rejecting.callbackUrl });
    const key = await createSigningKeyPair();
    evilClient = 'evil-tpp';
    await server.server.services.clients.register({
      clientId: evilClient,
      name: EVIL_NAME,
      jwks: { keys: [key.publicJwk] },
    });
    await subscribe(db.knex, evilClient);
    await publish(server, evilClient, 2);

    since = new Date(Math.floor(Date.now() / 1000) * 1000 - 1000); // whole seconds, for the form
    acked = await publish(server, pushClient, 3);
    [rejectedJti] = (await publish(server, rejectingClient)) as [string];
    for (const jti of acked) await deliveryWhen(db.knex, jti, (d) => d.state === 'acknowledged');
    await deliveryWhen(db.knex, rejectedJti, (d) => d.state === 'errored');
  });
  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
    await rejecting?.close();
    await db?.drop();
  });

  async function login(jar: Jar, password = PASSWORD): Promise<Response> {
    const form = await fetch(`${server.adminUrl}/console/login`);
    jar.take(form);
    const res = await fetch(`${server.adminUrl}/console/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header() },
      body: new URLSearchParams({
        _csrf: hiddenCsrf(await form.text()),
        operator: 'carol',
        password,
      }).toString(),
    });
    jar.take(res);
    return res;
  }

  describe('security rules', () => {
    it('when nobody is logged in, then every page sends the browser to the log-in form and actions are refused', async () => {
      const res = await fetch(`${server.adminUrl}/console/`, { redirect: 'manual' });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/console/login');
      const post = await fetch(`${server.adminUrl}/console/keys/rotate`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: '_csrf=x',
      });
      expect(post.status).toBe(401);
    });

    it('when the password is wrong, then there is no session and the failure is audited', async () => {
      const jar = new Jar();
      const res = await login(jar, 'not-the-password');
      expect(res.status).toBe(401);
      expect(jar.header()).not.toContain('ob_console=');
      const audit = await db.knex('operator_audit').where({ action: 'console_login_failed' });
      expect(audit.length).toBeGreaterThan(0);
    });

    it('when the log-in form is posted without its own token, then it is refused (log-in CSRF)', async () => {
      const res = await fetch(`${server.adminUrl}/console/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ operator: 'mallory', password: PASSWORD }).toString(),
      });
      expect(res.status).toBe(403);
    });

    it('when an operator logs in, then the session cookie is HttpOnly and SameSite=Strict and pages carry a strict CSP', async () => {
      const jar = new Jar();
      const res = await login(jar);
      expect(res.status).toBe(303);
      const set = res.headers.getSetCookie().find((c) => c.startsWith('ob_console='))!;
      expect(set).toMatch(/HttpOnly/);
      expect(set).toMatch(/SameSite=Strict/);
      expect(set).toMatch(/Path=\/console/);
      const page = await fetch(`${server.adminUrl}/console/`, {
        headers: { cookie: jar.header() },
      });
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
      expect(page.headers.get('x-frame-options')).toBe('DENY');
    });

    it('when a POST comes without the CSRF token or with a wrong one, then it is refused and nothing changes', async () => {
      const jar = new Jar();
      await login(jar);
      const before = await server.server.services.keys.list();
      for (const body of ['', '_csrf=wrong-token']) {
        const res = await fetch(`${server.adminUrl}/console/keys/rotate`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header() },
          body,
        });
        expect(res.status).toBe(403);
      }
      expect(await server.server.services.keys.list()).toEqual(before);
    });

    it('when a client name contains <script>, then the pages show it as text, escaped', async () => {
      const jar = new Jar();
      await login(jar);
      for (const url of ['/console/', `/console/clients/${evilClient}`]) {
        const body = await (
          await fetch(`${server.adminUrl}${url}`, { headers: { cookie: jar.header() } })
        ).text();
        expect(body).not.toContain('<script>');
        expect(body).toContain(
          '&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; Evil &amp; Co',
        );
      }
    });

    it('when an operator logs out, then the session no longer works', async () => {
      const jar = new Jar();
      await login(jar);
      const cookie = jar.header();
      const page = await (
        await fetch(`${server.adminUrl}/console/`, { headers: { cookie } })
      ).text();
      const out = await fetch(`${server.adminUrl}/console/logout`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: `_csrf=${encodeURIComponent(hiddenCsrf(page))}`,
      });
      expect(out.status).toBe(303);
      const again = await fetch(`${server.adminUrl}/console/`, {
        redirect: 'manual',
        headers: { cookie },
      });
      expect(again.status).toBe(303);
    });
  });

  describe('pages', () => {
    it('when an operator searches by jti, subject or time, then the matching SETs are listed', async () => {
      const jar = new Jar();
      await login(jar);
      const get = async (url: string) =>
        (await fetch(`${server.adminUrl}${url}`, { headers: { cookie: jar.header() } })).text();
      const [jti] = acked as [string];
      const { subject_id: subject } = (await db.knex('events').where({ jti }).first()) as {
        subject_id: string;
      };
      expect(await get(`/console/search?jti=${jti}`)).toContain(`/console/sets/${jti}`);
      const bySubject = await get(`/console/search?subject=${encodeURIComponent(subject)}`);
      expect(bySubject).toContain(jti);
      expect(bySubject).not.toContain(acked[1]!);
      const from = since.toISOString().slice(0, 19);
      const byTime = await get(`/console/search?client=${pushClient}&from=${from}`);
      for (const j of acked) expect(byTime).toContain(j);
      const bad = await fetch(`${server.adminUrl}/console/search?from=yesterday`, {
        headers: { cookie: jar.header() },
      });
      expect(bad.status).toBe(400);
    });

    it('when an operator rotates the signing key from the console, then a new key is active and the rotation is audited', async () => {
      const jar = new Jar();
      await login(jar);
      const page = await (
        await fetch(`${server.adminUrl}/console/keys`, { headers: { cookie: jar.header() } })
      ).text();
      const before = (await server.server.services.keys.list()).find((k) => k.status === 'active');
      const res = await fetch(`${server.adminUrl}/console/keys/rotate`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header() },
        body: `_csrf=${encodeURIComponent(hiddenCsrf(page))}`,
      });
      expect(res.status).toBe(303);
      const after = (await server.server.services.keys.list()).find((k) => k.status === 'active');
      expect(after!.kid).not.toBe(before!.kid);
      const audit = await db.knex('operator_audit').where({ action: 'keys_rotate' });
      expect(audit.map((a: { actor: string; via: string }) => [a.actor, a.via])).toEqual([
        ['carol', 'console'],
      ]);
    });
  });

  describe.skipIf(!fs.existsSync(CHROMIUM))('in Chromium [needs /usr/bin/chromium]', () => {
    let context: BrowserContext;
    let page: Page;
    let profile: string;

    beforeAll(async () => {
      profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-chromium-'));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
        viewport: { width: 1280, height: 800 },
      });
      page = context.pages()[0] ?? (await context.newPage());
      page.on('dialog', () => {
        throw new Error('a script ran on a console page');
      });
      fs.mkdirSync(SCREENSHOTS, { recursive: true });
    }, 60_000);
    afterAll(async () => {
      await context?.close();
      if (profile) fs.rmSync(profile, { recursive: true, force: true });
    });

    const shot = (name: string) =>
      page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });

    it('when an operator logs in, then the clients page lists every TPP with its backlog and push health', async () => {
      await page.goto(`${server.adminUrl}/console/`);
      expect(page.url()).toMatch(/\/console\/login$/);
      await shot('console-login');
      await page.fill('input[name=operator]', 'carol');
      await page.fill('input[name=password]', PASSWORD);
      await page.click('button[type=submit]');
      await page.waitForURL(/\/console\/$/);
      const table = await page.textContent('table');
      expect(table).toContain(pushClient);
      expect(table).toContain(rejectingClient);
      expect(table).toContain(EVIL_NAME); // shown as text
      await shot('console-clients');
    });

    it('when the operator opens a TPP, then its deliveries and attempt history are shown, and replay since T sends them again', async () => {
      await page.click(`a[href="/console/clients/${pushClient}"]`);
      await page.waitForURL(new RegExp(`/console/clients/${pushClient}`));
      for (const jti of acked) expect(await page.textContent('main')).toContain(jti);
      await shot('console-deliveries');

      await page.fill('input[name=since]', since.toISOString().slice(0, 19));
      await page.click('form[action$="/replay-since"] button[type=submit]');
      await page.waitForSelector('.notice');
      expect(await page.textContent('.notice')).toContain('3 SET(s) pending again');
      await receiver.waitFor(
        (r) => acked.every((jti) => r.forJti(jti).length === 2),
        10_000,
        'the replayed SETs',
      );
      for (const jti of acked) {
        const [first, second] = receiver.forJti(jti);
        expect(second!.body).toBe(first!.body);
      }
      await shot('console-replay-since');

      await page.click(`a[href="/console/sets/${acked[0]}"]`);
      await page.waitForSelector('h2');
      expect(await page.textContent('main')).toContain('Push attempts');
      await shot('console-set-history');
    });

    it('when the operator retries a dead letter, then the SET is delivered', async () => {
      rejecting.setScript(() => ({ status: 202 }));
      await page.click('a[href="/console/dead-letters"]');
      await page.waitForURL(/dead-letters/);
      expect(await page.textContent('table')).toContain(rejectedJti);
      await shot('console-dead-letters');
      await page.click(`form[action="/console/dead-letters/${rejectedJti}/retry"] button`);
      await page.waitForSelector('.notice');
      await deliveryWhen(db.knex, rejectedJti, (d) => d.state === 'acknowledged');
      expect((await delivery(db.knex, rejectedJti)).resolution).toBe('push_accepted');

      await page.click('a[href="/console/audit"]');
      const audit = await page.textContent('table');
      expect(audit).toContain('dead_letter_retry');
      expect(audit).toContain('replay_since');
      expect(audit).toContain('carol');
      await shot('console-audit');
    });
  });
});

describe('operator credential configuration', () => {
  it('when both OPERATOR_PASSWORD and OPERATOR_PASSWORD_FILE are set, or the password is short, then the config is refused naming the variable', () => {
    expect(() =>
      loadConfig({ OPERATOR_PASSWORD: 'x'.repeat(12), OPERATOR_PASSWORD_FILE: '/tmp/p' }),
    ).toThrow(/OPERATOR_PASSWORD_FILE/);
    expect(() => loadConfig({ OPERATOR_PASSWORD: 'short' })).toThrow(/OPERATOR_PASSWORD/);
  });

  it('when OPERATOR_PASSWORD_FILE is set, then its first line is the credential', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-operator-'));
    const file = path.join(dir, 'password');
    fs.writeFileSync(file, 'from-a-mounted-secret\n');
    const db = await createTestDatabase();
    const server = await startTestServer(db, { env: { OPERATOR_PASSWORD_FILE: file } });
    try {
      const auth = server.server.services.operatorAuth;
      expect(auth.enabled).toBe(true);
      expect(await auth.login('dave', 'wrong-password-123')).toBeUndefined();
      expect(await auth.login('dave', 'from-a-mounted-secret')).toBeDefined();
    } finally {
      await server.stop();
      await db.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('operator console without a credential', () => {
  let db: TestDatabase;
  let server: TestServer;
  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    await registerClient(server);
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('when no operator credential is configured, then the console is off (503) and no log-in is possible', async () => {
    expect((await fetch(`${server.adminUrl}/console/`)).status).toBe(503);
    const res = await fetch(`${server.adminUrl}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'operator=a&password=b',
    });
    expect(res.status).toBe(503);
  });
});
