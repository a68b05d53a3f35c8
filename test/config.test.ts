// loadConfig: the defaults of CONTRACT.md's table, and one ConfigError per kind of bad value,
// naming the variable and saying why.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Env } from '../src/config.js';

const CWD = '/srv/ob-events';

/** The ConfigError that loadConfig throws for `env` (fails the test when it does not throw). */
function configError(env: Env): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('loadConfig defaults', () => {
  const config = loadConfig({}, CWD);

  it('when nothing is set, then the listeners use the defaults of CONTRACT.md', () => {
    expect(config.http.host).toBe('127.0.0.1');
    expect(config.http.port).toBe(8443);
    expect(config.http.adminPort).toBe(9090);
    expect(config.http.publicUrl).toBe('https://localhost:8443');
    expect(config.http.tlsCertFile).toBe(path.join(CWD, 'certs/dev/server.crt'));
    expect(config.http.tlsKeyFile).toBe(path.join(CWD, 'certs/dev/server.key'));
    expect(config.http.tlsClientCaFile).toBe(path.join(CWD, 'certs/dev/ca.crt'));
    expect(config.http.devPkiDir).toBe(path.join(CWD, 'certs/dev'));
    expect(config.http.clientCertHeader).toBeUndefined();
    expect(config.http.trustedProxies).toEqual([]);
  });

  it('when nothing is set, then the embedded database lives in ./.data under the working directory', () => {
    expect(config.database.url).toBeUndefined();
    expect(config.database.dataDir).toBe(path.join(CWD, '.data'));
    expect(config.database.migrateOnStart).toBe(true);
  });

  it('when nothing is set, then polling, push and SET settings have the defaults of CONTRACT.md', () => {
    expect(config.polling.defaultMaxEvents).toBe(10);
    expect(config.polling.maxEvents).toBe(1000);
    expect(config.polling.leaseSeconds).toBe(30);
    expect(config.polling.longPollSeconds).toBe(20);
    expect(config.push.retryBaseMs).toBe(1000);
    expect(config.push.maxAttempts).toBe(10);
    expect(config.push.maxAgeSeconds).toBe(86_400);
    expect(config.push.financialId).toBe('ob-events-dev');
    expect(config.push.caFile).toBeUndefined();
    expect(config.events.setTyp).toBe('JOSE');
    expect(config.events.adminApiSecret).toBeUndefined();
  });

  it('when nothing is set, then subscriptions require signatures and refuse private callbacks', () => {
    expect(config.subscriptions.requireRequestSignature).toBe(true);
    expect(config.subscriptions.callbackAllowPrivateNetworks).toBe(false);
    expect(config.subscriptions.trustAnchor).toBe('openbanking.org.uk');
    expect(config.log.level).toBe('info');
  });

  it('when PORT is set and PUBLIC_URL is not, then PUBLIC_URL follows PORT', () => {
    expect(loadConfig({ PORT: '9443' }, CWD).http.publicUrl).toBe('https://localhost:9443');
  });

  it('when a variable is set to the empty string, then it counts as unset', () => {
    const c = loadConfig({ PORT: '', DATABASE_URL: '', LOG_LEVEL: '' }, CWD);
    expect(c.http.port).toBe(8443);
    expect(c.database.url).toBeUndefined();
    expect(c.log.level).toBe('info');
  });

  it('when values are set, then they are parsed into the typed config', () => {
    const c = loadConfig(
      {
        DATABASE_URL: 'postgresql://u:p@db:5432/ob',
        PORT: '443',
        ADMIN_PORT: '0',
        PUBLIC_URL: 'https://events.bank.example/ob',
        REQUIRE_REQUEST_SIGNATURE: 'false',
        CALLBACK_ALLOW_PRIVATE_NETWORKS: 'true',
        SET_TYP: 'secevent+jwt',
        CLIENT_CERT_HEADER: 'X-SSL-Client-Cert',
        TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.7 ,::1',
        PROXY_CA_FILE: '/etc/ob/proxy-ca.crt',
        KEY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
        DATA_DIR: '/var/lib/ob',
      },
      CWD,
    );
    expect(c.database.url).toBe('postgresql://u:p@db:5432/ob');
    expect(c.database.dataDir).toBe('/var/lib/ob');
    expect(c.http.port).toBe(443);
    expect(c.http.adminPort).toBe(0);
    expect(c.http.publicUrl).toBe('https://events.bank.example/ob');
    expect(c.subscriptions.requireRequestSignature).toBe(false);
    expect(c.subscriptions.callbackAllowPrivateNetworks).toBe(true);
    expect(c.events.setTyp).toBe('secevent+jwt');
    expect(c.http.clientCertHeader).toBe('x-ssl-client-cert');
    expect(c.http.trustedProxies).toEqual(['10.0.0.0/8', '192.168.1.7', '::1']);
    expect(c.keys.encryptionKey).toEqual(Buffer.alloc(32, 7));
  });
});

