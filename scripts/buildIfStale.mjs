// `npm start` runs this first (the `prestart` hook): it builds dist/ only when a source file is
// newer than the last build, so a start with nothing changed does not wait for `tsc`.
// Plain JavaScript, so it runs without a TypeScript loader.
//   node scripts/buildIfStale.mjs [--root DIR] [--dry-run]
// --dry-run prints the decision without building (tests use it).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

// What `npm run build` (tsconfig.build.json) compiles, and what changes how it compiles.
const INPUTS = ['src', 'migrations', 'knexfile.ts', 'tsconfig.json', 'tsconfig.build.json'];
// Written after a build by this script; tsc rewrites dist/.tsbuildinfo when `npm run build` emits.
const MARKERS = ['dist/.build-stamp', 'dist/.tsbuildinfo'];

/** Why dist/ is stale (a sentence), or undefined when it is current. */
export function staleReason(root) {
  const built = Math.max(...MARKERS.map((m) => mtime(path.join(root, m))));
  if (built === 0 || !fs.existsSync(path.join(root, 'dist/src/cli/index.js'))) {
    return 'no build yet';
  }
  for (const input of INPUTS) {
    const newer = newerThan(root, path.join(root, input), built);
    if (newer) return `${newer} changed since the last build`;
  }
  return undefined;
}

function mtime(file) {
  return fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0;
}

/** The first file or folder (a folder's time changes when a file is added, removed or renamed) newer than `since`. */
function newerThan(root, file, since) {
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  if (!stat) return undefined;
  if (stat.mtimeMs > since) return path.relative(root, file) || '.';
  if (!stat.isDirectory()) return undefined;
  for (const entry of fs.readdirSync(file)) {
    const found = newerThan(root, path.join(file, entry), since);
    if (found) return found;
  }
  return undefined;
}

function main() {
  const args = process.argv.slice(2);
  const rootAt = args.indexOf('--root');
  const root = path.resolve(rootAt >= 0 ? args[rootAt + 1] : path.join(import.meta.dirname, '..'));
  const reason = staleReason(root);
  if (!reason) {
    process.stderr.write('ob-events: dist/ is current, not rebuilding\n');
    return;
  }
  process.stderr.write(`ob-events: building (${reason})\n`);
  if (args.includes('--dry-run')) return;
  const started = Date.now();
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
  // The stamp carries the time the build started: a file saved during the build is newer.
  fs.writeFileSync(path.join(root, MARKERS[0]), '');
  fs.utimesSync(path.join(root, MARKERS[0]), started / 1000, started / 1000);
}

if (import.meta.filename === fs.realpathSync(process.argv[1] ?? '')) main();
