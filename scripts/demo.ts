// `npm run demo`: ob-events end to end on this machine, in well under a minute, leaving nothing
// behind. A bank server on the embedded database serving OBIE v4.0 and v3.1, two TPPs using the
// SDK (ob-events/tpp): one on v4.0 receives its events by push to a local HTTPS receiver, the
// other on v3.1 by polling. Every event type is
// published through the admin API; the demo exits 0 only when every published event arrived and
// verified.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request, Agent } from 'undici';
import { loadConfig } from '../src/config.js';
import {
  createSigningKeyPair,
  issueCertificate,
  writeDevPki,
  DEMO_TPP,
} from '../src/crypto/devPki.js';
import { signAdminRequest } from '../src/http/admin/hmacAuth.js';
import { createLogger, silentLogger } from '../src/logger.js';
import { startServer, type RunningServer } from '../src/main.js';
import { createTppClient, type TppClient, type VerifiedSet } from '../src/tpp/index.js';

const EVENT_TYPES = [
  'UK.OBIE.Resource-Update',
  'UK.OBIE.Consent-Authorization-Revoked',
  'UK.OBIE.Consent-Access-Revoked',
  'UK.OBIE.Account-Access-Consent-Linked-Account-Update',
] as const;
const PER_TYPE = 2;
const RECEIVE_TIMEOUT_MS = 30_000;
const POLLING_TPP = 'demo-tpp-polling';

const started = performance.now();
let step = 0;
const say = (text: string) => process.stdout.write(`${text}\n`);
const stepDone = (text: string, detail: string[] = []) => {
  step += 1;
  say(`${String(step).padStart(2)}. ${text}`);
  for (const d of detail) say(`      ${d}`);
};

