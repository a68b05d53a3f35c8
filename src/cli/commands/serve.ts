// `ob-events serve`: run until SIGTERM/SIGINT, then shut down gracefully and exit 0.
// The handlers are installed before start-up, which takes seconds on a first embedded run (dev
// PKI, PGlite initdb, migrations): a signal meanwhile lets start-up finish and then stops, rather
// than killing the process mid-migration with its lock file left behind. A second signal of the
// same kind still kills at once (the handlers run once).
import { loadConfig } from '../../config.js';
import { createLogger } from '../../logger.js';
import { startServer, type RunningServer } from '../../main.js';
import { announceDatabase } from '../context.js';

export async function serve(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  // Filled in as start-up proceeds; read by the signal handler.
  const state: { server?: RunningServer; signalled: boolean } = { signalled: false };

  const stopAndExit = (running: RunningServer) =>
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  const onSignal = (signal: NodeJS.Signals) => {
    if (state.signalled) return;
    state.signalled = true;
    logger.info({ signal }, state.server ? 'signal received' : 'signal received while starting');
    if (state.server) void stopAndExit(state.server);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  logger.info('starting ob-events');
  announceDatabase(logger, config.database);
  const server = await startServer({ config, logger });
  state.server = server;
  if (state.signalled) await stopAndExit(server);
}
