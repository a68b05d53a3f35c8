#!/usr/bin/env -S node --max-semi-space-size=2
// The CLI runs the compiled output (built by `npm run build`, which `npm ci` runs through `prepare`),
// so a command starts without a TypeScript loader.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/index.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('ob-events: not built yet; run `npm run build` (or `npm ci`) first');
  process.exit(1);
}
const { runCli } = await import(entry.href);
await runCli(process.argv);
