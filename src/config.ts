// The one place that reads the environment. Parsed once at start-up; a bad value stops the
// process with the variable's name and the reason (see ConfigError). Everything else receives
// the typed Config object: no module reads process.env on its own.
import os from 'node:os';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import {
  EVENT_TYPES,
  extensionProblem,
  toEventTypeCode,
  type ExtensionEventType,
  type StandardEventType,
} from './domain/eventTypes.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: 'must be a whole number' })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { error: `must be at least ${min}` })
        .max(max, { error: `must be at most ${max}` }),
    );

const port = int(0, 65535);

const nonEmpty = z.string().min(1, { error: 'must not be empty' });

const httpsUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'https:' && !v.endsWith('/') && u.search === '' && u.hash === '';
    } catch {
      return false;
    }
  },
  { error: 'must be an absolute https URL without a trailing slash, query or fragment' },
);

const postgresUrl = z.string().refine(
  (v) => {
    try {
      return ['postgres:', 'postgresql:'].includes(new URL(v).protocol);
    } catch {
      return false;
    }
  },
  { error: 'must be a postgres:// or postgresql:// connection string' },
);

const cidrList = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
  )
  .refine((list) => list.every(isAddressOrCidr), {
    error: 'must be a comma-separated list of IP addresses or CIDR ranges',
  });

// SUPPORTED_EVENT_TYPES / EXTENSION_EVENT_TYPES: comma-separated event types (src/domain/eventTypes.ts).
const commaList = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

const supportedEventTypes = commaList
  .refine((list) => list.length > 0 && list.every((t) => toEventTypeCode(t) !== undefined), {
    error: `must be a comma-separated list of OBIE event types (${EVENT_TYPES.join(', ')}, or their URNs)`,
  })
  .transform((list) => [...new Set(list.map((t) => toEventTypeCode(t)!))]);

const extensionEventTypes = commaList
  .refine((list) => list.every((t) => extensionProblem(t) === undefined), {
    error:
      'must be a comma-separated list of namespaced URNs such as urn:bank.example:events:card-frozen, outside the OBIE namespace',
  })
  .transform((list) => [...new Set(list)] as ExtensionEventType[]);

function isAddressOrCidr(v: string): boolean {
  try {
    if (v.includes('/')) ipaddr.parseCIDR(v);
    else ipaddr.parse(v);
    return true;
  } catch {
    return false;
  }
}

/** Signature algorithms a bank's access tokens may use (AUTH_ACCESS_TOKEN_ALGS pins some). */
const ACCESS_TOKEN_ALGS = ['PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'RS256', 'EdDSA'];

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
  error: 'must be one of fatal, error, warn, info, debug, trace, silent',
});

