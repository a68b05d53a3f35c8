// `ob-events tpp poll [--follow]`: a TPP receiving events with the SDK, for people. Each verified
// event is one JSON line on stdout, acknowledged once printed; SETs that fail verification are
// reported to the server (setErrs) and named on stderr, never printed.
// Without --follow: what is waiting now, then exit. With --follow: long-polls until SIGINT or
// SIGTERM, then acknowledges what it printed and exits 0.
import { createTppClient, TPP_API_VERSIONS } from '../../tpp/index.js';
import type { TppApiVersion, VerifiedSet } from '../../tpp/index.js';
import { cliConfig, printJson } from '../context.js';
import { CliError } from '../index.js';
import { readPrivateJwkFile, readTextFile } from '../files.js';

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
  /** v4.0 (default) or v3.1. */
  apiVersion?: string;
}

export async function tppPoll(o: TppPollOptions): Promise<void> {
  const signingKey = readPrivateJwkFile(o.signingKey);
  if (!signingKey.kid) throw new CliError(`${o.signingKey} has no "kid"`);
  const maxEvents = o.maxEvents === undefined ? undefined : Number(o.maxEvents);
  if (maxEvents !== undefined && !(Number.isInteger(maxEvents) && maxEvents >= 1)) {
    throw new CliError('--max-events must be a whole number of at least 1');
  }
  const apiVersion = (o.apiVersion ?? 'v4.0') as TppApiVersion;
  if (!TPP_API_VERSIONS.includes(apiVersion)) {
    throw new CliError(`--api-version must be one of ${TPP_API_VERSIONS.join(', ')}`);
  }
  const client = createTppClient({
    apiVersion,
    baseUrl: o.url ?? `https://localhost:${cliConfig().config.http.port}`,
    ...(o.issuer !== undefined ? { issuerUrl: o.issuer } : {}),
    clientId: o.clientId,
    cert: readTextFile(o.cert),
    key: readTextFile(o.key),
    ca: readTextFile(o.ca),
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
