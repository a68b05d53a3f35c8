// Signs SETs (compact JWS, PS256) in a pool of worker threads, so that the ~0.3 ms of CPU each
// signature costs neither blocks the event loop nor stays on one core.
//
// A batch is split into one chunk per worker (at least MIN_CHUNK SETs each) and each chunk is one
// message: the per-message cost of a thread hop is paid per chunk, not per SET. Workers cache the
// imported private key by kid. `workers: 0` signs on the calling thread (synchronously).
//
// Loading the worker: from `dist/` the sibling `setSignerWorker.js` is plain JavaScript. From the
// TypeScript sources (vitest, `tsx bench/run.ts`) there is only `setSignerWorker.ts`, which a bare
// worker thread cannot run, so the worker is started with tsx's loader (`--import tsx`, a dev
// dependency, present wherever the sources are run).
//
// Workers that cannot start (open files exhausted: ERR_WORKER_INIT_FAILED; a broken install) must
// not take the process down: the pool's 'error' event is handled, the signatures waiting on that
// pool fail with a ServiceUnavailableError (503 with Retry-After), `check()` reports the failure
// to readiness, and after RETRY_AFTER_SECONDS the next signature (or readiness check) starts a
// fresh pool.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { ServiceUnavailableError } from '../errors.js';
import { signBatch, type SetTyp, type SignResult, type SignTask } from './setSignerWorker.js';

export type { SetTyp } from './setSignerWorker.js';

export interface SigningKeyMaterial {
  kid: string;
  /** PKCS#8 (or PKCS#1) PEM RSA private key. */
  privatePem: string;
}

export interface SetSigner {
  /** Compact JWS for each JSON claim string, in the same order. */
  sign(payloads: string[], key: SigningKeyMaterial, typ: SetTyp): Promise<string[]>;
  close(): Promise<void>;
  /** Where signatures are made: for logs and tests. */
  readonly mode: 'main-thread' | 'worker-js' | 'worker-ts';
  readonly workers: number;
  /** For readiness: false while the workers cannot start (after a cool-down, tries again). */
  check(): Promise<{ ok: boolean; detail?: string }>;
}

export interface SetSignerOptions {
  workers: number;
  /** The worker module (URL); tests inject one that fails. Default: setSignerWorker.{js,ts}. */
  workerUrl?: string;
  /** Told once per failed pool (the error is not thrown at the process). */
  onWorkerError?: (err: Error) => void;
}

/** Seconds before a failed pool is tried again; also the Retry-After of the 503. */
export const SIGNER_RETRY_AFTER_SECONDS = 5;

// Below this a chunk is not worth another thread hop.
const MIN_CHUNK = 8;

export function createSetSigner(opts: SetSignerOptions): SetSigner {
  const workers = Math.max(0, Math.floor(opts.workers));
  return workers === 0 ? mainThreadSigner() : poolSigner(workers, opts);
}

function mainThreadSigner(): SetSigner {
  return {
    mode: 'main-thread',
    workers: 0,
    sign: (payloads, key, typ) => {
      try {
        return Promise.resolve(payloads.length === 0 ? [] : signBatch({ ...key, typ, payloads }));
      } catch (err) {
        return Promise.reject(err as Error);
      }
    },
    close: () => Promise.resolve(),
    check: () => Promise.resolve({ ok: true }),
  };
}

/** One piscina pool; `failure` is set (and `failed` rejects) when its workers fail. */
interface Generation {
  pool: Piscina<SignTask, SignResult>;
  failure: Error | undefined;
  failedAt: number;
  failed: Promise<never>;
  fail(err: Error): void;
}

