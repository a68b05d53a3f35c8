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
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { signBatch, type SetTyp, type SignTask } from './setSignerWorker.js';

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
}

// Below this a chunk is not worth another thread hop.
const MIN_CHUNK = 8;

export function createSetSigner(opts: { workers: number }): SetSigner {
  const workers = Math.max(0, Math.floor(opts.workers));
  return workers === 0 ? mainThreadSigner() : poolSigner(workers);
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
  };
}

function poolSigner(workers: number): SetSigner {
  const worker = workerFile();
  const pool = new Piscina<SignTask, string[]>({
    filename: worker.url,
    minThreads: workers,
    maxThreads: workers,
    idleTimeout: Number.POSITIVE_INFINITY,
    ...(worker.execArgv ? { execArgv: worker.execArgv } : {}),
  });
  let closed = false;
  return {
    mode: worker.mode,
    workers,
    async sign(payloads, key, typ) {
      if (closed) throw new Error('SetSigner is closed');
      if (payloads.length === 0) return [];
      const size = Math.max(MIN_CHUNK, Math.ceil(payloads.length / workers));
      const chunks: Promise<string[]>[] = [];
      for (let i = 0; i < payloads.length; i += size) {
        const task: SignTask = {
          kid: key.kid,
          privatePem: key.privatePem,
          typ,
          payloads: payloads.slice(i, i + size),
        };
        chunks.push(pool.run(task));
      }
      return (await Promise.all(chunks)).flat();
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.destroy();
    },
  };
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