/** Raw environment schema: one entry per variable, named exactly as in CONTRACT.md/README. */
const envSchema = z.object({
  DATABASE_URL: postgresUrl.optional(),
  NODE_ENV: z.string().optional(),
  OB_EVENTS_MODE: z
    .enum(['development', 'production'], { error: 'must be development or production' })
    .optional(),

  DATA_DIR: nonEmpty.default('./.data'),
  DB_POOL_MAX: int(1, 200).default(10),
  MIGRATE_ON_START: bool.default(true),

  HOST: nonEmpty.default('127.0.0.1'),
  PORT: port.default(8443),
  ADMIN_HOST: nonEmpty.default('127.0.0.1'),
  ADMIN_PORT: port.default(9090),
  ADMIN_TLS_CERT_FILE: nonEmpty.optional(),
  ADMIN_TLS_KEY_FILE: nonEmpty.optional(),
  PUBLIC_URL: httpsUrl.optional(),
  TLS_CERT_FILE: nonEmpty.default('certs/dev/server.crt'),
  TLS_KEY_FILE: nonEmpty.default('certs/dev/server.key'),
  TLS_CLIENT_CA_FILE: nonEmpty.default('certs/dev/ca.crt'),
  SHUTDOWN_TIMEOUT_MS: int(0, 600_000).default(10_000),
  VALIDATE_RESPONSES: bool.default(false),
  ADMIN_PUBLIC_JWKS: bool.default(true),
  HTTP_HEADERS_TIMEOUT_MS: int(1_000, 600_000).default(20_000),
  HTTP_REQUEST_TIMEOUT_MS: int(1_000, 3_600_000).default(60_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(1_000, 3_600_000).default(65_000),
  HTTP_IDLE_TIMEOUT_MS: int(1_000, 3_600_000).default(30_000),
  TLS_HANDSHAKE_TIMEOUT_MS: int(1_000, 600_000).default(10_000),
  HTTP_MAX_CONNECTIONS: int(0, 1_000_000).default(4_096),
  HTTP_MAX_CONNECTIONS_PER_ADDRESS: int(0, 1_000_000).default(256),

  CLIENT_CERT_HEADER: z
    .string()
    .regex(/^[a-z0-9-]+$/i, { error: 'must be an HTTP header name' })
    .optional(),
  TRUSTED_PROXIES: cidrList.default([]),
  PROXY_CA_FILE: nonEmpty.optional(),
  CRL_FILES: z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    )
    .default([]),
  CRL_RELOAD_SECONDS: int(1, 86_400).default(60),

  ACCESS_TOKEN_TTL_SECONDS: int(30, 86_400).default(600),
  CLIENT_ASSERTION_MAX_LIFETIME_SECONDS: int(10, 3_600).default(600),
  CLOCK_TOLERANCE_SECONDS: int(0, 300).default(10),

  CALLBACK_ALLOW_PRIVATE_NETWORKS: bool.default(false),
  REQUIRE_REQUEST_SIGNATURE: bool.default(true),
  OB_TRUST_ANCHOR: nonEmpty.default('openbanking.org.uk'),
  SET_TYP: z
    .enum(['JOSE', 'secevent+jwt'], { error: 'must be JOSE or secevent+jwt' })
    .default('JOSE'),
  ASPSP_FINANCIAL_ID: nonEmpty.default('ob-events-dev'),

  SIGNING_KEY_OVERLAP_DAYS: int(0, 3_650).default(7),
  SIGNING_KEY_FILE: nonEmpty.optional(),
  SIGNING_KEY_KID: nonEmpty.optional(),
  KEY_ENCRYPTION_KEY: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, {
      error: 'must be 32 bytes, base64-encoded (openssl rand -base64 32)',
    })
    .optional(),
  SIGNING_WORKERS: int(0, 64).default(Math.max(1, os.availableParallelism())),

  ADMIN_API_SECRET: z.string().min(16, { error: 'must be at least 16 characters' }).optional(),
  EVENT_RETENTION_DAYS: int(0, 3_650).default(7),
  SUPPORTED_EVENT_TYPES: supportedEventTypes.optional(),
  EXTENSION_EVENT_TYPES: extensionEventTypes.default([]),

  POLL_DEFAULT_MAX_EVENTS: int(1, 100_000).default(10),
  POLL_MAX_EVENTS: int(1, 100_000).default(1000),
  POLL_LEASE_SECONDS: int(1, 86_400).default(30),
  LONG_POLL_SECONDS: int(0, 300).default(20),
  LONG_POLL_MAX_PER_CLIENT: int(1, 10_000).default(10),

  PUSH_CA_FILE: nonEmpty.optional(),
  PUSH_CLIENT_CERT_FILE: nonEmpty.optional(),
  PUSH_CLIENT_KEY_FILE: nonEmpty.optional(),
  PUSH_CONCURRENCY: int(0, 1_000).default(32),
  PUSH_PER_ORIGIN_CONCURRENCY: int(1, 100).default(8),
  PUSH_TIMEOUT_MS: int(100, 120_000).default(10_000),
  PUSH_RETRY_BASE_MS: int(1, 3_600_000).default(1000),
  PUSH_MAX_ATTEMPTS: int(1, 1_000).default(10),
  PUSH_MAX_AGE_SECONDS: int(1, 31_536_000).default(86_400),
  PUSH_BREAKER_FAILURES: int(1, 1_000).default(5),
  PUSH_BREAKER_OPEN_SECONDS: int(1, 86_400).default(60),
  PUSH_BREAKER_WINDOW_SECONDS: int(1, 86_400).default(60),
  PUSH_BREAKER_FAILURE_RATE: z
    .string()
    .regex(/^(0(\.\d+)?|1(\.0+)?)$/, { error: 'must be a fraction from 0 to 1, e.g. 0.8' })
    .transform(Number)
    .default(0.8),
  PUSH_DISABLE_AFTER_SECONDS: int(0, 31_536_000).default(86_400),
  PUSH_WORKER_TIMEOUT_SECONDS: int(1, 3_600).default(30),

  // Resource-server mode (README "Deploying beside your authorization server").
  AUTH_ISSUER_URL: z
    .string()
    .refine(
      (v) => {
        try {
          const u = new URL(v);
          return u.protocol === 'https:' && u.search === '' && u.hash === '';
        } catch {
          return false;
        }
      },
      { error: 'must be an absolute https URL without a query or fragment' },
    )
    .optional(),
  AUTH_CA_FILE: nonEmpty.optional(),
  AUTH_AUDIENCE: nonEmpty.optional(),
  AUTH_ACCESS_TOKEN_ALGS: z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    )
    .refine((list) => list.length > 0 && list.every((a) => ACCESS_TOKEN_ALGS.includes(a)), {
      error: `must be a comma-separated list of ${ACCESS_TOKEN_ALGS.join(', ')}`,
    })
    .default(['PS256', 'ES256']),
  AUTH_CLIENT_ID_CLAIM: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, { error: 'must be a claim name' })
    .default('client_id'),
  AUTH_REQUIRE_CERTIFICATE_BINDING: bool.default(true),
  AUTH_INTROSPECTION_CLIENT_ID: nonEmpty.optional(),
  AUTH_INTROSPECTION_CLIENT_SECRET: nonEmpty.optional(),
  AUTH_INTROSPECTION_KEY_FILE: nonEmpty.optional(),
  AUTH_INTROSPECTION_KEY_KID: nonEmpty.optional(),
  AUTH_INTROSPECTION_CERT_FILE: nonEmpty.optional(),
  AUTH_INTROSPECTION_CERT_KEY_FILE: nonEmpty.optional(),
  AUTH_INTROSPECTION_CACHE_SECONDS: int(0, 3_600).default(30),

  LOG_LEVEL: logLevel.default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty'], { error: 'must be json or pretty' }).optional(),

  HISTORY_MAX_PER_SET: int(1, 10_000).default(50),
  REPLAY_MAX_SETS: int(1, 1_000_000).default(10_000),
  OPERATOR_PASSWORD: z.string().min(12, { error: 'must be at least 12 characters' }).optional(),
  OPERATOR_PASSWORD_FILE: nonEmpty.optional(),
  MAX_CLIENT_JWKS_KEYS: int(1, 1_000).default(20),
  RATE_LIMIT_TOKENS_PER_MINUTE: int(0, 1_000_000).default(60),
  RATE_LIMIT_API_PER_SECOND: int(0, 1_000_000).default(50),
  RATE_LIMIT_REPLICAS: int(1, 1_000).default(1),
});

