// The client assertion checks on their own (no server): each rule fails with its own code, so the
// HTTP tests' uniform `invalid_client` is known to come from the rule the test is about.
import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT, type JSONWebKeySet, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ClientAssertionError,
  verifyClientAssertion,
  type AssertionFailure,
  type AssertionPolicy,
} from '../src/crypto/clientAssertion.js';
import { createSigningKeyPair } from '../src/crypto/devPki.js';
import { loadConfig } from '../src/config.js';
import { validatePublicJwks } from '../src/domain/clients.js';

const TOKEN_ENDPOINT = 'https://bank.example/token';
const NOW_MS = Date.UTC(2026, 0, 15, 12, 0, 0);
const NOW = NOW_MS / 1000;
const policy: AssertionPolicy = {
  audiences: [TOKEN_ENDPOINT, 'https://bank.example'],
  maxLifetimeSeconds: 600,
  clockToleranceSeconds: 10,
};

describe('verifyClientAssertion', () => {
  let key: { privateJwk: JWK; publicJwk: JWK; kid: string };
  let otherKey: { privateJwk: JWK; publicJwk: JWK; kid: string };
  let clients: Map<string, { jwks: JSONWebKeySet }>;

  beforeAll(async () => {
    key = await createSigningKeyPair();
    otherKey = await createSigningKeyPair();
    clients = new Map([['tpp-1', { jwks: { keys: [key.publicJwk] } }]]);
  });

  const find = (id: string) => Promise.resolve(clients.get(id));

  async function assertion(
    claims: Record<string, unknown> = {},
    header: Record<string, unknown> = {},
    signWith: JWK = key.privateJwk,
  ): Promise<string> {
    const all: Record<string, unknown> = {
      iss: 'tpp-1',
      sub: 'tpp-1',
      aud: TOKEN_ENDPOINT,
      jti: randomUUID(),
      iat: NOW,
      exp: NOW + 300,
      ...claims,
    };
    for (const [k, v] of Object.entries(all)) if (v === undefined) delete all[k];
    return new SignJWT(all)
      .setProtectedHeader({ alg: 'PS256', kid: key.kid, ...header } as { alg: string })
      .sign(await importJWK(signWith, 'PS256'));
  }

  async function failure(jwt: string): Promise<AssertionFailure | 'accepted'> {
    try {
      await verifyClientAssertion(jwt, policy, NOW_MS, find);
      return 'accepted';
    } catch (err) {
      if (err instanceof ClientAssertionError) return err.failure;
      throw err;
    }
  }

  it('when every claim is right, then it returns the client, jti and how long to remember the jti', async () => {
    const jti = randomUUID();
    const verified = await verifyClientAssertion(await assertion({ jti }), policy, NOW_MS, find);
    expect(verified.clientId).toBe('tpp-1');
    expect(verified.jti).toBe(jti);
    expect(verified.rememberUntil.getTime()).toBe((NOW + 300 + 10) * 1000);
  });

  it('when the text is not a JWT, then malformed', async () => {
    expect(await failure('not.a.jwt')).toBe('malformed');
  });

  it('when alg is none, then alg_not_allowed', async () => {
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const jwt = `${b64({ alg: 'none' })}.${b64({ iss: 'tpp-1', sub: 'tpp-1', aud: TOKEN_ENDPOINT, jti: 'x', exp: NOW + 60 })}.`;
    expect(await failure(jwt)).toBe('alg_not_allowed');
  });

  it('when alg is HS256 (the public key used as a MAC secret), then alg_not_allowed', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(key.publicJwk));
    const jwt = await new SignJWT({
      iss: 'tpp-1',
      sub: 'tpp-1',
      aud: TOKEN_ENDPOINT,
      jti: 'x',
      exp: NOW + 60,
    })
      .setProtectedHeader({ alg: 'HS256', kid: key.kid })
      .sign(secret);
    expect(await failure(jwt)).toBe('alg_not_allowed');
  });

  it('when alg is RS256, then alg_not_allowed (FAPI: PS256 or ES256 only)', async () => {
    const jwt = await new SignJWT({
      iss: 'tpp-1',
      sub: 'tpp-1',
      aud: TOKEN_ENDPOINT,
      jti: 'x',
      exp: NOW + 60,
    })
      .setProtectedHeader({ alg: 'RS256', kid: key.kid })
      .sign(await importJWK(key.privateJwk, 'RS256'));
    expect(await failure(jwt)).toBe('alg_not_allowed');
  });

  it.each(['iss', 'sub', 'aud', 'exp', 'jti'])(
    'when %s is missing, then missing_claim',
    async (claim) => {
      expect(await failure(await assertion({ [claim]: undefined }))).toBe('missing_claim');
    },
  );

  it('when iss differs from sub, then iss_not_sub', async () => {
    expect(await failure(await assertion({ sub: 'tpp-2' }))).toBe('iss_not_sub');
  });

  it('when iss = sub is not an active client, then unknown_client', async () => {
    expect(await failure(await assertion({ iss: 'ghost', sub: 'ghost' }))).toBe('unknown_client');
  });

  it('when aud is another server, then wrong_audience', async () => {
    expect(await failure(await assertion({ aud: 'https://other.example/token' }))).toBe(
      'wrong_audience',
    );
  });

  it('when the client has several keys and the assertion names no kid, then no_matching_key (keys are not tried one by one)', async () => {
    clients.set('tpp-2', { jwks: { keys: [otherKey.publicJwk, key.publicJwk] } });
    const jwt = await assertion({ iss: 'tpp-2', sub: 'tpp-2' }, { kid: undefined });
    expect(await failure(jwt)).toBe('no_matching_key');
    // Naming the kid, the same client is accepted.
    expect(await failure(await assertion({ iss: 'tpp-2', sub: 'tpp-2' }))).toBe('accepted');
  });

  it('when the client has one key and the assertion names no kid, then that key verifies it', async () => {
    expect(await failure(await assertion({}, { kid: undefined }))).toBe('accepted');
  });

  it('when the kid is not in the JWKS, then no_matching_key', async () => {
    expect(await failure(await assertion({}, { kid: otherKey.kid }, otherKey.privateJwk))).toBe(
      'no_matching_key',
    );
  });

  it('when another key signed it under the registered kid, then bad_signature', async () => {
    expect(await failure(await assertion({}, {}, otherKey.privateJwk))).toBe('bad_signature');
  });

  it('when exp has passed (beyond the tolerance), then expired', async () => {
    expect(await failure(await assertion({ iat: NOW - 100, exp: NOW - 11 }))).toBe('expired');
  });

  it('when exp passed within the clock tolerance, then it is still accepted', async () => {
    expect(await failure(await assertion({ iat: NOW - 100, exp: NOW - 5 }))).toBe('accepted');
  });

  it('when exp is further ahead than the maximum lifetime, then lifetime_too_long', async () => {
    expect(await failure(await assertion({ exp: NOW + 600 + 11 }))).toBe('lifetime_too_long');
    expect(await failure(await assertion({ exp: NOW + 600 }))).toBe('accepted');
  });

  it('when nbf is in the future, then not_yet_valid', async () => {
    expect(await failure(await assertion({ nbf: NOW + 60 }))).toBe('not_yet_valid');
  });

  it('when iat is in the future, then issued_in_future', async () => {
    expect(await failure(await assertion({ iat: NOW + 60 }))).toBe('issued_in_future');
  });

  it('when the checks are ordered, then an unknown client is reported before a bad audience or signature', async () => {
    const jwt = await assertion(
      { iss: 'ghost', sub: 'ghost', aud: 'https://other.example' },
      {},
      otherKey.privateJwk,
    );
    expect(await failure(jwt)).toBe('unknown_client');
  });
});

describe('client JWKS size', () => {
  it('when a JWKS holds more keys than MAX_CLIENT_JWKS_KEYS, then registration refuses it before importing any', async () => {
    const one = await createSigningKeyPair();
    const keys = Array.from({ length: 21 }, (_, i) => ({ ...one.publicJwk, kid: `k${i}` }));
    await expect(validatePublicJwks({ keys })).rejects.toThrow(/at most 20/);
    await expect(validatePublicJwks({ keys: keys.slice(0, 3) }, 2)).rejects.toThrow(/at most 2/);
    await expect(validatePublicJwks({ keys: keys.slice(0, 2) }, 2)).resolves.toBeTruthy();
  });

  it('when MAX_CLIENT_JWKS_KEYS is not set, then the limit is 20', () => {
    expect(loadConfig({}).clients.maxJwksKeys).toBe(20);
    expect(loadConfig({ MAX_CLIENT_JWKS_KEYS: '5' }).clients.maxJwksKeys).toBe(5);
  });
});
