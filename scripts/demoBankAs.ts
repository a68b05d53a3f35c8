// `npm run demo -- --with-bank-as`: ob-events beside a bank's own authorization server. A real
// OpenID Provider (oidc-provider, scripts/bankAs.ts) plays the bank's AS over HTTPS; ob-events
// runs in resource-server mode (AUTH_ISSUER_URL); two TPPs get certificate-bound tokens from the
// AS with openid-client (one a JWT by private_key_jwt and a resource indicator, one an opaque
// token by tls_client_auth that ob-events introspects), subscribe, and poll and acknowledge their
// events with the TPP SDK. Then the bank revokes the opaque token at its AS, and ob-events refuses
// it within the introspection cache ceiling. Exits 0 only when all of that happened.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { request, Agent } from 'undici';
import { loadConfig } from '../src/config.js';
import { createSigningKeyPair, issueCertificate, writeDevPki } from '../src/crypto/devPki.js';
import { parseEventInput } from '../src/domain/eventInput.js';
import { createLogger, silentLogger } from '../src/logger.js';
import { startServer } from '../src/main.js';
import { createTppClient } from '../src/tpp/index.js';
import { bankTokenSource, startBankAs } from './bankAs.js';

const CACHE_CEILING_SECONDS = 2;
const say = (text: string) => process.stdout.write(`${text}\n`);
let step = 0;
const stepDone = (text: string, detail: string[] = []) => {
  step += 1;
  say(`${String(step).padStart(2)}. ${text}`);
  for (const d of detail) say(`      ${d}`);
};