export type Env = Record<string, string | undefined>;

export interface Config {
  /**
   * `production` (OB_EVENTS_MODE=production, or NODE_ENV=production when OB_EVENTS_MODE is unset)
   * turns development conveniences into start-up errors or refusals (see the README's Security
   * section); `development` is the default so that `npm start` works with nothing configured.
   */
  mode: 'development' | 'production';
  database: { url: string | undefined; dataDir: string; poolMax: number; migrateOnStart: boolean };
  http: {
    host: string;
    port: number;
    /** ADMIN_HOST: the admin listener's own address, never derived from HOST. */
    adminHost: string;
    adminPort: number;
    /** ADMIN_TLS_*: the admin listener serves HTTPS with these files; unset: plain HTTP. */
    adminTls: { certFile: string; keyFile: string } | undefined;
    publicUrl: string;
    tlsCertFile: string;
    tlsKeyFile: string;
    tlsClientCaFile: string;
    /** Set when no TLS_* file was configured: the development PKI directory, created when missing. */
    devPkiDir: string | undefined;
    shutdownTimeoutMs: number;
    /** Check every API response against openapi/openapi.yaml (tests, staging): a mismatch is a 500. */
    validateResponses: boolean;
    /** Also serve the public JWKS at GET /jwks on the admin listener, without mTLS (README). */
    adminPublicJwks: boolean;
    /** TLS-terminating proxy mode: client certificate taken from this header, only from trusted proxies. */
    clientCertHeader: string | undefined;
    trustedProxies: string[];
    /** PROXY_CA_FILE: the CA(s) of the proxies' own client certificates (proxy mode). */
    proxyCaFile: string | undefined;
    /** CRL_FILES: one CRL per client-certificate CA, re-read when changed (CRL_RELOAD_SECONDS). */
    crlFiles: string[];
    crlReloadSeconds: number;
    /** Per-connection time-outs and connection caps of both listeners (src/http/listeners.ts). */
    limits: {
      headersTimeoutMs: number;
      requestTimeoutMs: number;
      keepAliveTimeoutMs: number;
      idleTimeoutMs: number;
      handshakeTimeoutMs: number;
      longPollMs: number;
      maxConnections: number;
      maxConnectionsPerAddress: number;
    };
  };
  auth: {
    accessTokenTtlSeconds: number;
    clientAssertionMaxLifetimeSeconds: number;
    clockToleranceSeconds: number;
  };
  subscriptions: {
    callbackAllowPrivateNetworks: boolean;
    requireRequestSignature: boolean;
    trustAnchor: string;
  };
  keys: {
    overlapDays: number;
    keyFile: string | undefined;
    keyFileKid: string | undefined;
    encryptionKey: Buffer | undefined;
    signingWorkers: number;
  };
  events: {
    setTyp: 'JOSE' | 'secevent+jwt';
    adminApiSecret: string | undefined;
    retentionDays: number;
    /** SUPPORTED_EVENT_TYPES: the OBIE event types offered (default all four). */
    supportedEventTypes: StandardEventType[];
    /** EXTENSION_EVENT_TYPES: the bank's own event types (URNs). */
    extensionEventTypes: ExtensionEventType[];
  };
  polling: {
    defaultMaxEvents: number;
    maxEvents: number;
    leaseSeconds: number;
    longPollSeconds: number;
    longPollMaxPerClient: number;
  };
  push: {
    financialId: string;
    caFile: string | undefined;
    clientCertFile: string | undefined;
    clientKeyFile: string | undefined;
    concurrency: number;
    perOriginConcurrency: number;
    timeoutMs: number;
    retryBaseMs: number;
    maxAttempts: number;
    maxAgeSeconds: number;
    breakerFailures: number;
    breakerOpenSeconds: number;
    /** Failure-rate window of the breaker, and the rate (0-1) that opens it. */
    breakerWindowSeconds: number;
    breakerFailureRate: number;
    /** Push to a TPP is disabled after this long without a success (0: never). */
    disableAfterSeconds: number;
    /** A push worker not heard from for this long counts as gone (heartbeats: 1/6 of it). */
    workerTimeoutSeconds: number;
  };
  log: { level: z.infer<typeof logLevel>; format: 'json' | 'pretty' };
  /** Operating it: delivery history, replay, the operator console (README "Operations"). */
  operations: {
    /** Most push attempts kept after a replay, and poll hand-outs recorded, per SET. */
    historyMaxPerSet: number;
    /** Most SETs one "replay since T" makes pending again (run it again for the rest). */
    replayMaxSets: number;
    /** The console's operator credential; unset (and no file): the console is off. */
    operatorPassword: string | undefined;
    /** A file holding the credential (read when the console starts), instead of the variable. */
    operatorPasswordFile: string | undefined;
  };
  /** Client registration limits. */
  clients: { maxJwksKeys: number };
  /**
   * Per-client request limits for the whole deployment (0: off); each replica enforces its
   * share, the limit divided by `replicas` (src/http/rateLimits.ts).
   */
  rateLimits: { tokensPerMinute: number; apiPerSecond: number; replicas: number };
  /** Resource-server mode: the bank's authorization server issues the tokens (AUTH_ISSUER_URL). */
  authServer: AuthServerConfig | undefined;
  /** Which settings fell back to development defaults (reported loudly at start-up). */
  developmentDefaults: string[];
}

