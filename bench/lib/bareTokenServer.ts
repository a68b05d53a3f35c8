// The reference of the token benchmark: the least any server issuing our tokens must do, with
// nothing of ours. A bare `node:https` server with ob-events' TLS settings that, for each POST,
// reads the form body, checks the client assertion's PS256 signature with the client's public key
// (synchronously, as ob-events does), signs an access token of the same claims and size on the
// thread pool (node:crypto's asynchronous sign, as ob-events does) and answers the same JSON with
// the same cache headers. No framework, no validation of claims, no logging, no metrics. With a
// database (`replayWrite`) it also records each assertion's jti as ob-events does before signing
// (src/db/stores/assertionJtisStore.ts: the same statement, one per turn of the event loop), so
// that the difference from ob-events is what ob-events adds beyond durable replay protection.
//
// Raw PS256 on one core says what one signature costs; this says what a token costs on this
// machine once TLS, HTTP, the assertion's verification and the thread hop are paid, with the same
// load generator sharing the same cores. Their ratio is a ceiling: no server reaches a higher
// `tokens/s ÷ raw PS256/s` on the machine than this one does.
import { createPublicKey } from 'node:crypto';
import type { JWK } from 'jose';
import type { DevPkiFiles } from '../../src/crypto/devPki.js';
import { startChildServer, type BareServer } from './references.js';

// The child reads everything from its environment: no file of its own to build or lint.
const BARE_TOKEN_SERVER = `
const https = require('node:https');
const fs = require('node:fs');
const { constants, createHash, createPrivateKey, createPublicKey, randomUUID, sign, verify } = require('node:crypto');
const tls = JSON.parse(process.env.BARE_TLS);
const clientKey = createPublicKey({ key: JSON.parse(process.env.BARE_CLIENT_JWK), format: 'jwk' });
const signingKey = createPrivateKey(fs.readFileSync(process.env.BARE_KEY));
const pss = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
const header = Buffer.from(JSON.stringify({ alg: 'PS256', kid: 'bare', typ: 'at+jwt' })).toString('base64url');
const issuer = process.env.BARE_ISSUER;
const thumbprints = new WeakMap();
const pool = process.env.BARE_DATABASE_URL
  ? new (require('pg').Pool)({ connectionString: process.env.BARE_DATABASE_URL, max: 10 })
  : undefined;
const REMEMBER = 'insert into assertion_jtis (client_id, jti, expires_at) select client_id, jti, expires_at ' +
  'from jsonb_to_recordset($1::jsonb) as r(client_id text, jti text, expires_at timestamptz) ' +
  'on conflict (client_id, jti) do nothing returning jti';
let waiting = [];
function firstUse(jti, exp, done) {
  waiting.push({ jti, exp, done });
  if (waiting.length === 1) setImmediate(flush);
}
function flush() {
  const batch = waiting;
  waiting = [];
  const rows = batch.map((w) => ({ client_id: 'bare-token-server', jti: w.jti, expires_at: new Date(w.exp * 1000).toISOString() }));
  pool.query(REMEMBER, [JSON.stringify(rows)]).then((r) => {
    const fresh = new Set(r.rows.map((row) => row.jti));
    for (const w of batch) w.done(fresh.delete(w.jti));
  }, () => { for (const w of batch) w.done(false); });
}
function thumbprint(socket) {
  let t = thumbprints.get(socket);
  if (t === undefined) {
    t = createHash('sha256').update(socket.getPeerX509Certificate().raw).digest('base64url');
    thumbprints.set(socket, t);
  }
  return t;
}
function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', pragma: 'no-cache' });
  res.end(body);
}
const server = https.createServer(
  { ...tls, cert: fs.readFileSync(process.env.BARE_CERT), key: fs.readFileSync(process.env.BARE_KEY),
    ca: fs.readFileSync(process.env.BARE_CA), requestCert: true, rejectUnauthorized: true },
  (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('latin1'));
      const assertion = form.get('client_assertion') || '';
      const last = assertion.lastIndexOf('.');
      const ok = last > 0 && verify('sha256', Buffer.from(assertion.slice(0, last)),
        { key: clientKey, ...pss }, Buffer.from(assertion.slice(last + 1), 'base64url'));
      if (!ok) return answer(res, 401, '{"error":"invalid_client"}');
      const claims = JSON.parse(Buffer.from(assertion.slice(assertion.indexOf('.') + 1, last), 'base64url').toString());
      if (pool) firstUse(claims.jti, claims.exp, (first) => (first ? issue(res, req, claims) : answer(res, 401, '{"error":"invalid_client"}')));
      else issue(res, req, claims);
    });
  },
);
function issue(res, req, claims) {
  const iat = Math.floor(Date.now() / 1000);
  const payload = { iss: issuer, aud: issuer, sub: claims.iss, client_id: claims.iss, scope: 'accounts payments fundsconfirmations',
    iat, exp: iat + 300, jti: randomUUID(), cnf: { 'x5t#S256': thumbprint(req.socket) } };
  const input = header + '.' + Buffer.from(JSON.stringify(payload)).toString('base64url');
  sign('sha256', Buffer.from(input), { key: signingKey, ...pss }, (err, sig) => {
    if (err) return answer(res, 500, '{"error":"server_error"}');
    answer(res, 200, JSON.stringify({ access_token: input + '.' + sig.toString('base64url'),
      token_type: 'Bearer', expires_in: 300, scope: payload.scope }));
  });
}
server.keepAliveTimeout = 65000;
server.listen(Number(process.env.BARE_PORT), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

/**
 * Starts the bare token server in its own process; `clientJwk` is the TPP's public key. With
 * `replayWrite` (a database ob-events has migrated) it records every jti there first.
 */
export function startBareTokenServer(
  pki: DevPkiFiles,
  clientJwk: JWK,
  issuer: string,
  replayWrite?: { databaseUrl: string },
): Promise<BareServer> {
  // Fail here, not in the child, on a key node cannot read.
  createPublicKey({ key: clientJwk as never, format: 'jwk' });
  return startChildServer(pki, BARE_TOKEN_SERVER, {
    BARE_CLIENT_JWK: JSON.stringify(clientJwk),
    BARE_ISSUER: issuer,
    ...(replayWrite ? { BARE_DATABASE_URL: replayWrite.databaseUrl } : {}),
  });
}
