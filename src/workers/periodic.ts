// A background task that runs every `intervalMs` (first run after one interval), never two at
// once, logs its failures and keeps going. stop() waits for a run in progress to finish.
import { isDatabaseUnavailable } from '../db/outage.js';
import type { Logger } from '../logger.js';

export interface PeriodicTask {
  /** Runs the task now (unless a run is in progress) and resolves when that run ends. */
  runNow(): Promise<void>;
  stop(): Promise<void>;
}

export function every(
  name: string,
  intervalMs: number,
  task: () => Promise<unknown>,
  logger: Logger,
): PeriodicTask {
  let running: Promise<void> | undefined;
  let stopped = false;
  let databaseDown = false; // a database outage is logged once per task, not at every run
  const run = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    running ??= task()
      .then(
        () => {
          databaseDown = false;
        },
        (err: unknown) => {
          if (!isDatabaseUnavailable(err))
            logger.error({ err, task: name }, 'background task failed');
          else if (!databaseDown)
            logger.warn({ task: name }, 'background task skipped: database unavailable');
          databaseDown ||= isDatabaseUnavailable(err);
        },
      )
      .finally(() => (running = undefined));
    return running;
  };
  const timer = setInterval(() => void run(), intervalMs);
  timer.unref();
  return {
    runNow: run,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