export interface AuthServerConfig {
  issuer: string;
  caFile: string | undefined;
  audience: string;
  algorithms: string[];
  clientIdClaim: string;
  requireCertificateBinding: boolean;
  introspection: {
    /** How ob-events authenticates to the introspection endpoint; none: opaque tokens refused. */
    method: 'client_secret_basic' | 'private_key_jwt' | 'tls_client_auth' | 'none';
    clientId: string | undefined;
    clientSecret: string | undefined;
    keyFile: string | undefined;
    keyKid: string | undefined;
    /** Client certificate for mTLS to the AS (tls_client_auth, or alongside another method). */
    certFile: string | undefined;
    certKeyFile: string | undefined;
    cacheSeconds: number;
  };
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly reason: string,
  ) {
    super(`${variable}: ${reason}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const set = emptyAsUnset(env);
  const parsed = envSchema.safeParse(set);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue?.path[0] ?? 'environment');
    throw new ConfigError(variable, issue?.message ?? 'invalid');
  }
  const e = parsed.data;
  crossCheck(e, set);

  const resolve = (p: string) => path.resolve(cwd, p);
  const developmentDefaults: string[] = [];
  if (!e.DATABASE_URL)
    developmentDefaults.push(`embedded PGlite database in ${resolve(e.DATA_DIR)}`);
  const tlsConfigured = set.TLS_CERT_FILE !== undefined; // crossCheck: all three or none
  if (!tlsConfigured)
    developmentDefaults.push(`development PKI in ${resolve('certs/dev')} (not for production)`);
  if (!e.KEY_ENCRYPTION_KEY && !e.SIGNING_KEY_FILE) {
    developmentDefaults.push('signing keys stored unencrypted (set KEY_ENCRYPTION_KEY)');
  }

  return {
    mode: modeOf(e),
    database: {
      url: e.DATABASE_URL,
      dataDir: resolve(e.DATA_DIR),
      poolMax: e.DB_POOL_MAX,
      migrateOnStart: e.MIGRATE_ON_START,
    },
    http: {
      host: e.HOST,
      port: e.PORT,
      adminHost: e.ADMIN_HOST,
      adminPort: e.ADMIN_PORT,
      adminTls:
        e.ADMIN_TLS_CERT_FILE && e.ADMIN_TLS_KEY_FILE
          ? { certFile: resolve(e.ADMIN_TLS_CERT_FILE), keyFile: resolve(e.ADMIN_TLS_KEY_FILE) }
          : undefined,
      publicUrl: e.PUBLIC_URL ?? `https://localhost:${e.PORT}`,
      tlsCertFile: resolve(e.TLS_CERT_FILE),
      tlsKeyFile: resolve(e.TLS_KEY_FILE),
      tlsClientCaFile: resolve(e.TLS_CLIENT_CA_FILE),
      devPkiDir: tlsConfigured ? undefined : resolve('certs/dev'),
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
      validateResponses: e.VALIDATE_RESPONSES,
      adminPublicJwks: e.ADMIN_PUBLIC_JWKS,
      clientCertHeader: e.CLIENT_CERT_HEADER?.toLowerCase(),
      trustedProxies: e.TRUSTED_PROXIES,
      proxyCaFile: e.PROXY_CA_FILE ? resolve(e.PROXY_CA_FILE) : undefined,
      crlFiles: e.CRL_FILES.map(resolve),
      crlReloadSeconds: e.CRL_RELOAD_SECONDS,
      limits: {
        headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
        requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
        keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
        idleTimeoutMs: e.HTTP_IDLE_TIMEOUT_MS,
        handshakeTimeoutMs: e.TLS_HANDSHAKE_TIMEOUT_MS,
        longPollMs: e.LONG_POLL_SECONDS * 1000,
        maxConnections: e.HTTP_MAX_CONNECTIONS,
        maxConnectionsPerAddress: e.HTTP_MAX_CONNECTIONS_PER_ADDRESS,
      },
    },
    auth: {
      accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
      clientAssertionMaxLifetimeSeconds: e.CLIENT_ASSERTION_MAX_LIFETIME_SECONDS,
      clockToleranceSeconds: e.CLOCK_TOLERANCE_SECONDS,
    },
    subscriptions: {
      callbackAllowPrivateNetworks: e.CALLBACK_ALLOW_PRIVATE_NETWORKS,
      requireRequestSignature: e.REQUIRE_REQUEST_SIGNATURE,
      trustAnchor: e.OB_TRUST_ANCHOR,
    },
    keys: {
      overlapDays: e.SIGNING_KEY_OVERLAP_DAYS,
      keyFile: e.SIGNING_KEY_FILE ? resolve(e.SIGNING_KEY_FILE) : undefined,
      keyFileKid: e.SIGNING_KEY_KID,
      encryptionKey: e.KEY_ENCRYPTION_KEY ? Buffer.from(e.KEY_ENCRYPTION_KEY, 'base64') : undefined,
      signingWorkers: e.SIGNING_WORKERS,
    },
    events: {
      setTyp: e.SET_TYP,
      adminApiSecret: e.ADMIN_API_SECRET,
      retentionDays: e.EVENT_RETENTION_DAYS,
      supportedEventTypes: e.SUPPORTED_EVENT_TYPES ?? [...EVENT_TYPES],
      extensionEventTypes: e.EXTENSION_EVENT_TYPES,
    },
    polling: {
      defaultMaxEvents: e.POLL_DEFAULT_MAX_EVENTS,
      maxEvents: e.POLL_MAX_EVENTS,
      leaseSeconds: e.POLL_LEASE_SECONDS,
      longPollSeconds: e.LONG_POLL_SECONDS,
      longPollMaxPerClient: e.LONG_POLL_MAX_PER_CLIENT,
    },
    push: {
      financialId: e.ASPSP_FINANCIAL_ID,
      caFile: e.PUSH_CA_FILE ? resolve(e.PUSH_CA_FILE) : undefined,
      clientCertFile: e.PUSH_CLIENT_CERT_FILE ? resolve(e.PUSH_CLIENT_CERT_FILE) : undefined,
      clientKeyFile: e.PUSH_CLIENT_KEY_FILE ? resolve(e.PUSH_CLIENT_KEY_FILE) : undefined,
      concurrency: e.PUSH_CONCURRENCY,
      perOriginConcurrency: e.PUSH_PER_ORIGIN_CONCURRENCY,
      timeoutMs: e.PUSH_TIMEOUT_MS,
      retryBaseMs: e.PUSH_RETRY_BASE_MS,
      maxAttempts: e.PUSH_MAX_ATTEMPTS,
      maxAgeSeconds: e.PUSH_MAX_AGE_SECONDS,
      breakerFailures: e.PUSH_BREAKER_FAILURES,
      breakerOpenSeconds: e.PUSH_BREAKER_OPEN_SECONDS,
      breakerWindowSeconds: e.PUSH_BREAKER_WINDOW_SECONDS,
      breakerFailureRate: e.PUSH_BREAKER_FAILURE_RATE,
      disableAfterSeconds: e.PUSH_DISABLE_AFTER_SECONDS,
      workerTimeoutSeconds: e.PUSH_WORKER_TIMEOUT_SECONDS,
    },
    log: {
      level: e.LOG_LEVEL,
      format: e.LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json'),
    },
    operations: {
      historyMaxPerSet: e.HISTORY_MAX_PER_SET,
      replayMaxSets: e.REPLAY_MAX_SETS,
      operatorPassword: e.OPERATOR_PASSWORD,
      operatorPasswordFile: e.OPERATOR_PASSWORD_FILE
        ? resolve(e.OPERATOR_PASSWORD_FILE)
        : undefined,
    },
    clients: { maxJwksKeys: e.MAX_CLIENT_JWKS_KEYS },
    rateLimits: {
      tokensPerMinute: e.RATE_LIMIT_TOKENS_PER_MINUTE,
      apiPerSecond: e.RATE_LIMIT_API_PER_SECOND,
      replicas: e.RATE_LIMIT_REPLICAS,
    },
    authServer: authServerConfig(e, resolve, e.PUBLIC_URL ?? `https://localhost:${e.PORT}`),
    developmentDefaults,
  };
}

