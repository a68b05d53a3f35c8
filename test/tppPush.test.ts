// The TPP SDK's push receiver (pushHandler: 202, or 400 with an RFC 8935 body) and verifySet used
// standalone, with SETs made by the server.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSetVerifier,
  SetVerificationError,
  verifySet,
  type TppClient,
  type VerifiedSet,
} from '../src/tpp/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { subscribe } from './helpers/fixtures.js';
import { readPki, startTestServer, TEST_PUBLIC_URL, type TestServer } from './helpers/server.js';
import { createTestTpp, type TestTpp } from './helpers/tpp.js';
import { publishFor, sdkClient, storedSet, tamper } from './helpers/tppSdk.js';

describe('TPP SDK push receiver', () => {
  let db: TestDatabase;
  let server: TestServer;
  let tpp: TestTpp;
  let client: TppClient;
  let receiver: http.Server;
  let url: string;
  const received: VerifiedSet[] = [];
  let failNext = false;
  let valid: string;
  let foreign: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db);
    tpp = await createTestTpp(server);
    const other = await createTestTpp(server);
    await subscribe(db.knex, tpp.clientId);
    await subscribe(db.knex, other.clientId);
    client = sdkClient(server, tpp);
    const handler = client.pushHandler(
      (event) => {
        if (failNext) {
          failNext = false;
          throw new Error('storage is down');
        }
        received.push(event);
      },
      { maxBodyBytes: 4_096, onError: () => {} },
    );
    receiver = http.createServer((req, res) => void handler(req, res));
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/open-banking/v3.1/event-notifications`;
    valid = await storedSet(db, (await publishFor(server, tpp.clientId, 1))[0]!);
    foreign = await storedSet(db, (await publishFor(server, other.clientId, 1))[0]!);
  });
  afterAll(async () => {
    await new Promise((r) => receiver?.close(r));
    await client?.close();
    await server?.stop();
    await db?.drop();
  });

  async function push(
    body: string,
    contentType = 'application/jwt',
    method: 'POST' | 'GET' = 'POST',
  ) {
    const res = await request(url, {
      method,
      headers: { 'content-type': contentType, 'x-fapi-interaction-id': 'ia-1' },
      ...(method === 'POST' ? { body } : {}),
    });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  }

  it('when a valid SET is pushed, then 202 with an empty body, and onEvent gets the verified event', async () => {
    received.length = 0;
    const res = await push(valid);
    expect(res.status).toBe(202);
    expect(res.text).toBe('');
    expect(res.headers['x-fapi-interaction-id']).toBe('ia-1');
    expect(received.map((e) => e.jws)).toEqual([valid]);
    expect(received[0]).toMatchObject({
      eventTypes: ['UK.OBIE.Resource-Update'],
      claims: { aud: tpp.clientId },
    });
  });

  it("when the same SET is pushed again, then it is accepted again with the same jti (deduplication is the TPP's)", async () => {
    received.length = 0;
    expect((await push(valid)).status).toBe(202);
    expect((await push(`${valid}\r\n`, 'application/secevent+jwt; charset=utf-8')).status).toBe(
      202,
    );
    expect(received.map((e) => e.jti)).toEqual([received[0]!.jti, received[0]!.jti]);
  });

  const refusals: [
    string,
    () => Promise<{ status: number; text: string; headers: Record<string, unknown> }>,
    string,
  ][] = [
    ['a tampered SET', () => push(tamper(valid, { sub: 'https://evil.example/' })), 'invalid_key'],
    ['a SET for another TPP', () => push(foreign), 'invalid_audience'],
    ['the wrong content type', () => push(valid, 'application/json'), 'invalid_request'],
    ['no JWS at all', () => push('hello'), 'invalid_request'],
    ['a body over the limit', () => push('a'.repeat(5_000)), 'invalid_request'],
  ];
  for (const [name, send, err] of refusals) {
    it(`when ${name} is pushed, then 400 {"err": "${err}"} and onEvent is not called`, async () => {
      received.length = 0;
      const res = await send();
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toBe('application/json');
      const body = JSON.parse(res.text) as { err: string; description: string };
      expect(body.err).toBe(err);
      expect(Object.keys(body).sort()).toEqual(['description', 'err']);
      expect(body.description.length).toBeGreaterThan(0);
      expect(received).toEqual([]);
    });
  }

  it('when onEvent throws, then 500 so that the server retries later', async () => {
    failNext = true;
    expect((await push(valid)).status).toBe(500);
  });

  it('when the method is not POST, then 405', async () => {
    const res = await push('', 'application/jwt', 'GET');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('POST');
  });

  it('when mounted in express behind express.text, then it uses the parsed body', async () => {
    const app = express();
    const got: string[] = [];
    app.post(
      '/open-banking/v3.1/event-notifications',
      express.text({ type: ['application/jwt'] }),
      client.pushHandler((e) => void got.push(e.jti)),
    );
    const srv = app.listen(0, '127.0.0.1');
    await new Promise((r) => srv.once('listening', r));
    const res = await request(
      `http://127.0.0.1:${(srv.address() as AddressInfo).port}/open-banking/v3.1/event-notifications`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/jwt' },
        body: valid,
      },
    );
    await res.body.text();
    await new Promise((r) => srv.close(r));
    expect(res.statusCode).toBe(202);
    expect(got).toHaveLength(1);
  });

  describe('verifySet standalone', () => {
    it('when given the JWKS URL and a TLS identity, then it verifies a SET; a wrong audience is refused', async () => {
      const pki = readPki();
      const opts = {
        issuer: TEST_PUBLIC_URL,
        audience: tpp.clientId,
        jwks: `${server.url}/jwks`,
        tls: { ca: pki.ca, cert: tpp.certPem, key: tpp.keyPem },
      };
      expect((await verifySet(valid, opts)).claims.aud).toBe(tpp.clientId);
      await expect(verifySet(valid, { ...opts, audience: 'someone-else' })).rejects.toMatchObject({
        err: 'invalid_audience',
      });
    });

    it('when given the keys themselves, then it verifies without fetching; a wrong issuer or algorithm is refused', async () => {
      const jwks = await server.server.services.keys.publicJwks();
      const verifier = createSetVerifier({ issuer: TEST_PUBLIC_URL, audience: tpp.clientId, jwks });
      expect((await verifier.verify(valid)).jti).toBeTypeOf('string');
      await expect(
        createSetVerifier({ issuer: 'https://other.example', audience: tpp.clientId, jwks }).verify(
          valid,
        ),
      ).rejects.toMatchObject({ err: 'invalid_issuer' });
      await expect(
        createSetVerifier({
          issuer: TEST_PUBLIC_URL,
          audience: tpp.clientId,
          jwks,
          algorithms: ['ES256'],
        }).verify(valid),
      ).rejects.toBeInstanceOf(SetVerificationError);
      const noneAlg = `${Buffer.from('{"alg":"none","typ":"JOSE"}').toString('base64url')}.${valid.split('.')[1]}.`;
      await expect(verifier.verify(noneAlg)).rejects.toMatchObject({ err: 'invalid_request' });
      const hs256 = `${Buffer.from(JSON.stringify({ alg: 'HS256', kid: jwks.keys[0]!.kid, typ: 'JOSE' })).toString('base64url')}.${valid.split('.')[1]}.c2ln`;
      await expect(verifier.verify(hs256)).rejects.toMatchObject({ err: 'invalid_key' });
    });
  });
});
