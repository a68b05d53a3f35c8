// The alert rules and the Grafana dashboard in ops/: promtool checks and unit-tests the rules
// (Debian's `prometheus` package; .ci/run installs it), and every ob_events_* series they use is
// one the server really exposes, so a renamed metric cannot leave an alert that never fires.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const RULES = path.join(ROOT, 'ops/prometheus/alerts.yml');
const RULE_TESTS = path.join(ROOT, 'ops/prometheus/alerts.test.yml');
const DASHBOARD = path.join(ROOT, 'ops/grafana/ob-events.dashboard.json');

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
if (!promtool) {
  const message =
    'promtool is not installed (apt-get install prometheus): alert rule checks SKIPPED';
  // In CI a missing promtool is a failure, not a skip.
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`\n${'='.repeat(78)}\n${message}\n${'='.repeat(78)}\n`);
}

function run(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: ROOT });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** ob_events_* names in a PromQL-bearing text. */
function metricNames(text: string): Set<string> {
  return new Set(text.match(/\bob_events_[a-z0-9_]+/g) ?? []);
}

describe('alert rules and dashboard', () => {
  describe.skipIf(!promtool)('promtool', () => {
    it('when the rules are checked, then promtool finds no error', () => {
      const r = run(['check', 'rules', RULES]);
      expect(r.status, r.output).toBe(0);
    });

    it('when the rule unit tests run, then every alert fires (and stays quiet) as they expect', () => {
      const r = run(['test', 'rules', RULE_TESTS]);
      expect(r.status, r.output).toBe(0);
    });
  });

  describe('metric names', () => {
    let db: TestDatabase;
    let server: TestServer;
    let exposed: Set<string>;

    beforeAll(async () => {
      db = await createTestDatabase();
      server = await startTestServer(db);
      const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
      exposed = new Set();
      for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        exposed.add(name!);
        if (type === 'histogram')
          for (const s of ['_bucket', '_sum', '_count']) exposed.add(name + s);
      }
    });
    afterAll(async () => {
      await server?.stop();
      await db?.drop();
    });

    it('when the alert rules name a metric, then the server exposes it', () => {
      const rules = parse(fs.readFileSync(RULES, 'utf8')) as {
        groups: { rules: { expr: string }[] }[];
      };
      const used = metricNames(rules.groups.flatMap((g) => g.rules.map((r) => r.expr)).join('\n'));
      expect(used.size).toBeGreaterThan(5);
      expect([...used].filter((m) => !exposed.has(m))).toEqual([]);
    });

    it('when the Grafana dashboard names a metric, then the server exposes it', () => {
      const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as {
        panels: { targets: { expr: string }[] }[];
      };
      const used = metricNames(
        dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n'),
      );
      expect(used.size).toBeGreaterThan(10);
      expect([...used].filter((m) => !exposed.has(m))).toEqual([]);
    });
  });
});
