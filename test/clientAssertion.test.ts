// The client assertion checks on their own (no server): each rule fails with its own code, so the
// HTTP tests' uniform `invalid_client` is known to come from the rule the test is about.
import {
  constants,
  createPrivateKey,
  generateKeyPairSync,
  randomUUID,
  sign,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
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

  it('when a part is not base64url, then malformed', async () => {
    const [h, c, sig] = (await assertion()).split('.');
    expect(await failure(`${h}.${c}!.${sig}`)).toBe('malformed');
    expect(await failure(`${h}.${c}.${sig}=`)).toBe('malformed');
    expect(await failure(`${h}.${c}.${sig}.x`)).toBe('malformed');
  });

  it('when the header or the claims are not a JSON object, then malformed', async () => {
    const [h, c, sig] = (await assertion()).split('.');
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    expect(await failure(`${b64(['PS256'])}.${c}.${sig}`)).toBe('malformed');
    expect(await failure(`${h}.${b64('tpp-1')}.${sig}`)).toBe('malformed');
    // Not UTF-8 at all.
    expect(await failure(`${Buffer.from([0xff, 0xfe]).toString('base64url')}.${c}.${sig}`)).toBe(
      'malformed',
    );
  });

  it('when the header carries crit, then malformed (no extension is understood)', async () => {
    const jwt = psSigned(
      { alg: 'PS256', kid: key.kid, crit: ['exp'] },
      { iss: 'tpp-1', sub: 'tpp-1', aud: TOKEN_ENDPOINT, jti: 'c', exp: NOW + 60 },
      createPrivateKey({ key: key.privateJwk as JsonWebKey, format: 'jwk' }),
    );
    expect(await failure(jwt)).toBe('malformed');
  });

  it('when the kid is not a string, then malformed', async () => {
    expect(await failure(await assertion({}, { kid: 7 }))).toBe('malformed');
  });

  it('when iat or nbf is not a number, then malformed', async () => {
    expect(await failure(await assertion({ iat: String(NOW) }))).toBe('malformed');
    expect(await failure(await assertion({ nbf: 'soon' }))).toBe('malformed');
  });

  it('when the signature is cut short or altered, then bad_signature', async () => {
    const jwt = await assertion();
    expect(await failure(jwt.slice(0, -10))).toBe('bad_signature');
    const [h, c] = jwt.split('.');
    const other = (await assertion()).split('.')[2];
    expect(await failure(`${h}.${c}.${other}`)).toBe('bad_signature');
  });

  it('when the registered RSA key is shorter than 2048 bits, then no_matching_key', async () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = { ...weak.publicKey.export({ format: 'jwk' }), kid: 'weak' } as JWK;
    clients.set('tpp-weak', { jwks: { keys: [jwk] } });
    const jwt = psSigned(
      { alg: 'PS256', kid: 'weak' },
      { iss: 'tpp-weak', sub: 'tpp-weak', aud: TOKEN_ENDPOINT, jti: 'w', exp: NOW + 60 },
      weak.privateKey,
    );
    expect(await failure(jwt)).toBe('no_matching_key');
  });

  it('when the client replaces its keys, then an assertion signed with the old key is refused', async () => {
    clients.set('tpp-3', { jwks: { keys: [key.publicJwk] } });
    const signed = () => assertion({ iss: 'tpp-3', sub: 'tpp-3' }, { kid: undefined });
    expect(await failure(await signed())).toBe('accepted');
    // A changed registration is a new JWKS object (Clients' cache hands out the new row).
    clients.set('tpp-3', { jwks: { keys: [otherKey.publicJwk] } });
    expect(await failure(await signed())).toBe('bad_signature');
  });

  describe('ES256', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const publicJwk = { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1' } as JWK;

    const es256 = (claims: Record<string, unknown> = {}, signWith = ec.privateKey) =>
      new SignJWT({
        iss: 'tpp-ec',
        sub: 'tpp-ec',
        aud: TOKEN_ENDPOINT,
        jti: randomUUID(),
        iat: NOW,
        exp: NOW + 60,
        ...claims,
      })
        .setProtectedHeader({ alg: 'ES256', kid: 'ec-1' })
        .sign(signWith);

    beforeAll(() => clients.set('tpp-ec', { jwks: { keys: [publicJwk] } }));

    it('when a P-256 key signed it, then it is accepted', async () => {
      expect(await failure(await es256())).toBe('accepted');
    });

    it('when another P-256 key signed it, then bad_signature', async () => {
      const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      expect(await failure(await es256({}, other.privateKey))).toBe('bad_signature');
    });

    it('when the signature is DER-encoded instead of r || s, then bad_signature', async () => {
      const [h, c] = (await es256()).split('.');
      const der = sign('sha256', Buffer.from(`${h}.${c}`), ec.privateKey).toString('base64url');
      expect(await failure(`${h}.${c}.${der}`)).toBe('bad_signature');
    });

    it('when the header says PS256 over an EC key, then no_matching_key', async () => {
      const [, c, s] = (await es256()).split('.');
      const h = Buffer.from(JSON.stringify({ alg: 'PS256', kid: 'ec-1' })).toString('base64url');
      expect(await failure(`${h}.${c}.${s}`)).toBe('no_matching_key');
    });
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

/** A PS256 compact JWS made by hand: jose refuses to sign some of what these tests send. */
function psSigned(header: object, claims: object, privateKey: KeyObject): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64(header)}.${b64(claims)}`;
  const signature = sign('sha256', Buffer.from(input), {
    key: privateKey,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: 32,
  });
  return `${input}.${signature.toString('base64url')}`;
}

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
