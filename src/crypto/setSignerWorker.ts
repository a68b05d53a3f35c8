// Signs a chunk of SETs as compact JWS (PS256). Runs in a piscina worker thread (the default
// export is the task handler) and, when the pool has no workers, on the main thread through
// `signBatch`. Self-contained on purpose: a worker thread loads this file on its own, from
// `dist/` as plain JavaScript or from the sources through tsx's loader.
//
// node:crypto's synchronous RSA-PSS sign is used directly: a compact JWS is only
// b64url(header).b64url(payload).b64url(signature), and jose's WebCrypto path adds per-call
// overhead for nothing here.
import { constants, createPrivateKey, sign, type KeyObject } from 'node:crypto';

export type SetTyp = 'JOSE' | 'secevent+jwt';

export interface SignTask {
  kid: string;
  privatePem: string;
  typ: SetTyp;
  /** JSON claim strings, signed byte for byte as given. */
  payloads: string[];
}

// Keys rotate rarely: a handful of entries covers the overlap of an old and a new key.
const MAX_CACHED_KEYS = 8;
const keys = new Map<string, { pem: string; key: KeyObject }>();

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

function cachedKey(kid: string, privatePem: string): KeyObject {
  const hit = keys.get(kid);
  // A kid reused for another key (a replaced PEM file) must not sign with the old one.
  if (hit && hit.pem === privatePem) return hit.key;
  const key = createPrivateKey(privatePem);
  if (keys.size >= MAX_CACHED_KEYS) keys.delete(keys.keys().next().value as string);
  keys.set(kid, { pem: privatePem, key });
  return key;
}

/** The protected header, in this exact member order: no `crit`, no OB private headers (DECISIONS.md). */
export function setHeader(kid: string, typ: SetTyp): string {
  return JSON.stringify({ alg: 'PS256', kid, typ });
}

export function signBatch(task: SignTask): string[] {
  if (task.payloads.length === 0) return []; // a readiness probe: the worker is up
  const key = cachedKey(task.kid, task.privatePem);
  const encodedHeader = b64url(setHeader(task.kid, task.typ));
  const options = {
    key,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: 32, // RFC 7518 §3.5: salt length equals the hash length (SHA-256)
  };
  return task.payloads.map((payload) => {
    const signingInput = `${encodedHeader}.${b64url(payload)}`;
    const signature = sign('sha256', Buffer.from(signingInput, 'ascii'), options);
    return `${signingInput}.${signature.toString('base64url')}`;
  });
}

/** What a worker answers: signing errors (a bad key) travel as values, so that a rejected task
 * always means the worker itself failed (see setSigner.ts). */
export type SignResult = { sets: string[] } | { error: string };

export default function signInWorker(task: SignTask): SignResult {
  try {
    return { sets: signBatch(task) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
