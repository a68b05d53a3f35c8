// A closed-loop load generator: N workers, each sending its next request as soon as the previous
// one is answered, for a fixed time (after an unmeasured warm-up). Over HTTPS with keep-alive and
// the TPP's client certificate (undici), as a TPP's HTTP client would run.
import fs from 'node:fs';
import { Agent } from 'undici';
import { percentile } from './report.js';

export interface TlsClientFiles {
  caCert: string;
  /** Client certificate and key (PEM files): omit for a connection without one. */
  cert?: string;
  key?: string;
}

/** An undici Agent with keep-alive over mTLS; one connection per concurrent request. */
export function mtlsAgent(files: TlsClientFiles, connections = 64): Agent {
  return new Agent({
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    connect: {
      ca: fs.readFileSync(files.caCert),
      ...(files.cert ? { cert: fs.readFileSync(files.cert) } : {}),
      ...(files.key ? { key: fs.readFileSync(files.key) } : {}),
      servername: 'localhost',
    },
  });
}

export interface LoadOptions {
  /** Concurrent workers (requests in flight). */
  concurrency: number;
  /** Measured time. */
  durationMs: number;
  /** Unmeasured time before, to open connections and warm the JIT and caches. */
  warmupMs?: number;
  /**
   * Sends one request and resolves when its answer has been read; throws (or rejects) when the
   * answer is wrong. Returns false when there is nothing left to send (pre-generated inputs ran
   * out): that worker stops.
   */
  request(worker: number): Promise<boolean | void>;
  /** Called once when the warm-up ends and measuring starts (e.g. to sample CPU counters). */
  onMeasureStart?: () => void;
}

export interface LoadResult {
  /** Successful requests in the measured window. */
  count: number;
  errors: number;
  firstError: string | undefined;
  elapsedMs: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** True when a worker ran out of inputs before the time was up. */
  exhausted: boolean;
}

export async function closedLoop(opts: LoadOptions): Promise<LoadResult> {
  const startedAt = performance.now();
  const measureStart = startedAt + (opts.warmupMs ?? 0);
  const measureEnd = measureStart + opts.durationMs;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let exhausted = false;

  const worker = async (id: number) => {
    for (;;) {
      const started = performance.now();
      if (started >= measureEnd) return;
      let more: boolean | void = true;
      let failed = false;
      try {
        more = await opts.request(id);
      } catch (err) {
        failed = true;
        firstError ??= (err as Error).message;
      }
      if (more === false) {
        exhausted = true;
        return;
      }
      const finished = performance.now();
      if (started < measureStart || finished > measureEnd) continue;
      if (failed) errors += 1;
      else latencies.push(finished - started);
    }
  };

  const marker = setTimeout(() => opts.onMeasureStart?.(), Math.max(0, measureStart - startedAt));
  await Promise.all(Array.from({ length: opts.concurrency }, (_, i) => worker(i)));
  clearTimeout(marker);
  const endedAt = performance.now();
  // When inputs ran out early, the window is the part that was actually used.
  const elapsedMs = Math.max(1, Math.min(endedAt, measureEnd) - measureStart);
  latencies.sort((a, b) => a - b);
  return {
    count: latencies.length,
    errors,
    firstError,
    elapsedMs,
    perSecond: (latencies.length / elapsedMs) * 1000,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    exhausted,
  };
}

/**
 * CPU time of the whole machine so far (all cores, from /proc/stat), in ms: take it before and
 * after a run to see how busy the machine was, whoever was using it.
 */
export function machineCpu(): { busyMs: number; totalMs: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
    ticks;
  const busy = user + nice + system + irq + softirq + steal;
  return { busyMs: busy * 10, totalMs: (busy + idle + iowait) * 10 };
}
