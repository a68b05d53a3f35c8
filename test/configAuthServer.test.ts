// Resource-server settings (AUTH_*): defaults, how the introspection method follows from what is
// set, and a ConfigError naming the variable for every half-configuration.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Env } from '../src/config.js';

const CWD = '/srv/ob-events';
const ISSUER = 'https://as.bank.example';

function error(env: Env): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('resource-server configuration', () => {
  it('when AUTH_ISSUER_URL is unset, then ob-events issues its own tokens', () => {
    expect(loadConfig({}, CWD).authServer).toBeUndefined();
  });

  it('when only AUTH_ISSUER_URL is set, then the defaults apply: audience PUBLIC_URL, PS256/ES256, client_id, binding required, 30 s ceiling, opaque tokens refused', () => {
    const c = loadConfig(
      { AUTH_ISSUER_URL: ISSUER, PUBLIC_URL: 'https://events.bank.example' },
      CWD,
    ).authServer!;
    expect(c).toMatchObject({
      issuer: ISSUER,
      audience: 'https://events.bank.example',
      algorithms: ['PS256', 'ES256'],
      clientIdClaim: 'client_id',
      requireCertificateBinding: true,
      caFile: undefined,
    });
    expect(c.introspection).toMatchObject({ method: 'none', cacheSeconds: 30 });
  });

  it('when the introspection credentials are set, then the method follows from them', () => {
    const base = { AUTH_ISSUER_URL: ISSUER, AUTH_INTROSPECTION_CLIENT_ID: 'ob-events' };
    const method = (env: Env) => loadConfig({ ...base, ...env }, CWD).authServer!.introspection;
    expect(method({ AUTH_INTROSPECTION_CLIENT_SECRET: 's3cret' }).method).toBe(
      'client_secret_basic',
    );
    expect(method({ AUTH_INTROSPECTION_KEY_FILE: 'as.key' })).toMatchObject({
      method: 'private_key_jwt',
      keyFile: `${CWD}/as.key`,
    });
    expect(
      method({ AUTH_INTROSPECTION_CERT_FILE: 'c.crt', AUTH_INTROSPECTION_CERT_KEY_FILE: 'c.key' })
        .method,
    ).toBe('tls_client_auth');
  });

  it.each([
    ['an AUTH_* setting without AUTH_ISSUER_URL', { AUTH_AUDIENCE: 'x' }, 'AUTH_AUDIENCE'],
    ['the issuer is not https', { AUTH_ISSUER_URL: 'http://as.bank.example' }, 'AUTH_ISSUER_URL'],
    [
      'an algorithm is not one we know',
      { AUTH_ISSUER_URL: ISSUER, AUTH_ACCESS_TOKEN_ALGS: 'PS256,none' },
      'AUTH_ACCESS_TOKEN_ALGS',
    ],
    [
      'a secret comes without a client id',
      { AUTH_ISSUER_URL: ISSUER, AUTH_INTROSPECTION_CLIENT_SECRET: 's' },
      'AUTH_INTROSPECTION_CLIENT_ID',
    ],
    [
      'a secret and a key file are both set',
      {
        AUTH_ISSUER_URL: ISSUER,
        AUTH_INTROSPECTION_CLIENT_ID: 'x',
        AUTH_INTROSPECTION_CLIENT_SECRET: 's',
        AUTH_INTROSPECTION_KEY_FILE: 'k',
      },
      'AUTH_INTROSPECTION_KEY_FILE',
    ],
    [
      'a certificate comes without its key',
      { AUTH_ISSUER_URL: ISSUER, AUTH_INTROSPECTION_CERT_FILE: 'c' },
      'AUTH_INTROSPECTION_CERT_KEY_FILE',
    ],
    [
      'the cache ceiling is over an hour',
      { AUTH_ISSUER_URL: ISSUER, AUTH_INTROSPECTION_CACHE_SECONDS: '3601' },
      'AUTH_INTROSPECTION_CACHE_SECONDS',
    ],
  ])('when %s, then ConfigError names the variable', (_what, env, variable) => {
    expect(error(env as Env).variable).toBe(variable);
  });
});
