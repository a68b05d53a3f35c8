// pino, to stderr (stdout is kept for machine-readable CLI output). JSON by default, readable
// lines when LOG_FORMAT=pretty or stderr is a terminal. Secrets are redacted by path as a second
// line of defence; the code never passes tokens, assertions or keys to the logger in the first place.
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

const REDACT = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'client_assertion',
  '*.client_assertion',
  'access_token',
  '*.access_token',
  'privateJwk',
  '*.privateJwk',
  'secret',
  '*.secret',
];

export interface LoggerOptions {
  level: string;
  format: 'json' | 'pretty';
  name?: string;
  /** Write each line before returning (CLI commands: their last stderr line must be the error). */
  sync?: boolean;
  /** Where JSON lines go instead of stderr (tests). */
  destination?: NodeJS.WritableStream;
}

// Every logged value is bounded: much of what is logged comes from callers (client ids, paths,
// refusal reasons quoting a claim), and a 15,000-character client id must not make a 15 KB line.
export const MAX_LOGGED_STRING = 256;
const MAX_LOGGED_STACK = 2_048;
const MAX_DEPTH = 5;
const MAX_MEMBERS = 30;

/** `value` with every string cut to MAX_LOGGED_STRING, and objects and arrays bounded. */
export function boundedForLog(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return clip(value, MAX_LOGGED_STRING);
  if (typeof value !== 'object' || value === null) return value;
  if (value instanceof Date) return value;
  if (value instanceof Error) return boundedError(value, depth);
  if (depth >= MAX_DEPTH) return '[nested too deep]';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_MEMBERS).map((v) => boundedForLog(v, depth + 1));
    if (value.length > MAX_MEMBERS) items.push(`[${value.length - MAX_MEMBERS} more]`);
    return items;
  }
  if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(value)) {
    if (n++ === MAX_MEMBERS) {
      out['…'] = 'more members not logged';
      break;
    }
    out[clip(k, 64)] = boundedForLog(v, depth + 1);
  }
  return out;
}

function boundedError(err: Error, depth: number): unknown {
  const plain = pino.stdSerializers.err(err) as unknown as Record<string, unknown>;
  const stack = typeof plain.stack === 'string' ? clip(plain.stack, MAX_LOGGED_STACK) : undefined;
  const bounded = boundedForLog({ ...plain, stack: undefined }, depth) as Record<string, unknown>;
  if (stack !== undefined) bounded.stack = stack;
  delete bounded.raw;
  return bounded;
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…[${s.length - max} more characters]` : s;
}

const BOUNDED = {
  // The merged object of each line (before serializers): every member bounded.
  formatters: {
    log: (obj: Record<string, unknown>) => boundedForLog(obj) as Record<string, unknown>,
  },
  serializers: { err: (e: unknown) => boundedForLog(e) },
  // The message and any printf-style arguments.
  hooks: {
    logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
      method.apply(
        this,
        args.map((a) => (typeof a === 'string' ? clip(a, MAX_LOGGED_STRING) : a)),
      );
    },
  },
};

export function createLogger(opts: LoggerOptions): Logger {
  const base = {
    level: opts.level,
    name: opts.name ?? 'ob-events',
    redact: { paths: REDACT, censor: '[redacted]' },
    base: { pid: process.pid },
    ...BOUNDED,
  };
  if (opts.format === 'pretty') {
    // pino-pretty as a synchronous stream: no worker thread, lines appear in order with CLI output.
    const require = createRequire(import.meta.url);
    const pretty = require('pino-pretty') as (o: object) => NodeJS.WritableStream;
    return pino(
      base,
      pretty({
        destination: 2,
        sync: true,
        ignore: 'pid,hostname',
        translateTime: 'SYS:HH:MM:ss.l',
      }),
    );
  }
  return pino(base, opts.destination ?? pino.destination({ dest: 2, sync: opts.sync ?? false }));
}

/** A logger that writes nothing (tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