describe('loadConfig developmentDefaults', () => {
  it('when DATABASE_URL and the TLS files are unset, then the embedded database and dev PKI are listed', () => {
    const defaults = loadConfig({}, CWD).developmentDefaults.join('\n');
    expect(defaults).toContain(`embedded PGlite database in ${path.join(CWD, '.data')}`);
    expect(defaults).toContain(`development PKI in ${path.join(CWD, 'certs/dev')}`);
    expect(defaults).toContain('KEY_ENCRYPTION_KEY');
  });

  it('when DATABASE_URL, the TLS files and KEY_ENCRYPTION_KEY are set, then no development default is listed', () => {
    const c = loadConfig(
      {
        DATABASE_URL: 'postgres://db/ob',
        TLS_CERT_FILE: '/etc/ob/server.crt',
        TLS_KEY_FILE: '/etc/ob/server.key',
        TLS_CLIENT_CA_FILE: '/etc/ob/ca.crt',
        KEY_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64'),
      },
      CWD,
    );
    expect(c.developmentDefaults).toEqual([]);
    expect(c.http.devPkiDir).toBeUndefined();
    expect(c.http.tlsCertFile).toBe('/etc/ob/server.crt');
  });
});

describe('loadConfig mode', () => {
  // Production refuses plaintext signing keys (test/securityConfig.test.ts).
  const KEK = { KEY_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64') };

  it('when nothing says production, then the mode is development', () => {
    expect(loadConfig({}, CWD).mode).toBe('development');
  });

  it('when NODE_ENV=production, then the mode is production', () => {
    expect(loadConfig({ NODE_ENV: 'production', ...KEK }, CWD).mode).toBe('production');
  });

  it('when OB_EVENTS_MODE is set, then it wins over NODE_ENV', () => {
    expect(loadConfig({ NODE_ENV: 'production', OB_EVENTS_MODE: 'development' }, CWD).mode).toBe(
      'development',
    );
    expect(loadConfig({ OB_EVENTS_MODE: 'production', ...KEK }, CWD).mode).toBe('production');
  });

  it('when SUPPORTED_EVENT_TYPES and EXTENSION_EVENT_TYPES are set, then URNs become codes and duplicates go', () => {
    const events = loadConfig(
      {
        SUPPORTED_EVENT_TYPES:
          'urn:uk:org:openbanking:events:consent-authorization-revoked, UK.OBIE.Consent-Authorization-Revoked',
        EXTENSION_EVENT_TYPES:
          'urn:bank.example:events:card-frozen,urn:bank.example:events:card-frozen',
      },
      CWD,
    ).events;
    expect(events.supportedEventTypes).toEqual(['UK.OBIE.Consent-Authorization-Revoked']);
    expect(events.extensionEventTypes).toEqual(['urn:bank.example:events:card-frozen']);
    expect(loadConfig({}, CWD).events.supportedEventTypes).toHaveLength(4);
  });

  it('when OB_EVENTS_MODE is neither, then loadConfig names it', () => {
    expect(() => loadConfig({ OB_EVENTS_MODE: 'prod' }, CWD)).toThrow(/OB_EVENTS_MODE/);
  });
});

describe('loadConfig refuses bad values', () => {
  // [env, variable named, words of the reason]
  const cases: [string, Env, string, RegExp][] = [
    ['PORT is not a number', { PORT: 'abc' }, 'PORT', /whole number/],
    ['PORT is above 65535', { PORT: '70000' }, 'PORT', /at most 65535/],
    ['ADMIN_PORT is negative', { ADMIN_PORT: '-1' }, 'ADMIN_PORT', /whole number/],
    ['PUBLIC_URL is http', { PUBLIC_URL: 'http://x.example' }, 'PUBLIC_URL', /https/],
    [
      'PUBLIC_URL ends in a slash',
      { PUBLIC_URL: 'https://x.example/' },
      'PUBLIC_URL',
      /trailing slash/,
    ],
    ['PUBLIC_URL is not a URL', { PUBLIC_URL: 'localhost:8443' }, 'PUBLIC_URL', /https URL/],
    [
      'DATABASE_URL is not Postgres',
      { DATABASE_URL: 'mysql://root@db/ob' },
      'DATABASE_URL',
      /postgres:\/\//,
    ],
    ['SET_TYP is unknown', { SET_TYP: 'foo' }, 'SET_TYP', /JOSE or secevent\+jwt/],
    ['LOG_LEVEL is unknown', { LOG_LEVEL: 'loud' }, 'LOG_LEVEL', /one of fatal, error/],
    [
      'KEY_ENCRYPTION_KEY is not 32 bytes',
      { KEY_ENCRYPTION_KEY: Buffer.alloc(16).toString('base64') },
      'KEY_ENCRYPTION_KEY',
      /32 bytes/,
    ],
    [
      'POLL_DEFAULT_MAX_EVENTS exceeds POLL_MAX_EVENTS',
      { POLL_DEFAULT_MAX_EVENTS: '50', POLL_MAX_EVENTS: '20' },
      'POLL_DEFAULT_MAX_EVENTS',
      /POLL_MAX_EVENTS/,
    ],
    [
      'SIGNING_KEY_FILE is set without SIGNING_KEY_KID',
      { SIGNING_KEY_FILE: '/etc/ob/signing.pem' },
      'SIGNING_KEY_KID',
      /set together/,
    ],
    [
      'SIGNING_KEY_KID is set without SIGNING_KEY_FILE',
      { SIGNING_KEY_KID: 'k1' },
      'SIGNING_KEY_FILE',
      /set together/,
    ],
    [
      'PUSH_CLIENT_CERT_FILE is set without its key',
      { PUSH_CLIENT_CERT_FILE: '/etc/ob/push.crt' },
      'PUSH_CLIENT_KEY_FILE',
      /set together/,
    ],
    [
      'PUSH_BREAKER_FAILURE_RATE is not a fraction from 0 to 1',
      { PUSH_BREAKER_FAILURE_RATE: '80%' },
      'PUSH_BREAKER_FAILURE_RATE',
      /fraction from 0 to 1/,
    ],
    [
      'CLIENT_CERT_HEADER is set without TRUSTED_PROXIES',
      { CLIENT_CERT_HEADER: 'x-ssl-client-cert' },
      'TRUSTED_PROXIES',
      /CLIENT_CERT_HEADER/,
    ],
    [
      'CLIENT_CERT_HEADER is not a header name',
      { CLIENT_CERT_HEADER: 'x cert', TRUSTED_PROXIES: '10.0.0.1' },
      'CLIENT_CERT_HEADER',
      /header name/,
    ],
    [
      'TRUSTED_PROXIES holds something that is not an IP',
      { TRUSTED_PROXIES: '10.0.0.1,not-an-ip' },
      'TRUSTED_PROXIES',
      /IP addresses or CIDR/,
    ],
    [
      'TRUSTED_PROXIES holds a bad CIDR',
      { TRUSTED_PROXIES: '10.0.0.0/40' },
      'TRUSTED_PROXIES',
      /IP addresses or CIDR/,
    ],
    [
      'a boolean is not true or false',
      { REQUIRE_REQUEST_SIGNATURE: 'maybe' },
      'REQUIRE_REQUEST_SIGNATURE',
      /true or false/,
    ],
    [
      'MIGRATE_ON_START is not a boolean',
      { MIGRATE_ON_START: 'TRUE!' },
      'MIGRATE_ON_START',
      /true or false/,
    ],
    ['ADMIN_API_SECRET is short', { ADMIN_API_SECRET: 'short' }, 'ADMIN_API_SECRET', /16/],
    ['LOG_FORMAT is unknown', { LOG_FORMAT: 'xml' }, 'LOG_FORMAT', /json or pretty/],
    [
      'SUPPORTED_EVENT_TYPES names a type OBIE does not define',
      { SUPPORTED_EVENT_TYPES: 'UK.OBIE.Resource-Update,UK.OBIE.Nonsense' },
      'SUPPORTED_EVENT_TYPES',
      /OBIE event types/,
    ],
    [
      'EXTENSION_EVENT_TYPES uses the OBIE namespace',
      { EXTENSION_EVENT_TYPES: 'urn:uk:org:openbanking:events:mine' },
      'EXTENSION_EVENT_TYPES',
      /outside the OBIE namespace/,
    ],
    [
      'EXTENSION_EVENT_TYPES is not a URN',
      { EXTENSION_EVENT_TYPES: 'BANK.CardFrozen' },
      'EXTENSION_EVENT_TYPES',
      /namespaced URNs/,
    ],
    [
      'the headers may take longer than the whole request',
      { HTTP_HEADERS_TIMEOUT_MS: '30000', HTTP_REQUEST_TIMEOUT_MS: '20000' },
      'HTTP_HEADERS_TIMEOUT_MS',
      /must not exceed HTTP_REQUEST_TIMEOUT_MS/,
    ],
    [
      'HTTP_MAX_CONNECTIONS_PER_ADDRESS is negative',
      { HTTP_MAX_CONNECTIONS_PER_ADDRESS: '-1' },
      'HTTP_MAX_CONNECTIONS_PER_ADDRESS',
      /whole number/,
    ],
    [
      'only TLS_CERT_FILE is set',
      { TLS_CERT_FILE: '/etc/ob/server.crt' },
      'TLS_KEY_FILE',
      /set together/,
    ],
  ];

  for (const [what, env, variable, reason] of cases) {
    it(`when ${what}, then ConfigError names ${variable} and says why`, () => {
      const err = configError(env);
      expect(err.variable).toBe(variable);
      expect(err.reason).toMatch(reason);
      expect(err.message).toBe(`${variable}: ${err.reason}`);
    });
  }

  it('when two variables are bad, then the error names one of them (not a generic message)', () => {
    const err = configError({ PORT: 'x', ADMIN_PORT: 'y' });
    expect(['PORT', 'ADMIN_PORT']).toContain(err.variable);
  });
});
