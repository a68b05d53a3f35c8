// `ob-events tpp poll [--follow]`: a TPP receiving events with the SDK, for people. Each verified
// event is one JSON line on stdout, acknowledged once printed; SETs that fail verification are
// reported to the server (setErrs) and named on stderr, never printed.
// Without --follow: what is waiting now, then exit. With --follow: long-polls until SIGINT or
// SIGTERM, then acknowledges what it printed and exits 0.
import fs from 'node:fs';
import type { JWK } from 'jose';
import { createTppClient } from '../../tpp/index.js';
import type { VerifiedSet } from '../../tpp/index.js';
import { cliConfig, printJson } from '../context.js';
import { CliError } from '../index.js';

export interface TppPollOptions {
  url?: string;
  clientId: string;
  cert: string;
  key: string;
  ca: string;
  signingKey: string;
  issuer?: string;
  follow?: boolean;
  maxEvents?: string;
}

export async function tppPoll(o: TppPollOptions): Promise<void> {
  const signingKey = readJwk(o.signingKey);
  if (!signingKey.kid) throw new CliError(`${o.signingKey} has no "kid"`);
  const maxEvents = o.maxEvents === undefined ? undefined : Number(o.maxEvents);
  if (maxEvents !== undefined && !(Number.isInteger(maxEvents) && maxEvents >= 1)) {
    throw new CliError('--max-events must be a whole number of at least 1');
  }
  const client = createTppClient({
    baseUrl: o.url ?? `https://localhost:${cliConfig().config.http.port}`,
    ...(o.issuer !== undefined ? { issuerUrl: o.issuer } : {}),
    clientId: o.clientId,
    cert: readFile(o.cert),
    key: readFile(o.key),
    ca: readFile(o.ca),
    signingKey,
  });
  const stop = new AbortController();
  const onSignal = () => {
    if (stop.signal.aborted) process.exit(130); // a second Ctrl-C: leave now
    stop.abort();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  const warn = (text: string) => process.stderr.write(`ob-events tpp poll: ${text}\n`);
  try {
    await client.discover(); // fail fast, with one line, on a wrong address or issuer
    for await (const event of client.events({
      signal: stop.signal,
      drain: !o.follow,
      ...(maxEvents !== undefined ? { maxEvents } : {}),
      onInvalidSet: (s) => warn(`refused SET ${s.jti}: ${s.err} (${s.description})`),
      onError: (err) => warn((err as Error).message),
    })) {
      printJson(line(event));
    }
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await client.close();
  }
}

function line(event: VerifiedSet) {
  return { jti: event.jti, eventTypes: event.eventTypes, claims: event.claims };
}

function readFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

function readJwk(file: string): JWK {
  let jwk: unknown;
  try {
    jwk = JSON.parse(readFile(file));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${file} is not valid JSON`);
  }
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk) || 'keys' in jwk) {
    throw new CliError(`${file} must hold one private JWK (not a JWK Set)`);
  }
  return jwk as JWK;
}