export async function bankAsDemo(): Promise<boolean> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-demo-bank-as-'));
  const cleanup: (() => Promise<unknown> | void)[] = [
    () => fs.rmSync(tmp, { recursive: true, force: true }),
  ];
  try {
    say("ob-events demo: resource-server mode beside the bank's own authorization server\n");
    const pki = await writeDevPki(path.join(tmp, 'pki'));
    const read = (p: string) => fs.readFileSync(p, 'utf8');
    const ca = { certPem: read(pki.caCert), keyPem: read(pki.caKey) };
    const tpp = (clientId: string) => ({
      clientId,
      cert: issueCertificate(ca, {
        commonName: clientId,
        organization: 'ob-events demo',
        country: 'GB',
        usage: 'client',
      }),
    });
    const jwtTpp = { ...tpp('tpp-jwt'), signing: await createSigningKeyPair() };
    const opaqueTpp = { ...tpp('tpp-opaque'), signing: await createSigningKeyPair() };
    const introspectionSecret = `demo-${Math.random().toString(36).slice(2)}-secret`;

    const as = await startBankAs({
      ca,
      clients: [
        {
          clientId: jwtTpp.clientId,
          method: 'private_key_jwt',
          publicJwk: jwtTpp.signing.publicJwk,
        },
        {
          clientId: opaqueTpp.clientId,
          method: 'tls_client_auth',
          subjectDn: `CN=${opaqueTpp.clientId},O=ob-events demo,C=GB`,
        },
        { clientId: 'ob-events', method: 'client_secret_basic', secret: introspectionSecret },
      ],
    });
    cleanup.unshift(() => as.stop());
    stepDone(`The bank's authorization server (oidc-provider) at ${as.issuer}`, [
      `${jwtTpp.clientId}: private_key_jwt; ${opaqueTpp.clientId}: tls_client_auth; both get certificate-bound tokens`,
      'ob-events is its client for introspection (client_secret_basic)',
    ]);

    const [port, adminPort] = await freePorts(2);
    const publicUrl = `https://localhost:${port}`;
    const config = loadConfig({
      HOST: '127.0.0.1',
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      DATA_DIR: path.join(tmp, 'data'),
      TLS_CERT_FILE: pki.serverCert,
      TLS_KEY_FILE: pki.serverKey,
      TLS_CLIENT_CA_FILE: pki.caCert,
      SIGNING_WORKERS: '0',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
      AUTH_ISSUER_URL: as.issuer,
      AUTH_CA_FILE: pki.caCert,
      AUTH_INTROSPECTION_CLIENT_ID: 'ob-events',
      AUTH_INTROSPECTION_CLIENT_SECRET: introspectionSecret,
      AUTH_INTROSPECTION_CACHE_SECONDS: String(CACHE_CEILING_SECONDS),
    });
    const logger =
      config.log.level === 'silent'
        ? silentLogger()
        : createLogger({ level: config.log.level, format: 'pretty' });
    const server = await startServer({ config, logger });
    cleanup.unshift(() => server.stop());
    stepDone(`ob-events in resource-server mode at ${publicUrl}`, [
      `AUTH_ISSUER_URL=${as.issuer}, AUTH_AUDIENCE=${publicUrl} (PUBLIC_URL)`,
      `AUTH_INTROSPECTION_CLIENT_ID=ob-events, AUTH_INTROSPECTION_CACHE_SECONDS=${CACHE_CEILING_SECONDS}`,
    ]);

    for (const t of [jwtTpp, opaqueTpp]) {
      await server.services.clients.register({
        clientId: t.clientId,
        jwks: { keys: [t.signing.publicJwk] },
      });
    }
    stepDone('The bank registered both TPPs with ob-events too (their request-signing keys)');

    const sources = {
      jwt: await bankTokenSource({
        issuer: as.issuer,
        clientId: jwtTpp.clientId,
        ca: ca.certPem,
        cert: jwtTpp.cert.certPem,
        key: jwtTpp.cert.keyPem,
        signingJwk: jwtTpp.signing.privateJwk,
        resource: publicUrl,
      }),
      opaque: await bankTokenSource({
        issuer: as.issuer,
        clientId: opaqueTpp.clientId,
        ca: ca.certPem,
        cert: opaqueTpp.cert.certPem,
        key: opaqueTpp.cert.keyPem,
      }),
    };
    cleanup.unshift(
      () => sources.jwt.close(),
      () => sources.opaque.close(),
    );
    const jwtToken = await sources.jwt.token();
    const opaqueToken = await sources.opaque.token();
    const claims = JSON.parse(Buffer.from(jwtToken.split('.')[1]!, 'base64url').toString()) as {
      aud: string;
      cnf: Record<string, string>;
    };
    stepDone('Both TPPs got tokens from the bank AS with openid-client, over mTLS', [
      `${jwtTpp.clientId}: JWT, aud ${claims.aud}, cnf.x5t#S256 ${claims.cnf['x5t#S256']}`,
      `${opaqueTpp.clientId}: opaque (${opaqueToken.length} characters), introspected by ob-events`,
    ]);

    const sdk = (t: typeof jwtTpp, tokenProvider: () => Promise<string>) =>
      createTppClient({
        issuerUrl: publicUrl,
        clientId: t.clientId,
        cert: t.cert.certPem,
        key: t.cert.keyPem,
        ca: ca.certPem,
        signingKey: t.signing.privateJwk,
        tokenProvider,
      });
    const clients = [
      { tpp: jwtTpp, client: sdk(jwtTpp, sources.jwt.token) },
      { tpp: opaqueTpp, client: sdk(opaqueTpp, sources.opaque.token) },
    ];
    for (const c of clients) cleanup.unshift(() => c.client.close());
    for (const c of clients) await c.client.subscribe();
    stepDone('Both subscribed with the SDK (bank tokens, signed request bodies)');

    const inputs = clients.flatMap(({ tpp: t }) =>
      [1, 2, 3].map((i) => {
        const r = parseEventInput({
          clientId: t.clientId,
          type: 'UK.OBIE.Resource-Update',
          subject: {
            id: `pmt-${i}`,
            type: 'domestic-payment',
            links: [
              { version: 'v3.1', link: `https://bank.example/pisp/domestic-payments/pmt-${i}` },
            ],
          },
        });
        if (!r.ok) throw new Error('bad demo event');
        return r.event;
      }),
    );
    await server.services.publisher.publish(inputs);
    const received: string[] = [];
    for (const { tpp: t, client } of clients) {
      const { sets } = await client.poll({ returnImmediately: true });
      for (const jws of Object.values(sets)) await client.verifySet(jws);
      await client.poll({ ack: Object.keys(sets), returnImmediately: true });
      received.push(
        `${t.clientId}: ${Object.keys(sets).length} SETs polled, verified and acknowledged`,
      );
    }
    stepDone(
      'Published 3 events for each; each TPP polled, verified and acknowledged them',
      received,
    );

    const agent = new Agent({
      connect: { ca: ca.certPem, cert: opaqueTpp.cert.certPem, key: opaqueTpp.cert.keyPem },
    });
    cleanup.unshift(() => agent.close());
    const pollWith = async (token: string) => {
      const res = await request(`${publicUrl}/open-banking/v3.1/events`, {
        dispatcher: agent,
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{"returnImmediately":true}',
      });
      await res.body.dump();
      return res.statusCode;
    };
    const ownToken = await request(`${publicUrl}/token`, { dispatcher: agent, method: 'POST' });
    await ownToken.body.dump();
    stepDone(`ob-events' own /token answers ${ownToken.statusCode} in this mode`);

    const token = await sources.opaque.token();
    const before = await pollWith(token);
    await (await as.provider.ClientCredentials.find(token))?.destroy();
    const revokedAt = Date.now();
    let after = before;
    while (after === 200 && Date.now() - revokedAt < (CACHE_CEILING_SECONDS + 5) * 1000) {
      await new Promise((r) => setTimeout(r, 200));
      after = await pollWith(token);
    }
    const took = ((Date.now() - revokedAt) / 1000).toFixed(1);
    stepDone(`The bank revoked ${opaqueTpp.clientId}'s token at its AS`, [
      `before: ${before}; refused with ${after} after ${took} s (ceiling ${CACHE_CEILING_SECONDS} s)`,
    ]);
    const ok = before === 200 && after === 401 && ownToken.statusCode === 404;
    say(ok ? '\nAll good.' : '\nSomething did not happen as it should (see above).');
    return ok;
  } finally {
    for (const fn of cleanup.splice(0)) {
      try {
        await fn();
      } catch (err) {
        process.stderr.write(`cleanup: ${(err as Error).message}\n`);
      }
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
