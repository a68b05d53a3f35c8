// `npm start` builds only when the build is stale (issue 15: it ran `tsc` on every start). The
// `prestart` hook is scripts/buildIfStale.mjs; here with --dry-run on a small project folder
// whose file times the test sets, so nothing depends on the clock or on how long a build takes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const SCRIPT = path.join(ROOT, 'scripts/buildIfStale.mjs');
const T0 = new Date('2026-01-01T00:00:00Z');
const LATER = new Date('2026-01-02T00:00:00Z');

describe('npm start: build only when stale', () => {
  let dir: string;
  const write = (file: string, at: Date = T0) => {
    const p = path.join(dir, file);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, '');
    fs.utimesSync(p, at, at);
  };
  const settle = (at: Date = T0) => {
    for (const d of ['src', 'src/cli', 'migrations', 'dist', 'dist/src', 'dist/src/cli']) {
      if (fs.existsSync(path.join(dir, d))) fs.utimesSync(path.join(dir, d), at, at);
    }
  };
  const decide = () => {
    const r = spawnSync(process.execPath, [SCRIPT, '--root', dir, '--dry-run'], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    return r.stderr.trim();
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ob-events-start-'));
    for (const f of ['src/main.ts', 'src/cli/index.ts', 'migrations/index.ts', 'tsconfig.json'])
      write(f);
    write('tsconfig.build.json');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('when there is no build yet, then it builds', () => {
    settle();
    expect(decide()).toBe('ob-events: building (no build yet)');
  });

  describe('after a build', () => {
    beforeEach(() => {
      write('dist/src/cli/index.js', LATER);
      write('dist/.tsbuildinfo', LATER);
      settle();
    });

    it('when nothing changed since, then it does not build', () => {
      expect(decide()).toBe('ob-events: dist/ is current, not rebuilding');
    });

    it('when a source file was saved after the build, then it builds and names the file', () => {
      write('src/cli/index.ts', new Date('2026-01-03T00:00:00Z'));
      expect(decide()).toBe(
        `ob-events: building (${path.join('src', 'cli', 'index.ts')} changed since the last build)`,
      );
    });

    it('when a migration was added (its folder changed), then it builds', () => {
      write('migrations/20261201150000_x.ts');
      fs.utimesSync(path.join(dir, 'migrations'), new Date(), new Date());
      expect(decide()).toMatch(/^ob-events: building \(migrations/);
    });

    it('when the compiler settings changed, then it builds', () => {
      write('tsconfig.build.json', new Date('2026-01-03T00:00:00Z'));
      expect(decide()).toBe(
        'ob-events: building (tsconfig.build.json changed since the last build)',
      );
    });

    it('when the build stamp is newer than a stale .tsbuildinfo, then it does not build', () => {
      write('src/main.ts', new Date('2026-01-03T00:00:00Z'));
      write('dist/.build-stamp', new Date('2026-01-04T00:00:00Z'));
      expect(decide()).toBe('ob-events: dist/ is current, not rebuilding');
    });
  });

  it('package.json runs it before `npm start` instead of a full build', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.prestart).toBe('node scripts/buildIfStale.mjs');
  });
});
