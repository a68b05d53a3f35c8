// `ob-events <command>`: commander wiring only. Each action imports its module when it runs, so a
// command loads what it needs and nothing else (start-up stays well under a second).
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
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

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
    .requiredOption('--jwks <file>', "the TPP's public JWK Set (JSON file)")
    .addOption(
      new Option('--auth <method>', 'token endpoint auth method')
        .choices(['private_key_jwt', 'tls_client_auth'])
        .default('private_key_jwt'),
    )
    .option('--tls-subject-dn <dn>', 'RFC 4514 subject DN of the TPP certificate (tls_client_auth)')
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
    .command('revoke')
    .description('revoke a client: no new tokens, and its tokens stop working within 2 s')
    .argument('<id>', 'client id')
    .action(async (id: string) => (await import('./commands/clients.js')).clientsRevoke(id));

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

/** Runs the CLI; every failure ends with one line on stderr and a non-zero exit code. */
export async function runCli(argv: string[]): Promise<void> {
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
