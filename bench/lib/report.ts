// Benchmark results: every bench returns rows; run.ts prints them as one table.
export interface BenchRow {
  bench: string;
  metric: string;
  value: number | string;
  unit: string;
  /** The target, e.g. ">= 1500". */
  target?: string;
  note?: string;
}

export interface BenchContext {
  /** Postgres admin URL (a fresh database is created per bench), or null: embedded. */
  postgresAdminUrl: string | null;
  /** Shorter runs for a smoke check (`npm run bench -- --quick`). */
  quick: boolean;
  log(message: string): void;
}

export type Bench = (ctx: BenchContext) => Promise<BenchRow[]>;

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return NaN;
  const i = Math.min(sortedMs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedMs.length) - 1));
  return sortedMs[i]!;
}

export function formatTable(rows: BenchRow[]): string {
  const header = ['bench', 'metric', 'value', 'unit', 'target', 'note'];
  const cells = rows.map((r) => [
    r.bench,
    r.metric,
    typeof r.value === 'number' ? formatNumber(r.value) : r.value,
    r.unit,
    r.target ?? '',
    r.note ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...cells.map(line),
  ].join('\n');
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-GB');
  return v.toFixed(Math.abs(v) >= 10 ? 1 : 2);
}
