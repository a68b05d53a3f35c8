// Ours and its reference measured in alternating rounds (ours, reference, ours, reference, ...)
// rather than one long run each: on a shared two-core machine the speed of everything drifts
// by tens of percent within a minute (other tenants, frequency), and a drift lands on both sides
// of a round alike. The ratio reported is the median of the rounds' ratios; the spread is shown.
import { closedLoop, machineCpu, type LoadResult } from './load.js';

export interface Side {
  /** One request; throws when the answer is wrong. */
  request(): Promise<void>;
  /** The serving process's CPU time so far (ms). */
  cpuMs(): { mainThread: number; otherThreads: number };
}

export interface SideTotals {
  /** Successful requests over all rounds, per second of measured time. */
  perSecond: number;
  count: number;
  errors: number;
  firstError: string | undefined;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU per successful request over all rounds (µs). */
  mainUs: number;
  otherUs: number;
  /** Fraction of all cores busy (every process) while this side was measured. */
  machineBusy: number;
}

export interface Interleaved {
  ours: SideTotals;
  reference: SideTotals;
  /** Each round's requests per second, side by side. */
  rates: { ours: number[]; reference: number[] };
  /** Each round: ours ÷ reference, requests per second. */
  rateRatios: number[];
  /** Each round: ours ÷ reference, server CPU per request. */
  cpuRatios: number[];
}

export async function interleaved(opts: {
  rounds: number;
  roundMs: number;
  /** Unmeasured load on each side before the first round. */
  warmupMs: number;
  concurrency: number;
  ours: Side;
  reference: Side;
  /** Called after each round (e.g. to measure a third reference in the same rhythm). */
  afterRound?: () => void;
}): Promise<Interleaved> {
  const sides = [opts.ours, opts.reference] as const;
  for (const side of sides) await measure(side, opts.warmupMs, 0, opts.concurrency);
  const runs: [Measured[], Measured[]] = [[], []];
  for (let round = 0; round < opts.rounds; round++) {
    for (const [i, side] of sides.entries()) {
      runs[i]!.push(await measure(side, 0, opts.roundMs, opts.concurrency));
    }
    opts.afterRound?.();
  }
  const [ours, reference] = runs;
  return {
    ours: totals(ours),
    reference: totals(reference),
    rates: {
      ours: ours.map((o) => o.load.perSecond),
      reference: reference.map((r) => r.load.perSecond),
    },
    rateRatios: ours.map((o, i) => o.load.perSecond / reference[i]!.load.perSecond),
    cpuRatios: ours.map((o, i) => perRequestUs(o) / perRequestUs(reference[i]!)),
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** "0.41–0.55 over 5 rounds" */
export function spread(values: readonly number[], unit = 'rounds'): string {
  const f = (v: number) => v.toFixed(2);
  return `${f(Math.min(...values))}–${f(Math.max(...values))} over ${values.length} ${unit}`;
}

interface Measured {
  load: LoadResult;
  mainMs: number;
  otherMs: number;
  machine: { busyMs: number; totalMs: number };
}

async function measure(
  side: Side,
  warmupMs: number,
  durationMs: number,
  concurrency: number,
): Promise<Measured> {
  let before = side.cpuMs();
  let machineBefore = machineCpu();
  const load = await closedLoop({
    concurrency,
    durationMs,
    warmupMs,
    onMeasureStart: () => {
      before = side.cpuMs();
      machineBefore = machineCpu();
    },
    request: async () => {
      await side.request();
      return true;
    },
  });
  const after = side.cpuMs();
  const machineAfter = machineCpu();
  return {
    load,
    mainMs: after.mainThread - before.mainThread,
    otherMs: after.otherThreads - before.otherThreads,
    machine: {
      busyMs: machineAfter.busyMs - machineBefore.busyMs,
      totalMs: machineAfter.totalMs - machineBefore.totalMs,
    },
  };
}

function perRequestUs(m: Measured): number {
  return m.load.count > 0 ? ((m.mainMs + m.otherMs) / m.load.count) * 1000 : NaN;
}

function totals(runs: readonly Measured[]): SideTotals {
  const count = runs.reduce((n, r) => n + r.load.count, 0);
  const elapsedMs = runs.reduce((n, r) => n + r.load.elapsedMs, 0);
  const per = (ms: number) => (count > 0 ? (ms / count) * 1000 : NaN);
  // Latency percentiles: the median round's (the rounds' samples are not kept).
  const byRate = [...runs].sort((a, b) => a.load.perSecond - b.load.perSecond);
  const middle = byRate[byRate.length >> 1]!.load;
  return {
    perSecond: (count / elapsedMs) * 1000,
    count,
    errors: runs.reduce((n, r) => n + r.load.errors, 0),
    firstError: runs.find((r) => r.load.firstError)?.load.firstError,
    p50Ms: middle.p50Ms,
    p99Ms: middle.p99Ms,
    mainUs: per(runs.reduce((n, r) => n + r.mainMs, 0)),
    otherUs: per(runs.reduce((n, r) => n + r.otherMs, 0)),
    machineBusy:
      runs.reduce((n, r) => n + r.machine.busyMs, 0) /
      runs.reduce((n, r) => n + r.machine.totalMs, 0),
  };
}