function authServerConfig(
  e: z.infer<typeof envSchema>,
  resolve: (p: string) => string,
  publicUrl: string,
): AuthServerConfig | undefined {
  if (e.AUTH_ISSUER_URL === undefined) return undefined;
  const method = e.AUTH_INTROSPECTION_CLIENT_SECRET
    ? 'client_secret_basic'
    : e.AUTH_INTROSPECTION_KEY_FILE
      ? 'private_key_jwt'
      : e.AUTH_INTROSPECTION_CERT_FILE
        ? 'tls_client_auth'
        : 'none';
  const file = (v: string | undefined) => (v ? resolve(v) : undefined);
  return {
    issuer: e.AUTH_ISSUER_URL,
    caFile: file(e.AUTH_CA_FILE),
    audience: e.AUTH_AUDIENCE ?? publicUrl,
    algorithms: e.AUTH_ACCESS_TOKEN_ALGS,
    clientIdClaim: e.AUTH_CLIENT_ID_CLAIM,
    requireCertificateBinding: e.AUTH_REQUIRE_CERTIFICATE_BINDING,
    introspection: {
      method,
      clientId: e.AUTH_INTROSPECTION_CLIENT_ID,
      clientSecret: e.AUTH_INTROSPECTION_CLIENT_SECRET,
      keyFile: file(e.AUTH_INTROSPECTION_KEY_FILE),
      keyKid: e.AUTH_INTROSPECTION_KEY_KID,
      certFile: file(e.AUTH_INTROSPECTION_CERT_FILE),
      certKeyFile: file(e.AUTH_INTROSPECTION_CERT_KEY_FILE),
      cacheSeconds: e.AUTH_INTROSPECTION_CACHE_SECONDS,
    },
  };
}

