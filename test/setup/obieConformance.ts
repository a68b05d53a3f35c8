// The official OBIE schemas live in ../shared/conformance/obie, beside the repository, not in
// it. A clone on its own runs without them: the suites that check responses against them skip
// those checks, and the run's last lines say which (a warning inside a test file's output is
// easy to miss). In CI (CI=true) their absence fails the run instead: CI must check conformance.
import fs from 'node:fs';
import path from 'node:path';

export interface ObieConformance {
  dir: string;
  available: boolean;
  /** Test files whose OBIE schema checks are skipped (relative to the root). */
  skipped: string[];
  /** Set when the run must fail (CI without the schemas). */
  error?: string;
}

export function checkObieConformance(root: string, ci: boolean): ObieConformance {
  const dir = path.resolve(root, '../shared/conformance/obie');
  const available = fs.existsSync(dir);
  if (available) return { dir, available, skipped: [] };
  const skipped = suitesUsingObieSchemas(path.join(root, 'test')).map((f) =>
    path.relative(root, f),
  );
  return {
    dir,
    available,
    skipped,
    ...(ci
      ? {
          error:
            `${dir} is missing and CI=true: the OBIE schema checks of ${skipped.length} test ` +
            'files cannot run (check out ../shared beside the repository)',
        }
      : {}),
  };
}

/** The banner printed at the end of the run when the schemas were absent. */
export function skippedSummary(c: ObieConformance): string {
  const banner = '='.repeat(78);
  return (
    `\n${banner}\nOBIE SCHEMA CHECKS SKIPPED: ${c.dir} not found.\n` +
    `These test files ran without validating responses against the official OBIE schemas:\n` +
    `${c.skipped.map((s) => `  - ${s}`).join('\n')}\n` +
    `Check out ../shared beside the repository to run them (CI=true makes this an error).\n${banner}\n`
  );
}

function suitesUsingObieSchemas(dir: string): string[] {
  const found: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) found.push(...suitesUsingObieSchemas(p));
    else if (
      e.name.endsWith('.test.ts') &&
      /^import .* from '\.\/helpers\/obieSchema\.js';$/m.test(fs.readFileSync(p, 'utf8'))
    )
      found.push(p);
  }
  return found.sort();
}
