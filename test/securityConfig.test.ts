// Start-up refusals of the security hardening (issue 12): each names the variable to set.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Env } from '../src/config.js';

const CWD = '/srv/ob-events';
const KEK = { KEY_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64') };
const PRODUCTION = { OB_EVENTS_MODE: 'production', ...KEK };

function configError(env: Env): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('keys at rest', () => {
  it('when production has neither KEY_ENCRYPTION_KEY nor SIGNING_KEY_FILE, then start-up is refused', () => {
    expect(configError({ OB_EVENTS_MODE: 'production' }).variable).toBe('KEY_ENCRYPTION_KEY');
    expect(configError({ NODE_ENV: 'production' }).variable).toBe('KEY_ENCRYPTION_KEY');
  });
  it('when production has a KEK or a key file, then it starts', () => {
    expect(loadConfig(PRODUCTION, CWD).keys.encryptionKey).toBeDefined();
    const fileKey = { SIGNING_KEY_FILE: '/etc/ob/signing.pem', SIGNING_KEY_KID: 'k1' };
    expect(loadConfig({ OB_EVENTS_MODE: 'production', ...fileKey }, CWD).keys.keyFile).toBe(
      '/etc/ob/signing.pem',
    );
  });
  it('when development has no KEK, then it starts and says so', () => {
    expect(loadConfig({}, CWD).developmentDefaults.join()).toMatch(/KEY_ENCRYPTION_KEY/);
  });
});

describe('admin listener', () => {
  it('when HOST is set and ADMIN_HOST is not, then the admin listener stays on 127.0.0.1', () => {
    const c = loadConfig({ HOST: '0.0.0.0' }, CWD);
    expect(c.http.host).toBe('0.0.0.0');
    expect(c.http.adminHost).toBe('127.0.0.1');
    expect(c.http.adminTls).toBeUndefined();
  });
  it('when only one of ADMIN_TLS_CERT_FILE and ADMIN_TLS_KEY_FILE is set, then start-up is refused', () => {
    expect(configError({ ADMIN_TLS_CERT_FILE: '/a.crt' }).variable).toBe('ADMIN_TLS_KEY_FILE');
    expect(configError({ ADMIN_TLS_KEY_FILE: '/a.key' }).variable).toBe('ADMIN_TLS_CERT_FILE');
  });
  it('when production puts the admin listener on a network address without TLS, then start-up is refused', () => {
    expect(configError({ ...PRODUCTION, ADMIN_HOST: '0.0.0.0' }).variable).toBe('ADMIN_HOST');
    expect(configError({ ...PRODUCTION, ADMIN_HOST: 'admin.internal' }).variable).toBe(
      'ADMIN_HOST',
    );
    const tls = { ADMIN_TLS_CERT_FILE: '/a.crt', ADMIN_TLS_KEY_FILE: '/a.key' };
    expect(loadConfig({ ...PRODUCTION, ADMIN_HOST: '0.0.0.0', ...tls }, CWD).http.adminTls).toEqual(
      { certFile: '/a.crt', keyFile: '/a.key' },
    );
    expect(loadConfig({ ...PRODUCTION, ADMIN_HOST: '::1' }, CWD).http.adminHost).toBe('::1');
  });
});

describe('proxy mode', () => {
  const proxy = { CLIENT_CERT_HEADER: 'x-ssl-client-cert', PROXY_CA_FILE: '/etc/ob/proxy-ca.crt' };

  it('when TRUSTED_PROXIES is a catch-all (0.0.0.0/0, ::/0, ::ffff:0:0/96, 0.0.0.0/1), then start-up is refused', () => {
    for (const wide of [
      '0.0.0.0/0',
      '::/0',
      '::ffff:0.0.0.0/96',
      '0.0.0.0/1',
      '10.0.0.1/32,::/8',
    ]) {
      const err = configError({ ...proxy, TRUSTED_PROXIES: wide });
      expect(err.variable, wide).toBe('TRUSTED_PROXIES');
      expect(err.reason).toMatch(/too wide/);
    }
  });
  it('when TRUSTED_PROXIES lists proxy addresses, then it is accepted', () => {
    const c = loadConfig({ ...proxy, TRUSTED_PROXIES: '10.0.0.0/8,10.1.2.3,fd00:1::/48' }, CWD);
    expect(c.http.trustedProxies).toEqual(['10.0.0.0/8', '10.1.2.3', 'fd00:1::/48']);
    expect(c.http.proxyCaFile).toBe('/etc/ob/proxy-ca.crt');
  });
  it('when CLIENT_CERT_HEADER is set without PROXY_CA_FILE, then start-up is refused', () => {
    expect(
      configError({ CLIENT_CERT_HEADER: 'x-ssl-client-cert', TRUSTED_PROXIES: '10.0.0.1' })
        .variable,
    ).toBe('PROXY_CA_FILE');
  });
});