/** An empty variable (`FOO=`) counts as unset, as most shells and compose files intend. */
function emptyAsUnset(env: Env): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') out[k] = v;
  return out;
}

/** 0.0.0.0/0, ::/0, ::ffff:0:0/96 and anything nearly as wide: not a list of proxies. */
function isCatchAllRange(entry: string): boolean {
  if (!entry.includes('/')) return false;
  const [net, bits] = ipaddr.parseCIDR(entry);
  if (net.kind() === 'ipv6' && (net as ipaddr.IPv6).isIPv4MappedAddress()) return bits - 96 < 8;
  return net.kind() === 'ipv4' ? bits < 8 : bits < 32;
}

function modeOf(e: z.infer<typeof envSchema>): Config['mode'] {
  return e.OB_EVENTS_MODE ?? (e.NODE_ENV === 'production' ? 'production' : 'development');
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  try {
    return ipaddr.process(host).range() === 'loopback';
  } catch {
    return false; // a host name: it may resolve anywhere
  }
}

function crossCheck(e: z.infer<typeof envSchema>, env: Env): void {
  // Half a TLS configuration would mix a bank's files with the (ungenerated) dev PKI defaults.
  const tls = ['TLS_CERT_FILE', 'TLS_KEY_FILE', 'TLS_CLIENT_CA_FILE'] as const;
  const missing = tls.filter((k) => !env[k]);
  if (missing.length > 0 && missing.length < tls.length) {
    throw new ConfigError(
      missing[0]!,
      'TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE must be set together (all unset: the development PKI)',
    );
  }
  if (e.POLL_DEFAULT_MAX_EVENTS > e.POLL_MAX_EVENTS) {
    throw new ConfigError('POLL_DEFAULT_MAX_EVENTS', 'must not exceed POLL_MAX_EVENTS');
  }
  if ((e.SIGNING_KEY_FILE === undefined) !== (e.SIGNING_KEY_KID === undefined)) {
    throw new ConfigError(
      e.SIGNING_KEY_FILE === undefined ? 'SIGNING_KEY_FILE' : 'SIGNING_KEY_KID',
      'SIGNING_KEY_FILE and SIGNING_KEY_KID must be set together',
    );
  }
  if ((e.PUSH_CLIENT_CERT_FILE === undefined) !== (e.PUSH_CLIENT_KEY_FILE === undefined)) {
    throw new ConfigError(
      e.PUSH_CLIENT_CERT_FILE === undefined ? 'PUSH_CLIENT_CERT_FILE' : 'PUSH_CLIENT_KEY_FILE',
      'PUSH_CLIENT_CERT_FILE and PUSH_CLIENT_KEY_FILE must be set together',
    );
  }
  if (e.OPERATOR_PASSWORD !== undefined && e.OPERATOR_PASSWORD_FILE !== undefined) {
    throw new ConfigError(
      'OPERATOR_PASSWORD_FILE',
      'set OPERATOR_PASSWORD or OPERATOR_PASSWORD_FILE, not both',
    );
  }
  if (
    modeOf(e) === 'production' &&
    e.KEY_ENCRYPTION_KEY === undefined &&
    e.SIGNING_KEY_FILE === undefined
  ) {
    // Plaintext private keys in the database: read access would be enough to mint tokens.
    throw new ConfigError(
      'KEY_ENCRYPTION_KEY',
      'production needs KEY_ENCRYPTION_KEY (openssl rand -base64 32) or SIGNING_KEY_FILE: signing keys are never stored in plaintext',
    );
  }
  if ((e.ADMIN_TLS_CERT_FILE === undefined) !== (e.ADMIN_TLS_KEY_FILE === undefined)) {
    throw new ConfigError(
      e.ADMIN_TLS_CERT_FILE === undefined ? 'ADMIN_TLS_CERT_FILE' : 'ADMIN_TLS_KEY_FILE',
      'ADMIN_TLS_CERT_FILE and ADMIN_TLS_KEY_FILE must be set together',
    );
  }
  if (
    modeOf(e) === 'production' &&
    e.ADMIN_TLS_CERT_FILE === undefined &&
    !isLoopback(e.ADMIN_HOST)
  ) {
    // /metrics and the HMAC APIs in cleartext on a network interface.
    throw new ConfigError(
      'ADMIN_HOST',
      'a non-loopback admin listener needs ADMIN_TLS_CERT_FILE and ADMIN_TLS_KEY_FILE in production',
    );
  }
  checkAuthServer(e, env);
  if (e.HTTP_HEADERS_TIMEOUT_MS > e.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConfigError('HTTP_HEADERS_TIMEOUT_MS', 'must not exceed HTTP_REQUEST_TIMEOUT_MS');
  }
  if (e.CLIENT_CERT_HEADER !== undefined && e.TRUSTED_PROXIES.length === 0) {
    throw new ConfigError(
      'TRUSTED_PROXIES',
      'must list the proxy addresses (CIDR) when CLIENT_CERT_HEADER is set',
    );
  }
  if (e.CLIENT_CERT_HEADER !== undefined && e.PROXY_CA_FILE === undefined) {
    throw new ConfigError(
      'PROXY_CA_FILE',
      "must name the CA of the proxies' own client certificates when CLIENT_CERT_HEADER is set (the proxy authenticates with mTLS)",
    );
  }
  const tooWide = e.TRUSTED_PROXIES.find(isCatchAllRange);
  if (tooWide !== undefined) {
    throw new ConfigError(
      'TRUSTED_PROXIES',
      `${tooWide} is too wide: list the proxies' addresses (IPv4 ranges of /8 or narrower, IPv6 of /32 or narrower)`,
    );
  }
}

