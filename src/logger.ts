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
}

export function createLogger(opts: LoggerOptions): Logger {
  const base = {
    level: opts.level,
    name: opts.name ?? 'ob-events',
    redact: { paths: REDACT, censor: '[redacted]' },
    base: { pid: process.pid },
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
  return pino(base, pino.destination({ dest: 2, sync: opts.sync ?? false }));
}

/** A logger that writes nothing (tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
