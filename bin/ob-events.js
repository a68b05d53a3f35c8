#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=50
// The CLI runs the compiled output (built by `npm run build`, which `npm ci` runs through `prepare`),
// so a command starts without a TypeScript loader. Commands prefer the bundle that `npm run build`
// writes after tsc (dist/src/cli/bundle/, scripts/bundleCli.mjs): a few large files load in a
// fraction of the time of the ~700 files of dist/ and node_modules (issue 15). `serve` and
// `worker` run for days, so their start-up does not matter: they run dist/ as the tests do.
// OB_EVENTS_NO_BUNDLE=1 runs dist/ for every command (to compare, or for readable stack traces).
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

// Node >= 22.1 caches compiled code between runs; absent on Node 20 (harmless to skip).
module.enableCompileCache?.();

const bundle = new URL('../dist/src/cli/bundle/index.mjs', import.meta.url);
const entry = new URL('../dist/src/cli/index.js', import.meta.url);
const longRunning = ['serve', 'worker'].includes(process.argv[2] ?? '');
const useBundle =
  !longRunning && !process.env.OB_EVENTS_NO_BUNDLE && existsSync(fileURLToPath(bundle));
if (!useBundle && !existsSync(fileURLToPath(entry))) {
  console.error('ob-events: not built yet; run `npm run build` (or `npm ci`) first');
  process.exit(1);
}
const { runCli } = await import((useBundle ? bundle : entry).href);
await runCli(process.argv);
