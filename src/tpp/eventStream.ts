// `events()`: RFC 8936 polling as an async iterator.
//
//   for await (const event of client.events({ signal })) { ...handle event... }
//
// - Each poll long-polls (`returnImmediately: false`; with `drain`, short polls until nothing is
//   waiting) and carries the acknowledgements and errors gathered since the previous one.
// - Every SET is verified before it is yielded. One that fails is never yielded: it goes back to
//   the server in `setErrs` with its RFC 8935 code, and `onInvalidSet` is told.
// - A yielded event is acknowledged once the consumer moves on (asks for the next one). The event
//   in hand when the loop is left (`break`, `return`, a throw) is NOT acknowledged: it comes back
//   after the server's lease (POLL_LEASE_SECONDS), so an event whose handling failed is not lost
//   (at least once; deduplicate on jti).
// - Leaving the loop, or aborting `signal`, ends the iterator promptly (an in-flight long poll is
//   cancelled); what was consumed but not yet acknowledged is acknowledged with a final
//   `maxEvents: 0` call.
// - Following (not draining), a failed poll (network, 5xx, 429) is retried with a capped
//   exponential back-off; `onError` is told. Draining, it ends the iteration with the error.
import { SetVerificationError, type SetErrorCode, type VerifiedSet } from './setVerifier.js';
import { TppError } from './transport.js';

export interface PollRequest {
  maxEvents?: number;
  returnImmediately?: boolean;
  ack?: string[];
  setErrs?: Record<string, { err: string; description: string }>;
}

export interface PollResponse {
  sets: Record<string, string>;
  moreAvailable: boolean;
}

export interface InvalidSet {
  jti: string;
  err: SetErrorCode;
  description: string;
}

export interface EventsOptions {
  /** Aborting ends the iteration (after acknowledging what was consumed). */
  signal?: AbortSignal;
  /** SETs asked for per poll; default: the server's (POLL_DEFAULT_MAX_EVENTS). */
  maxEvents?: number;
  /** End once nothing is waiting (short polls), instead of long-polling until aborted. */
  drain?: boolean;
  /** Told about each SET that failed verification (reported in setErrs, not yielded). */
  onInvalidSet?: (set: InvalidSet) => void;
  /** Told about failures the iterator survives (a retried poll, an unverifiable SET left for later, a failed final ack). */
  onError?: (err: unknown) => void;
}

export interface EventStreamDeps {
  poll(request: PollRequest, signal?: AbortSignal): Promise<PollResponse>;
  verify(jws: string): Promise<VerifiedSet>;
}

const FINAL_ACK_TIMEOUT_MS = 10_000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30_000;

export async function* eventStream(
  deps: EventStreamDeps,
  opts: EventsOptions = {},
): AsyncGenerator<VerifiedSet, void, undefined> {
  const { signal, drain = false } = opts;
  // Consumed (acks) or refused (setErrs) and not yet confirmed by a successful poll.
  let acks: string[] = [];
  let setErrs: Record<string, { err: string; description: string }> = {};
  let retryMs = RETRY_FIRST_MS;
  try {
    while (!signal?.aborted) {
      const request: PollRequest = { returnImmediately: drain };
      if (opts.maxEvents !== undefined) request.maxEvents = opts.maxEvents;
      if (acks.length > 0) request.ack = acks;
      if (Object.keys(setErrs).length > 0) request.setErrs = setErrs;
      let answer: PollResponse;
      try {
        answer = await deps.poll(request, signal);
      } catch (err) {
        if (signal?.aborted) return;
        if (drain || !isTransient(err)) throw err;
        opts.onError?.(err);
        await sleep(retryMs, signal);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
        continue;
      }
      retryMs = RETRY_FIRST_MS;
      acks = [];
      setErrs = {};
      for (const [jti, jws] of Object.entries(answer.sets)) {
        const event = await check(deps, jti, jws, opts);
        if (event === 'unchecked') continue;
        if ('err' in event) {
          setErrs[jti] = { err: event.err, description: event.description };
          continue;
        }
        // Aborted while this batch was being handed out: the rest comes back after the lease.
        if (signal?.aborted) return;
        yield event;
        acks.push(jti); // the consumer asked for the next one: it is done with this one
      }
      if (drain && !answer.moreAvailable) return;
    }
  } finally {
    if (acks.length > 0 || Object.keys(setErrs).length > 0) {
      await deps
        .poll(
          { maxEvents: 0, returnImmediately: true, ack: acks, setErrs },
          AbortSignal.timeout(FINAL_ACK_TIMEOUT_MS),
        )
        .catch((err: unknown) => opts.onError?.(err));
    }
  }
}

/** The verified event; its RFC 8935 error; or 'unchecked' when it could not be checked now. */
async function check(
  deps: EventStreamDeps,
  jti: string,
  jws: string,
  opts: EventsOptions,
): Promise<VerifiedSet | InvalidSet | 'unchecked'> {
  try {
    const event = await deps.verify(jws);
    if (event.jti !== jti) {
      throw new SetVerificationError(
        'invalid_request',
        `the SET's jti is not ${jti}, the key it was sent under`,
      );
    }
    return event;
  } catch (err) {
    if (err instanceof SetVerificationError) {
      const invalid: InvalidSet = { jti, err: err.err, description: err.description };
      opts.onInvalidSet?.(invalid);
      return invalid;
    }
    // Not the SET's fault (the JWKS could not be fetched): neither acknowledged nor refused, so it
    // comes back after its lease.
    opts.onError?.(err);
    return 'unchecked';
  }
}

function isTransient(err: unknown): boolean {
  if (err instanceof TppError) {
    return (
      err.code === 'http_status' &&
      err.status !== undefined &&
      (err.status >= 500 || err.status === 429)
    );
  }
  // Connection refused or reset, TLS failures, timeouts: undici and node errors with a code.
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
