// The fault suite (`npm run test:faults`): real `serve` / `worker` processes on a Postgres
// cluster of its own, killed, cut off and restarted (test/faults/). One file at a time: each
// starts its own cluster and several processes, which is all this machine should carry at once.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['test/setup/globalSetup.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
  },
});
