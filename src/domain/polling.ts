// Aggregated polling (OBIE Aggregated Polling API = RFC 8936 over POST /events):
//   1. validate the request (OBEventPolling1, plus what the schema leaves open: maxEvents ≥ 0);
//   2. in ONE statement: apply `ack` (idempotent; unknown or foreign jtis change nothing) and
//      `setErrs` (recorded and resolved), then lease up to maxEvents pending SETs of this client
//      in creation order — never one acknowledged in this call;
//   3. nothing to return and `returnImmediately` false or absent: wait (long poll) for a publish
//      to this client or LONG_POLL_SECONDS, then look again;
//   4. answer {"sets": {jti: SET}, "moreAvailable": bool} with the stored bytes.
import { z } from 'zod';
import type { Config } from '../config.js';
import type { DeliveriesStore, SetError } from '../db/stores/deliveriesStore.js';
import { AppError, detail, type ErrorDetail } from '../errors.js';
import type { LongPollHub } from './longPoll.js';

export interface PollResponse {
  sets: Record<string, string>;
  moreAvailable: boolean;
}

export interface PollingDeps {
  deliveries: DeliveriesStore;
  hub: LongPollHub;
  config: Config['polling'];
  /** Told about each answered poll (metrics). */
  onPolled?: (clientId: string, returned: number, resolved: number) => void;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const requestSchema = z.strictObject({
  maxEvents: z.number().int().min(0).optional(),
  returnImmediately: z.boolean().optional(),
  ack: z.array(z.string().min(1).max(128)).optional(),
  setErrs: z
    .record(
      z.string().min(1).max(128),
      z.object({ err: z.string().min(1).max(40), description: z.string().min(1).max(256) }),
    )
    .optional(),
});

type PollRequestBody = z.infer<typeof requestSchema>;

export class Polling {
  constructor(private readonly deps: PollingDeps) {}

  async poll(clientId: string, body: unknown, signal?: AbortSignal): Promise<PollResponse> {
    const req = parse(body);
    const { config } = this.deps;
    const acks = unique((req.ack ?? []).filter((j) => UUID.test(j)).map((j) => j.toLowerCase()));
    const acked = new Set(acks);
    const setErrs: SetError[] = Object.entries(req.setErrs ?? {})
      .map(([jti, e]) => ({ jti: jti.toLowerCase(), err: e.err, description: e.description }))
      .filter((e) => UUID.test(e.jti) && !acked.has(e.jti)); // an ack wins over a negative ack

    const maxEvents = Math.min(req.maxEvents ?? config.defaultMaxEvents, config.maxEvents);
    if (maxEvents === 0) {
      const r = await this.deps.deliveries.acknowledgeOnly({ clientId, acks, setErrs });
      this.deps.onPolled?.(clientId, 0, r.resolved);
      return { sets: {}, moreAvailable: r.moreAvailable };
    }

    const longPoll = req.returnImmediately !== true && config.longPollSeconds > 0;
    const deadline = Date.now() + config.longPollSeconds * 1000;
    let pending = { acks, setErrs };
    for (;;) {
      // Registered before looking, so a publish between the look and the wait still wakes us.
      const remaining = deadline - Date.now();
      const waiter =
        longPoll && remaining > 0 ? this.deps.hub.register(clientId, remaining, signal) : undefined;
      const result = await this.deps.deliveries
        .poll({
          clientId,
          acks: pending.acks,
          setErrs: pending.setErrs,
          limit: maxEvents,
          leaseSeconds: config.leaseSeconds,
        })
        .catch((err: unknown) => {
          waiter?.cancel(); // the database failed (e.g. an outage: 503): stop waiting too
          throw err;
        });
      pending = { acks: [], setErrs: [] }; // applied: later looks only read
      if (result.sets.length > 0 || !waiter) {
        waiter?.cancel();
        this.deps.onPolled?.(clientId, result.sets.length, result.resolved);
        return {
          sets: Object.fromEntries(result.sets.map((s) => [s.jti, s.jws])),
          moreAvailable: result.moreAvailable,
        };
      }
      const reason = await waiter.wait;
      if (reason === 'timeout' || reason === 'shutdown' || reason === 'aborted') {
        this.deps.onPolled?.(clientId, 0, result.resolved);
        return { sets: {}, moreAvailable: false };
      }
    }
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function parse(body: unknown): PollRequestBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new AppError(
      'invalid_request',
      'the request body must be a JSON object (OBEventPolling1)',
      [
        detail(
          'UK.OBIE.Resource.InvalidFormat',
          'the request body must be a JSON object (OBEventPolling1)',
        ),
      ],
    );
  }
  const parsed = requestSchema.safeParse(body);
  if (parsed.success) return parsed.data;
  const details: ErrorDetail[] = parsed.error.issues.slice(0, 20).map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return detail(
        'UK.OBIE.Field.Unexpected',
        `unexpected member ${issue.keys.join(', ')}`,
        issue.keys[0],
      );
    }
    const path = issue.path
      .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
      .join('');
    return detail('UK.OBIE.Field.Invalid', `${path}: ${issue.message}`, path || undefined);
  });
  throw new AppError('invalid_request', 'the polling request is not valid', details);
}