function poolSigner(workers: number, opts: SetSignerOptions): SetSigner {
  const worker = opts.workerUrl
    ? { url: opts.workerUrl, mode: 'worker-js' as const }
    : workerFile();
  let current: Generation | undefined;
  let closed = false;

  const start = (): Generation => {
    const pool = new Piscina<SignTask, SignResult>({
      filename: worker.url,
      minThreads: workers,
      maxThreads: workers,
      idleTimeout: Number.POSITIVE_INFINITY,
      ...(worker.execArgv ? { execArgv: worker.execArgv } : {}),
    });
    let fail!: (err: Error) => void;
    const failed = new Promise<never>((_resolve, reject) => (fail = reject));
    failed.catch(() => {}); // observed by the signatures racing it
    const gen: Generation = { pool, failure: undefined, failedAt: 0, failed, fail: (e) => fail(e) };
    pool.on('error', (err: Error) => markFailed(gen, err));
    // A worker that dies while starting fails the tasks it held instead of emitting 'error'.
    // (Checked a turn later: piscina replaces a worker that dies after starting.)
    pool.on('workerDestroy', () => {
      setImmediate(() => {
        if (!closed && !gen.failure && pool.threads.length === 0)
          markFailed(gen, new Error('all signing workers exited'));
      });
    });
    return gen;
  };

  const markFailed = (gen: Generation, err: Error) => {
    if (gen.failure || closed) return;
    gen.failure = err;
    gen.failedAt = Date.now();
    opts.onWorkerError?.(err);
    gen.fail(err);
    // Queued tasks would wait forever: piscina stops restarting workers that fail to start.
    void gen.pool.destroy().catch(() => {});
  };

  /** The working pool, a fresh one after the cool-down, or a 503 during it. */
  const pool = (): Generation => {
    if (current?.failure) {
      if (Date.now() - current.failedAt < SIGNER_RETRY_AFTER_SECONDS * 1000)
        throw unavailable(current.failure);
      current = undefined;
    }
    return (current ??= start());
  };

  const run = async (gen: Generation, tasks: SignTask[]): Promise<string[]> => {
    let results: SignResult[];
    try {
      results = await Promise.race([Promise.all(tasks.map((t) => gen.pool.run(t))), gen.failed]);
    } catch (err) {
      // Signing errors come back as values: a rejected task means the worker failed.
      const failure = err instanceof Error ? err : new Error(String(err));
      markFailed(gen, failure);
      throw unavailable(failure);
    }
    return results.flatMap((r) => {
      if ('error' in r) throw new Error(r.error); // e.g. an unreadable key: not the pool's fault
      return r.sets;
    });
  };

  return {
    mode: worker.mode,
    workers,
    async sign(payloads, key, typ) {
      if (closed) throw new Error('SetSigner is closed');
      if (payloads.length === 0) return [];
      const gen = pool();
      const size = Math.max(MIN_CHUNK, Math.ceil(payloads.length / workers));
      const tasks: SignTask[] = [];
      for (let i = 0; i < payloads.length; i += size) {
        tasks.push({
          kid: key.kid,
          privatePem: key.privatePem,
          typ,
          payloads: payloads.slice(i, i + size),
        });
      }
      return run(gen, tasks);
    },
    async check() {
      if (closed) return { ok: false, detail: 'closed' };
      if (!current) return { ok: true }; // not started yet (workers start on the first signature)
      try {
        // An empty task reaches a worker and proves it started.
        await run(pool(), [{ kid: '', privatePem: '', typ: 'JOSE', payloads: [] }]);
        return { ok: true };
      } catch (err) {
        return { ok: false, detail: `signing workers unavailable: ${(err as Error).message}` };
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await current?.pool.destroy().catch(() => {});
    },
  };
}

function unavailable(cause: unknown): ServiceUnavailableError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new ServiceUnavailableError(
    'signing is temporarily unavailable; retry later',
    SIGNER_RETRY_AFTER_SECONDS,
    `SET signing workers: ${reason}`,
  );
}

function workerFile(): {
  url: string;
  mode: 'worker-js' | 'worker-ts';
  execArgv?: string[];
} {
  const js = new URL('./setSignerWorker.js', import.meta.url);
  if (fs.existsSync(fileURLToPath(js))) return { url: js.href, mode: 'worker-js' };
  const ts = new URL('./setSignerWorker.ts', import.meta.url);
  if (!fs.existsSync(fileURLToPath(ts))) {
    throw new Error(`SET signing worker not found next to ${fileURLToPath(import.meta.url)}`);
  }
  const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return { url: ts.href, mode: 'worker-ts', execArgv: ['--import', tsxLoader] };
}
