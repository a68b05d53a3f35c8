// `npm test` without ../shared (a clone on its own): the run ends by listing the test files whose
// OBIE schema checks were skipped; with CI=true the absence fails the run (test/setup/globalSetup.ts
// calls this logic before anything runs and prints the summary in its teardown).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkObieConformance, skippedSummary } from './setup/obieConformance.js';

describe('OBIE conformance schemas beside the repository', () => {
  let parent: string;
  let root: string;

  beforeEach(() => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-clone-'));
    root = path.join(parent, 'ob-events');
    fs.mkdirSync(path.join(root, 'test/helpers'), { recursive: true });
    fs.writeFileSync(
      path.join(root, 'test/polling.test.ts'),
      "import { expectObieShape } from './helpers/obieSchema.js';\n",
    );
    fs.writeFileSync(path.join(root, 'test/config.test.ts'), "import { it } from 'vitest';\n");
  });
  afterEach(() => fs.rmSync(parent, { recursive: true, force: true }));

  it('when ../shared is absent, then the suites that use the OBIE schemas are listed as skipped', () => {
    const c = checkObieConformance(root, false);
    expect(c).toMatchObject({ available: false, skipped: ['test/polling.test.ts'] });
    expect(c.error).toBeUndefined();
    const summary = skippedSummary(c);
    expect(summary).toContain('OBIE SCHEMA CHECKS SKIPPED');
    expect(summary).toContain('  - test/polling.test.ts');
    expect(summary).not.toContain('config.test.ts');
  });

  it('when ../shared is absent and CI=true, then the run fails naming the folder', () => {
    const c = checkObieConformance(root, true);
    expect(c.error).toMatch(/shared\/conformance\/obie is missing and CI=true/);
  });

  it('when ../shared/conformance/obie is there, then nothing is skipped, in CI or not', () => {
    fs.mkdirSync(path.join(parent, 'shared/conformance/obie'), { recursive: true });
    for (const ci of [false, true]) {
      expect(checkObieConformance(root, ci)).toMatchObject({ available: true, skipped: [] });
    }
  });
});