async function main(): Promise<boolean> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-demo-'));
  const cleanup: (() => Promise<unknown> | void)[] = [
    () => fs.rmSync(tmp, { recursive: true, force: true }),
  ];
  try {
    say(
      'ob-events demo: a bank server, two TPPs using the SDK (one on OBIE v4.0, one on v3.1), every event type, by push and by polling\n',
    );

    const pki = await writeDevPki(path.join(tmp, 'pki'));
    const read = (p: string) => fs.readFileSync(p, 'utf8');
    const ca = { certPem: read(pki.caCert), keyPem: read(pki.caKey) };
    stepDone(`Development PKI (CA, server certificate, demo TPP) written to ${pki.dir}`);

    const [port, adminPort] = await freePorts(2);
    const issuer = `https://localhost:${port}`;
    const adminSecret = randomBytes(24).toString('hex');
    const config = loadConfig({
      HOST: '127.0.0.1',
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      DATA_DIR: path.join(tmp, 'data'),
      TLS_CERT_FILE: pki.serverCert,
      TLS_KEY_FILE: pki.serverKey,
      TLS_CLIENT_CA_FILE: pki.caCert,
      CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
      PUSH_CA_FILE: pki.caCert,
      ADMIN_API_SECRET: adminSecret,
      SIGNING_WORKERS: '0',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    });
    const logger =
      config.log.level === 'silent'
        ? silentLogger()
        : createLogger({ level: config.log.level, format: 'pretty' });
    const serverStarted = performance.now();
    const server: RunningServer = await startServer({ config, logger });
    cleanup.unshift(() => server.stop());
    stepDone(`Server running on the embedded database (PGlite in ${config.database.dataDir})`, [
      `API ${issuer} (mTLS), admin http://127.0.0.1:${adminPort}, started in ${seconds(performance.now() - serverStarted)}`,
    ]);

    // The demo TPP of the development PKI, and a second one made here.
    // Each with its transport identity: /token serves a client only over its own certificate.
    await server.services.clients.register({
      clientId: DEMO_TPP.clientId,
      jwks: JSON.parse(read(pki.tppJwks)) as { keys: [] },
      tlsSubjectDn: DEMO_TPP.subjectDn,
    });
    const second = issueCertificate(ca, {
      commonName: POLLING_TPP,
      organization: 'ob-events demo',
      country: 'GB',
      usage: 'client',
    });
    const secondKey = await createSigningKeyPair();
    await server.services.clients.register({
      clientId: POLLING_TPP,
      jwks: { keys: [secondKey.publicJwk] },
      tlsSubjectDn: `CN=${POLLING_TPP},O=ob-events demo,C=GB`,
    });
    stepDone(
      `Registered two TPPs (what \`ob-events clients add\` does), each with its certificate and signing key`,
      [
        `${DEMO_TPP.clientId}: OBIE v4.0, will receive by push`,
        `${POLLING_TPP}: OBIE v3.1, will receive by polling`,
      ],
    );

    const sdk = (
      apiVersion: 'v4.0' | 'v3.1',
      clientId: string,
      cert: string,
      key: string,
      signingKey: object,
    ): TppClient =>
      createTppClient({
        apiVersion,
        issuerUrl: issuer,
        clientId,
        cert,
        key,
        ca: ca.certPem,
        signingKey,
      });
    const pushTpp = sdk(
      'v4.0',
      DEMO_TPP.clientId,
      read(pki.tppCert),
      read(pki.tppKey),
      JSON.parse(read(pki.tppPrivateJwk)),
    );
    const pollTpp = sdk('v3.1', POLLING_TPP, second.certPem, second.keyPem, secondKey.privateJwk);
    cleanup.unshift(
      () => pushTpp.close(),
      () => pollTpp.close(),
    );

    // The push TPP's /event-notifications endpoint: an HTTPS server (the bank checks its
    // certificate against PUSH_CA_FILE) around the SDK's pushHandler.
    const pushed = new Map<string, VerifiedSet>();
    let onPushed = () => {};
    const rejected: string[] = [];
    const handler = pushTpp.pushHandler(
      (event) => {
        pushed.set(event.jti, event); // a redelivery has the same jti: the map deduplicates
        onPushed();
      },
      { onRejected: (r) => rejected.push(`${r.err}: ${r.description}`) },
    );
    const receiverCert = issueCertificate(ca, {
      commonName: 'localhost',
      organization: 'ob-events demo TPP',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const receiver = https.createServer(
      { cert: receiverCert.certPem, key: receiverCert.keyPem },
      (req, res) => {
        if (req.url === '/open-banking/v4.0/event-notifications') void handler(req, res);
        else res.writeHead(404).end();
      },
    );
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    cleanup.unshift(() => new Promise((resolve) => receiver.close(resolve)));
    const callbackUrl = `https://localhost:${(receiver.address() as net.AddressInfo).port}/open-banking/v4.0/event-notifications`;
    stepDone(`${DEMO_TPP.clientId} runs its push receiver (the SDK's pushHandler)`, [callbackUrl]);

    const pushSubscription = await pushTpp.subscribe({ callbackUrl });
    const pollSubscription = await pollTpp.subscribe();
    stepDone(
      'Both TPPs subscribed with the SDK (token by private_key_jwt over mTLS, signed request bodies)',
      [
        `${DEMO_TPP.clientId}: ${pushSubscription.id} through /open-banking/v4.0 (Version ${pushSubscription.version}), CallbackUrl set, all event types`,
        `${POLLING_TPP}: ${pollSubscription.id} through /open-banking/v3.1 (Version ${pollSubscription.version}), polling only, all event types`,
      ],
    );

    const events = [DEMO_TPP.clientId, POLLING_TPP].flatMap((clientId) =>
      EVENT_TYPES.flatMap((type) =>
        Array.from({ length: PER_TYPE }, (_, i) => eventOf(clientId, type, i, issuer)),
      ),
    );
    const body = JSON.stringify({ events });
    const res = await request(`http://127.0.0.1:${adminPort}/admin/v1/events`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-ob-events-signature': signAdminRequest({
          secret: adminSecret,
          method: 'POST',
          path: '/admin/v1/events',
          body,
        }),
      },
      body,
    });
    const answer = (await res.body.json()) as {
      results?: { status: string; jti: string | null }[];
    };
    const results = answer.results ?? [];
    if (res.statusCode !== 200 || results.some((r) => r.status !== 'created')) {
      throw new Error(`publishing failed: HTTP ${res.statusCode} ${JSON.stringify(answer)}`);
    }
    const expected = new Map<string, Set<string>>([
      [DEMO_TPP.clientId, new Set()],
      [POLLING_TPP, new Set()],
    ]);
    results.forEach((r, i) => expected.get(events[i]!.clientId)!.add(r.jti!));
    stepDone(
      `Published ${events.length} events through the admin API (HMAC-signed, as a bank system would)`,
      [
        `${PER_TYPE} of each of the ${EVENT_TYPES.length} event types for each TPP; each SET signed once and stored`,
      ],
    );

    const pushExpected = expected.get(DEMO_TPP.clientId)!;
    const pushOk = await waitFor(
      () => [...pushExpected].every((j) => pushed.has(j)),
      (f) => (onPushed = f),
    );
    stepDone(
      `Push: ${DEMO_TPP.clientId} received ${count(pushExpected, pushed)}/${pushExpected.size} SETs, each verified (signature, iss, aud) and answered 202`,
      [...pushed.values()].map(describe),
    );

    const pollExpected = expected.get(POLLING_TPP)!;
    const polled = new Map<string, VerifiedSet>();
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), RECEIVE_TIMEOUT_MS);
    for await (const event of pollTpp.events({ signal: stop.signal })) {
      polled.set(event.jti, event);
      if ([...pollExpected].every((j) => polled.has(j))) stop.abort(); // the last one is acknowledged on the way out
    }
    clearTimeout(timer);
    const pollOk = [...pollExpected].every((j) => polled.has(j));
    stepDone(
      `Polling: ${POLLING_TPP} received ${count(pollExpected, polled)}/${pollExpected.size} SETs through events() (long polling), each verified and acknowledged`,
      [...polled.values()].map(describe),
    );

    // What a TPP's receiver does with a SET that was changed on the way.
    const genuine = [...pushed.values()][0];
    let forgedStatus = 0;
    let forgedBody = '';
    if (genuine) {
      const [h, p, s] = genuine.jws.split('.');
      const claims = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<
        string,
        unknown
      >;
      const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'https://attacker.example/' })).toString('base64url')}.${s}`;
      const agent = new Agent({ connect: { ca: ca.certPem } });
      const r = await request(callbackUrl, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/jwt' },
        body: forged,
      });
      forgedStatus = r.statusCode;
      forgedBody = await r.body.text();
      await agent.close();
    }
    const forgedOk = forgedStatus === 400 && rejected.length === 1;
    stepDone(
      `A SET altered on its way to the receiver is refused: HTTP ${forgedStatus} ${forgedBody}`,
    );

    const ok = pushOk && pollOk && forgedOk;
    await runCleanup(cleanup);
    stepDone('Stopped the receiver, the TPP clients and the server; removed the temporary files');
    say(
      ok
        ? `\nAll ${events.length} events were received and verified, in ${seconds(performance.now() - started)}.`
        : `\nFAILED: push ${pushOk ? 'ok' : 'incomplete'}, polling ${pollOk ? 'ok' : 'incomplete'}, forged SET ${forgedOk ? 'refused' : 'NOT refused'}.`,
    );
    return ok;
  } catch (err) {
    await runCleanup(cleanup);
    throw err;
  }
}

function eventOf(clientId: string, type: (typeof EVENT_TYPES)[number], i: number, issuer: string) {
  const [id, rty, resource, reason] = {
    'UK.OBIE.Resource-Update': [
      `pmt-${i}`,
      'domestic-payment',
      'pisp/domestic-payments',
      undefined,
    ],
    'UK.OBIE.Consent-Authorization-Revoked': [
      `aac-${i}`,
      'account-access-consent',
      'aisp/account-access-consents',
      undefined,
    ],
    'UK.OBIE.Consent-Access-Revoked': [
      `vrp-${i}`,
      'domestic-vrp-consent',
      'pisp/domestic-vrp-consents',
      undefined,
    ],
    'UK.OBIE.Account-Access-Consent-Linked-Account-Update': [
      `aac-${i}`,
      'account-access-consent',
      'aisp/account-access-consents',
      'UK.OBIE.AccountClosure',
    ],
  }[type];
  return {
    clientId,
    type,
    subject: {
      id,
      type: rty,
      // One link per served version: each subscriber's SET `sub` is the link of its version.
      links: ['v3.1', 'v4.0'].map((version) => ({
        version,
        link: `${issuer}/open-banking/${version}/${resource}/${id}`,
      })),
    },
    ...(reason ? { reason } : {}),
  };
}

function describe(e: VerifiedSet): string {
  return `${e.eventTypes.join(' + ').padEnd(52)} jti ${e.jti}  sub ${e.claims.sub}`;
}

function count(expected: Set<string>, got: Map<string, unknown>): number {
  return [...expected].filter((j) => got.has(j)).length;
}

/** Resolves true once `done()` holds (checked whenever `subscribe`'s callback is called), false after the timeout. */
function waitFor(done: () => boolean, subscribe: (check: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(done()), RECEIVE_TIMEOUT_MS);
    const check = () => {
      if (!done()) return;
      clearTimeout(timer);
      resolve(true);
    };
    subscribe(check);
    check();
  });
}

async function runCleanup(cleanup: (() => Promise<unknown> | void)[]): Promise<void> {
  for (const fn of cleanup.splice(0)) {
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`cleanup: ${(err as Error).message}\n`);
    }
  }
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

// --with-bank-as: the same kind of walk-through beside a bank's own authorization server.
(process.argv.includes('--with-bank-as')
  ? import('./demoBankAs.js').then((m) => m.bankAsDemo())
  : main()
).then(
  (ok) => {
    process.exitCode = ok ? 0 : 1;
    // Everything is closed; should a stray handle remain, do not hang CI over it.
    setTimeout(() => process.exit(process.exitCode), 2_000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`\ndemo failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 2_000).unref();
  },
);