/** Resource-server settings: only with AUTH_ISSUER_URL, and each method's parts together. */
function checkAuthServer(e: z.infer<typeof envSchema>, env: Env): void {
  const names = Object.keys(env).filter((k) => k.startsWith('AUTH_') && k !== 'AUTH_ISSUER_URL');
  if (e.AUTH_ISSUER_URL === undefined) {
    const stray = names.find((k) => k in envSchema.shape);
    if (stray) throw new ConfigError(stray, 'only means something with AUTH_ISSUER_URL set');
    return;
  }
  const needsId = e.AUTH_INTROSPECTION_CLIENT_SECRET ?? e.AUTH_INTROSPECTION_KEY_FILE;
  if (needsId !== undefined && e.AUTH_INTROSPECTION_CLIENT_ID === undefined) {
    throw new ConfigError(
      'AUTH_INTROSPECTION_CLIENT_ID',
      'is needed with AUTH_INTROSPECTION_CLIENT_SECRET or AUTH_INTROSPECTION_KEY_FILE',
    );
  }
  if (e.AUTH_INTROSPECTION_CLIENT_SECRET && e.AUTH_INTROSPECTION_KEY_FILE) {
    throw new ConfigError(
      'AUTH_INTROSPECTION_KEY_FILE',
      'give AUTH_INTROSPECTION_CLIENT_SECRET or AUTH_INTROSPECTION_KEY_FILE, not both',
    );
  }
  if (
    (e.AUTH_INTROSPECTION_CERT_FILE === undefined) !==
    (e.AUTH_INTROSPECTION_CERT_KEY_FILE === undefined)
  ) {
    throw new ConfigError(
      e.AUTH_INTROSPECTION_CERT_FILE === undefined
        ? 'AUTH_INTROSPECTION_CERT_FILE'
        : 'AUTH_INTROSPECTION_CERT_KEY_FILE',
      'AUTH_INTROSPECTION_CERT_FILE and AUTH_INTROSPECTION_CERT_KEY_FILE must be set together',
    );
  }
  if (
    e.AUTH_INTROSPECTION_CERT_FILE !== undefined &&
    needsId === undefined &&
    e.AUTH_INTROSPECTION_CLIENT_ID === undefined
  ) {
    throw new ConfigError('AUTH_INTROSPECTION_CLIENT_ID', 'is needed for tls_client_auth');
  }
}
