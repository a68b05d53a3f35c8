// `ob-events <command>`: commander wiring only. Each action imports its module when it runs, so a
// command loads what it needs and nothing else (start-up stays well under a second).
import fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';

export class CliError extends Error {
  override name = 'CliError';
}

function collectScopes(value: string): string[] {
  return value.split(/[\s,]+/).filter((s) => s.length > 0);
}

export function buildProgram(): Command {
  const program = new Command('ob-events')
    .description('UK Open Banking Event Notification server')
    .version(packageVersion(), '-V, --version', 'print the version')
    .enablePositionalOptions() // program options (--version) only before the command: `events publish --version` is its own
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      // commander's own errors as our one line: `ob-events: unknown command 'x' (Did you mean ...?)`.
      outputError: (s, write) =>
        write(
          `ob-events: ${s
            .replace(/^error: /, '')
            .replace(/\s*\n\s*(?=\S)/g, ' ')
            .trim()}\n`,
        ),
    });

  program
    .command('serve')
    .description(
      'migrate (unless MIGRATE_ON_START=false), then run the API, admin listener and workers',
    )
    .action(async () => (await import('./commands/serve.js')).serve());

  program
    .command('migrate')
    .description('apply pending migrations (or revert the last batch with --rollback)')
    .option('--rollback', 'revert the last batch of migrations')
    .option('--all', 'with --rollback: revert every migration')
    .action(async (o: { rollback?: boolean; all?: boolean }) =>
      (await import('./commands/migrate.js')).migrate(o),
    );

  const certs = program.command('certs').description('development certificates');
  certs
    .command('dev')
    .description('write a development CA, server certificate and demo TPP (not for production)')
    .option('--out <dir>', 'output directory', 'certs/dev')
    .action(async (o: { out: string }) => (await import('./commands/certs.js')).certsDev(o));

  const clients = program.command('clients').description('registered TPP clients');
  clients
    .command('add')
    .description('register a TPP client; prints it as JSON')
    .requiredOption('--client-id <id>', 'OAuth client_id (1-128 of A-Z a-z 0-9 . _ : -)')
    .option('--jwks <file>', "the TPP's public JWK Set (JSON file)")
    .option('--jwks-uri <url>', "or: HTTPS URL of the TPP's public JWK Set (fetched, cached)")
    .addOption(
      new Option('--auth <method>', 'token endpoint auth method')
        .choices(['private_key_jwt', 'tls_client_auth'])
        .default('private_key_jwt'),
    )
    .option(
      '--tls-subject-dn <dn>',
      "RFC 4514 subject DN of the TPP's transport certificate (/token refuses any other)",
    )
    .option(
      '--tls-cert-thumbprint <x5t>',
      'pin a transport certificate: x5t#S256 or SHA-256 hex (repeatable)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      '--scopes <scopes>',
      'space-separated scopes (accounts payments fundsconfirmations eventpolling)',
      collectScopes,
    )
    .option('--name <name>', 'display name')
    .option(
      '--signing-iss <iss>',
      'expected http://openbanking.org.uk/iss of request signatures (default: the client id)',
    )
    .action(async (o) => (await import('./commands/clients.js')).clientsAdd(o));
  clients
    .command('list')
    .description('list registered clients (JSON)')
    .action(async () => (await import('./commands/clients.js')).clientsList());
  clients
    .command('show')
    .description('one client, whatever its status (JSON)')
    .argument('<id>', 'client id')
    .action(async (id: string) => (await import('./commands/clients.js')).clientsShow(id));
  clients
    .command('update')
    .description('change a client (keys, DN, scopes, name…); the rest stays; prints it as JSON')
    .argument('<id>', 'client id')
    .option('--jwks <file>', 'new public JWK Set (JSON file); replaces a jwks_uri')
    .option('--jwks-uri <url>', 'new HTTPS URL of its public JWK Set; replaces a stored JWKS')
    .addOption(
      new Option('--auth <method>', 'token endpoint auth method').choices([
        'private_key_jwt',
        'tls_client_auth',
      ]),
    )
    .option('--tls-subject-dn <dn>', 'RFC 4514 subject DN of the TPP certificate')
    .option(
      '--tls-cert-thumbprint <x5t>',
      'pinned transport certificates: x5t#S256 or SHA-256 hex (repeatable; replace the current pins)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--no-tls-cert-thumbprint', 'remove every pinned transport certificate')
    .option('--scopes <scopes>', 'space-separated scopes (replace the current ones)', collectScopes)
    .option('--name <name>', 'display name')
    .option('--signing-iss <iss>', 'expected http://openbanking.org.uk/iss of request signatures')
    .action(async (id: string, o) => (await import('./commands/clients.js')).clientsUpdate(id, o));
  clients
    .command('delete')
    .description(
      'delete a client: its tokens stop within 2 s, its subscription and pending SETs go, audit rows stay',
    )
    .argument('<id>', 'client id')
    .action(async (id: string) => (await import('./commands/clients.js')).clientsDelete(id));
  clients
    .command('revoke')
    .description('revoke a client: no new tokens, and its tokens stop working within 2 s')
    .argument('<id>', 'client id')
    .action(async (id: string) => (await import('./commands/clients.js')).clientsRevoke(id));

  const events = program.command('events').description('events for TPPs');
  events
    .command('publish')
    .description('create an event for a TPP (N alike with --count); one JSON line per event')
    .requiredOption('--client-id <id>', 'the TPP (client id)')
    .requiredOption(
      '--type <type>',
      'UK.OBIE.* event type code or its urn:uk:org:openbanking:events:* URN',
    )
    .requiredOption('--subject-id <rid>', 'id of the changed resource')
    .requiredOption('--subject-type <rty>', 'type of the changed resource, e.g. domestic-payment')
    .option('--link <url>', 'URL of the resource (default: under PUBLIC_URL)')
    .option('--version <v>', 'API version of --link', 'v3.1')
    .option('--txn <txn>', 'transaction id (default: the jti)')
    .option('--count <n>', 'how many alike events', '1')
    .option('--reason <code>', 'revocation or linked-account reason code')
    .option('--with-resource-update', 'a revocation SET also carries resource-update')
    .option('--idempotency-key <key>', 'publishing the same key again creates nothing')
    .action(async (o) => (await import('./commands/events.js')).eventsPublish(o));

  const tpp = program.command('tpp').description('act as a TPP (for trying the server with curl)');
  tpp
    .command('assertion')
    .description('print a fresh private_key_jwt client assertion (exp in 5 minutes, random jti)')
    .requiredOption('--client-id <id>', 'the TPP (client id): iss and sub')
    .requiredOption('--key <file>', 'private JWK file, e.g. certs/dev/tpp.private.jwk.json')
    .option('--kid <kid>', 'key id (default: the kid in the key file)')
    .option('--aud <url>', 'audience (default: ${PUBLIC_URL}/token)')
    .action(async (o: { clientId: string; key: string; kid?: string; aud?: string }) =>
      (await import('./commands/tpp.js')).tppAssertion(o),
    );
  tpp
    .command('sign')
    .description('read a request body on stdin; print its x-jws-signature (detached PS256 JWS)')
    .requiredOption('--key <file>', 'private JWK file, e.g. certs/dev/tpp.private.jwk.json')
    .option('--kid <kid>', 'key id (default: the kid in the key file)')
    .requiredOption(
      '--iss <id>',
      "http://openbanking.org.uk/iss: the client's signing iss (its client id unless registered otherwise)",
    )
    .option('--tan <anchor>', 'http://openbanking.org.uk/tan (default: OB_TRUST_ANCHOR)')
    .action(async (o: { key: string; kid?: string; iss: string; tan?: string }) =>
      (await import('./commands/tppSign.js')).tppSign(o),
    );
  tpp
    .command('poll')
    .description('receive, verify, print (one JSON line each) and acknowledge events (the SDK)')
    .option(
      '--follow',
      'keep long-polling until SIGINT/SIGTERM (default: drain what waits, then exit)',
    )
    .option('--url <url>', 'where the API listens (default: https://localhost:${PORT})')
    .option('--issuer <url>', 'the issuer to expect (default: what discovery says)')
    .option('--client-id <id>', 'the TPP (client id)', 'demo-tpp')
    .option('--cert <file>', 'transport certificate (PEM)', 'certs/dev/tpp.crt')
    .option('--key <file>', 'its private key (PEM)', 'certs/dev/tpp.key')
    .option('--ca <file>', "CA of the server's certificate (PEM)", 'certs/dev/ca.crt')
    .option(
      '--signing-key <file>',
      'private signing JWK (its kid is used)',
      'certs/dev/tpp.private.jwk.json',
    )
    .option('--max-events <n>', 'SETs per poll (default: the server default)')
    .option('--api-version <v>', 'OBIE API version: v4.0 or v3.1', 'v4.0')
    .action(async (o) => (await import('./commands/tppPoll.js')).tppPoll(o));

  program
    .command('worker')
    .description(
      'run push delivery and the outbox worker without the API listener (health on ADMIN_PORT)',
    )
    .action(async () => (await import('./commands/worker.js')).worker());

  const deliveries = program.command('deliveries').description('push delivery, for operators');
  deliveries
    .command('list')
    .description(
      'SETs by delivery state (JSON array, creation order); default: pending and failed pushes',
    )
    .option('--client-id <id>', 'only this TPP')
    .option('--state <state>', 'pending | failed | delivered | rejected | acknowledged | errored')
    .option('--limit <n>', 'at most this many', '100')
    .option('--after <jti>', 'the page after this jti')
    .action(async (o) => (await import('./commands/deliveries.js')).deliveriesList(o));
  deliveries
    .command('retry')
    .description('push a pending SET again now, with a fresh series of attempts')
    .argument('<jti>', 'the SET')
    .action(async (jti: string) => (await import('./commands/deliveries.js')).deliveriesRetry(jti));

  deliveries
    .command('history')
    .description(
      "a SET's push attempts and poll hand-outs (--jti), or a TPP's SETs with theirs (--client), newest first",
    )
    .option('--jti <jti>', 'one SET')
    .option('--client <id>', 'one TPP (client id)')
    .option('--client-id <id>', 'the same as --client')
    .option('--since <time>', 'with --client: SETs created at or after (ISO 8601, no zone: UTC)')
    .option('--before <jti>', 'with --client: the page after this jti')
    .option('--limit <n>', 'with --client: at most this many SETs', '100')
    .action(async (o) => (await import('./commands/operations.js')).deliveriesHistory(o));
  deliveries
    .command('replay')
    .description(
      "deliver a SET again (same jti, same bytes), or a TPP's SETs since T (--client --since); audited",
    )
    .argument('[jti]', 'the SET')
    .option('--client <id>', 'every SET of this TPP created since --since')
    .option('--client-id <id>', 'the same as --client')
    .option('--since <time>', 'ISO 8601 time (no zone: UTC)')
    .option('--limit <n>', 'at most this many SETs (default and maximum: REPLAY_MAX_SETS)')
    .action(async (jti: string | undefined, o) =>
      (await import('./commands/operations.js')).deliveriesReplay(jti, o),
    );

  const deadLetters = program
    .command('dead-letters')
    .description('SETs whose push gave up or that the TPP rejected');
  deadLetters
    .command('list')
    .description('dead letters (JSON array, creation order)')
    .option('--client <id>', 'only this TPP')
    .option('--client-id <id>', 'the same as --client')
    .option('--after <jti>', 'the page after this jti')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o) => (await import('./commands/operations.js')).deadLettersList(o));
  deadLetters
    .command('retry')
    .description('deliver a dead letter again (push due now, pollable); audited')
    .argument('<jti>', 'the SET')
    .action(async (jti: string) =>
      (await import('./commands/operations.js')).deadLettersRetry(jti),
    );
  deadLetters
    .command('purge')
    .description('take a dead letter out of delivery for good; audited')
    .argument('<jti>', 'the SET')
    .action(async (jti: string) =>
      (await import('./commands/operations.js')).deadLettersPurge(jti),
    );

  program
    .command('audit')
    .description('what operators did (replays, dead letters, key rotations, console log-ins)')
    .command('list')
    .description('newest first (JSON array)')
    .option('--client <id>', 'only actions on this TPP')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o) => (await import('./commands/operations.js')).auditList(o));
  const push = program.command('push').description('push health of TPP endpoints, for operators');
  push
    .command('endpoints')
    .description('endpoints that failed lately: breaker state, disabled or not (JSON array)')
    .option('--client-id <id>', 'only this TPP')
    .action(async (o) => (await import('./commands/push.js')).pushEndpoints(o));
  push
    .command('enable')
    .description('push to a TPP again after it was disabled (or backed off): breaker reset')
    .argument('<clientId>', 'the TPP client')
    .action(async (id: string) => (await import('./commands/push.js')).pushEnable(id));

  const keys = program.command('keys').description("the server's signing keys");
  keys
    .command('list')
    .description('list signing keys (JSON)')
    .action(async () => (await import('./commands/keys.js')).keysList());
  keys
    .command('rotate')
    .description('make a new active signing key; the old public key stays in /jwks for the overlap')
    .action(async () => (await import('./commands/keys.js')).keysRotate());

  return program;
}

/** The version in package.json (two folders up from src/cli, three from dist/src/cli). */
function packageVersion(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(new URL(up, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'ob-events' && pkg.version) return pkg.version;
    } catch {
      // not this folder
    }
  }
  return 'unknown';
}

/** Runs the CLI; every failure ends with one line on stderr and a non-zero exit code. */
export async function runCli(argv: string[]): Promise<void> {
  // stdout carries only the commands' JSON (printJson writes it directly): a library that prints
  // with console.log (knex does, for pool warnings) goes to stderr with the logs.
  console.log = console.info = console.debug = console.error;
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its one-line message (or the help/version text).
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`ob-events: ${describe(err)}\n`);
    process.exitCode = 1;
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const details = (err as { details?: { message: string }[] }).details;
    const first = details?.[0]?.message;
    const text = first && first !== err.message ? `${err.message}: ${first}` : err.message;
    return text.split('\n')[0] ?? 'failed';
  }
  return String(err);
}
