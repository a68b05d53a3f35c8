// Prometheus metrics, served on the admin listener at /metrics. One registry per server (no
// global default registry), so two servers in one test process do not collide.
// Cardinality is bounded: routes are express route patterns (never raw paths), no label carries
// a jti, and per-client / per-origin series exist only while there are at most
// PER_CLIENT_SERIES_LIMIT clients (beyond that, only totals).
import { Router, type RequestHandler } from 'express';
import type { Knex } from 'knex';
import client from 'prom-client';
import { migrations } from '../migrations/index.js';
import { MIGRATIONS_TABLE } from './db/migrate.js';
import type { PushHooks } from './push/hooks.js';

export const PER_CLIENT_SERIES_LIMIT = 50;

export interface Metrics {
  registry: client.Registry;
  httpRequests: client.Counter<'listener' | 'route' | 'method' | 'status'>;
  httpDuration: client.Histogram<'listener' | 'route' | 'method'>;
  tokensIssued: client.Counter<'auth_method'>;
  tokensRefused: client.Counter<'reason'>;
  eventsPublished: client.Counter<'type' | 'outcome'>;
  setsDelivered: client.Counter<'channel'>;
  setsResolvedByPoll: client.Counter;
  pushAttempts: client.Counter<'outcome'>;
  pushDuration: client.Histogram<'outcome'>;
  pushBreakers: client.Gauge<'state'>;
  pushBreakerOpen: client.Gauge<'origin'>;
}

export interface MetricsSources {
  knex: Knex;
  /** Waiting long polls right now. */
  longPolls?: () => number;
}

export function createMetrics(): Metrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'ob_events_' });
  const r = { registers: [registry] };
  return {
    registry,
    httpRequests: new client.Counter({
      name: 'ob_events_http_requests_total',
      help: 'HTTP requests answered, by listener, route pattern, method and status',
      labelNames: ['listener', 'route', 'method', 'status'],
      ...r,
    }),
    httpDuration: new client.Histogram({
      name: 'ob_events_http_request_duration_seconds',
      help: 'HTTP request latency, by listener, route pattern and method',
      labelNames: ['listener', 'route', 'method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      ...r,
    }),
    tokensIssued: new client.Counter({
      name: 'ob_events_tokens_issued_total',
      help: 'Access tokens issued, by client authentication method',
      labelNames: ['auth_method'],
      ...r,
    }),
    tokensRefused: new client.Counter({
      name: 'ob_events_tokens_refused_total',
      help: 'Token requests refused, by OAuth error code',
      labelNames: ['reason'],
      ...r,
    }),
    eventsPublished: new client.Counter({
      name: 'ob_events_events_published_total',
      help: 'Events submitted for publishing, by event type and outcome (created, duplicate, skipped)',
      labelNames: ['type', 'outcome'],
      ...r,
    }),
    setsDelivered: new client.Counter({
      name: 'ob_events_sets_delivered_total',
      help: 'SETs handed to TPPs: returned by a poll (channel=poll, redeliveries included) or accepted by a push (channel=push)',
      labelNames: ['channel'],
      ...r,
    }),
    setsResolvedByPoll: new client.Counter({
      name: 'ob_events_sets_resolved_by_poll_total',
      help: 'SETs resolved through polling requests: acknowledged (ack) or reported as errors (setErrs)',
      ...r,
    }),
    pushAttempts: new client.Counter({
      name: 'ob_events_push_attempts_total',
      help: 'Push attempts, by outcome: accepted (202), rejected (400), retry (will try again), failed (gave up)',
      labelNames: ['outcome'],
      ...r,
    }),
    pushDuration: new client.Histogram({
      name: 'ob_events_push_attempt_duration_seconds',
      help: 'Push attempt latency, by outcome',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      ...r,
    }),
    pushBreakers: new client.Gauge({
      name: 'ob_events_push_breakers',
      help: 'Callback endpoints by circuit-breaker state (closed, open, half_open) in this process',
      labelNames: ['state'],
      ...r,
    }),
    pushBreakerOpen: new client.Gauge({
      name: 'ob_events_push_breaker_open',
      help: 'Per callback origin: 1 while its circuit breaker is open or half-open (only with few origins)',
      labelNames: ['origin'],
      ...r,
    }),
  };
}

/** Gauges computed at scrape time from the database and the process. */
export function registerCollectedGauges(metrics: Metrics, sources: MetricsSources): void {
  const registers = [metrics.registry];
  const values = {
    pending: 0,
    failed: 0,
    pushDisabled: 0,
    oldestAge: 0,
    byClient: new Map<string, number>(),
  };

  // The database gauges are computed at most every 10 s, however often /metrics is scraped;
  // when the database does not answer, the previous values stay.
  let refreshing: Promise<void> | undefined;
  let refreshedAt = 0;
  const refresh = (): Promise<void> => {
    if (refreshing) return refreshing;
    if (Date.now() - refreshedAt < 10_000) return Promise.resolve();
    refreshing = readDatabaseGauges(sources.knex)
      .then((v) => {
        Object.assign(values, v);
        refreshedAt = Date.now();
      })
      .catch(() => {})
      .finally(() => (refreshing = undefined));
    return refreshing;
  };

  new client.Gauge({
    name: 'ob_events_pending_sets',
    help: 'SETs awaiting acknowledgement (all clients)',
    registers,
    async collect() {
      await refresh();
      this.set(values.pending);
    },
  });
  new client.Gauge({
    name: 'ob_events_oldest_pending_age_seconds',
    help: 'Age of the oldest SET awaiting acknowledgement',
    registers,
    async collect() {
      await refresh();
      this.set(values.oldestAge);
    },
  });
  new client.Gauge({
    name: 'ob_events_pending_sets_by_client',
    help: `SETs awaiting acknowledgement per client (only while there are at most ${PER_CLIENT_SERIES_LIMIT} clients)`,
    labelNames: ['client_id'],
    registers,
    async collect() {
      await refresh();
      this.reset();
      for (const [clientId, n] of values.byClient) this.set({ client_id: clientId }, n);
    },
  });
  new client.Gauge({
    name: 'ob_events_push_failed_sets',
    help: 'Pending SETs whose push gave up (attempts or age exhausted): still pollable, see `deliveries list --state failed`',
    registers,
    async collect() {
      await refresh();
      this.set(values.failed);
    },
  });
  new client.Gauge({
    name: 'ob_events_push_disabled_clients',
    help: 'TPPs whose push was disabled after failing for PUSH_DISABLE_AFTER_SECONDS (SETs still pollable): see `push endpoints`, re-enable with `push enable`',
    registers,
    async collect() {
      await refresh();
      this.set(values.pushDisabled);
    },
  });
  new client.Gauge({
    name: 'ob_events_db_pool_connections',
    help: 'Database pool connections by state (used, free, pending acquisitions)',
    labelNames: ['state'],
    registers,
    collect() {
      const tarn = (sources.knex.client as { pool?: TarnPool }).pool;
      if (!tarn) return;
      this.set({ state: 'used' }, tarn.numUsed());
      this.set({ state: 'free' }, tarn.numFree());
      this.set({ state: 'pending' }, tarn.numPendingAcquires());
    },
  });
  registerDatabaseTotals(metrics, sources.knex);
  registerTableGauges(registers, sources.knex);
  const longPolls = sources.longPolls;
  if (longPolls) {
    new client.Gauge({
      name: 'ob_events_long_polls_waiting',
      help: 'Long-poll requests waiting in this process at scrape time',
      registers,
      collect() {
        this.set(longPolls());
      },
    });
  }
}

interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
}

async function readDatabaseGauges(knex: Knex) {
  const { rows } = await knex.raw<{
    rows: {
      pending: number;
      failed: number;
      oldest: Date | null;
      clients: number;
      push_disabled: number;
    }[];
  }>(
    `SELECT (SELECT count(*) FROM event_deliveries WHERE state = 'pending') AS pending,
            (SELECT count(*) FROM event_deliveries WHERE state = 'pending' AND push_state = 'failed') AS failed,
            (SELECT min(e.created_at) FROM events e JOIN event_deliveries d ON d.jti = e.jti
              WHERE d.state = 'pending') AS oldest,
            (SELECT count(*) FROM clients) AS clients,
            (SELECT count(*) FROM push_breakers WHERE disabled_at IS NOT NULL) AS push_disabled`,
  );
  const row = rows[0]!;
  const byClient = new Map<string, number>();
  if (row.clients <= PER_CLIENT_SERIES_LIMIT) {
    const perClient = await knex.raw<{ rows: { client_id: string; n: number }[] }>(
      `SELECT client_id, count(*) AS n FROM event_deliveries WHERE state = 'pending' GROUP BY client_id`,
    );
    for (const c of perClient.rows) byClient.set(c.client_id, c.n);
  }
  return {
    pending: row.pending,
    failed: row.failed,
    pushDisabled: Number(row.push_disabled),
    oldestAge: row.oldest ? Math.max(0, (Date.now() - row.oldest.getTime()) / 1000) : 0,
    byClient,
  };
}

/** Where a request answered without express's routers names its route pattern. */
export const ROUTE_LOCAL = 'routePattern';

/** Counts and times every request by its route pattern (bounded cardinality). */
export function httpMetrics(metrics: Metrics, listener: 'api' | 'admin'): RequestHandler {
  const record = httpRequestRecorder(metrics, listener);
  return (req, res, next) => {
    const started = performance.now();
    res.on('finish', () => {
      const route =
        (res.locals[ROUTE_LOCAL] as string | undefined) ??
        (req.route ? `${req.baseUrl}${String((req.route as { path: string }).path)}` : 'unmatched');
      record(route, req.method, res.statusCode, (performance.now() - started) / 1000);
    });
    next();
  };
}

/** Records one answered request in the HTTP series (also for responses sent without express). */
export type HttpRequestRecorder = (
  route: string,
  method: string,
  status: number,
  seconds: number,
) => void;

export function httpRequestRecorder(
  metrics: Metrics,
  listener: 'api' | 'admin',
): HttpRequestRecorder {
  return (route, method, status, seconds) => {
    const labels = { listener, route, method };
    metrics.httpDuration.observe(labels, seconds);
    metrics.httpRequests.inc({ ...labels, status: String(status) });
  };
}

/** GET /metrics on the admin listener. */
export function metricsRouter(metrics: Metrics): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });
  return router;
}

/** The push engine's hooks (src/push/hooks.ts) feeding the push metrics. */
export function pushMetricsHooks(metrics: Metrics): PushHooks {
  const breakers = new Map<string, 'open' | 'half-open' | 'closed'>();
  const refreshBreakers = () => {
    const counts = { closed: 0, open: 0, half_open: 0 };
    for (const state of breakers.values()) counts[state === 'half-open' ? 'half_open' : state] += 1;
    for (const [state, n] of Object.entries(counts)) metrics.pushBreakers.set({ state }, n);
    metrics.pushBreakerOpen.reset();
    if (breakers.size <= PER_CLIENT_SERIES_LIMIT) {
      for (const [origin, state] of breakers)
        metrics.pushBreakerOpen.set({ origin }, state === 'closed' ? 0 : 1);
    }
  };
  return {
    attempt(e) {
      metrics.pushAttempts.inc({ outcome: e.outcome });
      metrics.pushDuration.observe({ outcome: e.outcome }, e.latencyMs / 1000);
      if (e.outcome === 'accepted') metrics.setsDelivered.inc({ channel: 'push' });
    },
    breaker(e) {
      if (e.state === 'closed') breakers.delete(e.origin);
      else breakers.set(e.origin, e.state);
      refreshBreakers();
    },
  };
}

/**
 * Totals read from the database at scrape time, so they count every way in (admin API, CLI,
 * outbox worker) on every replica, unlike the process-local counters above: every replica's
 * /metrics shows the same values (aggregate them with max(), not sum()). Rows deleted by
 * retention are added back from metric_totals (migration 20261201150000), so the totals only grow.
 * Like the gauges above, computed at most every 10 s; the previous values stay while the
 * database does not answer.
 */
function registerDatabaseTotals(metrics: Metrics, knex: Knex): void {
  const registers = [metrics.registry];
  let totals: DatabaseTotals | undefined;
  let ready = false;
  let refreshing: Promise<void> | undefined;
  let refreshedAt = 0;
  const refresh = (): Promise<void> => {
    if (refreshing) return refreshing;
    if (Date.now() - refreshedAt < 10_000) return Promise.resolve();
    refreshing = readDatabaseTotals(knex)
      .then((t) => {
        totals = t;
        ready = t.schemaCurrent;
      })
      .catch(() => {
        ready = false;
      })
      .finally(() => {
        refreshedAt = Date.now();
        refreshing = undefined;
      });
    return refreshing;
  };
  // prom-client counters only go up by inc(): set each to the database's value at collect time.
  const setTo = (c: client.Counter<string>, labels: Record<string, string>, value: number) => {
    if (value > 0) c.inc(labels, value);
  };

  new client.Counter({
    name: 'ob_events_sets_created_total',
    help: 'SETs created, by every replica and every way in (admin API, CLI, outbox); read from the database',
    registers,
    async collect() {
      await refresh();
      this.reset();
      if (totals) setTo(this, {}, totals.created);
    },
  });
  new client.Counter({
    name: 'ob_events_sets_resolved_total',
    help: 'SETs that left pending, by resolution (ack, set_err, push_accepted, push_rejected, subscription_deleted, ...), all replicas; read from the database',
    labelNames: ['resolution'],
    registers,
    async collect() {
      await refresh();
      this.reset();
      for (const [resolution, n] of totals?.resolved ?? []) setTo(this, { resolution }, n);
    },
  });
  new client.Counter({
    name: 'ob_events_sets_polled_total',
    help: 'SETs returned in poll responses (redeliveries after a lease counted again), all replicas; read from the database',
    registers,
    async collect() {
      await refresh();
      this.reset();
      if (totals) setTo(this, {}, totals.polled);
    },
  });
  new client.Counter({
    name: 'ob_events_push_attempts_recorded_total',
    help: 'Push attempts recorded by every replica and worker, by outcome (accepted, rejected, retry, failed); read from the database',
    labelNames: ['outcome'],
    registers,
    async collect() {
      await refresh();
      this.reset();
      for (const [outcome, n] of totals?.pushAttempts ?? []) setTo(this, { outcome }, n);
    },
  });
  new client.Gauge({
    name: 'ob_events_sets',
    help: 'SETs stored now, by delivery state (pending, acknowledged, errored, discarded); resolved ones stay for EVENT_RETENTION_DAYS',
    labelNames: ['state'],
    registers,
    async collect() {
      await refresh();
      this.reset();
      for (const [state, n] of totals?.byState ?? []) this.set({ state }, n);
    },
  });
  new client.Gauge({
    name: 'ob_events_oldest_pending_age_seconds_by_client',
    help: `Age of each client's oldest SET awaiting acknowledgement (only while there are at most ${PER_CLIENT_SERIES_LIMIT} clients)`,
    labelNames: ['client_id'],
    registers,
    async collect() {
      await refresh();
      this.reset();
      for (const [clientId, age] of totals?.oldestByClient ?? [])
        this.set({ client_id: clientId }, age);
    },
  });
  new client.Gauge({
    name: 'ob_events_outbox_rows',
    help: 'Outbox rows by state (new, done, skipped, failed); failed rows stay until an operator acts',
    labelNames: ['state'],
    registers,
    async collect() {
      await refresh();
      this.reset();
      for (const [state, n] of totals?.outbox ?? []) this.set({ state }, n);
    },
  });
  new client.Gauge({
    name: 'ob_events_outbox_oldest_new_age_seconds',
    help: 'Age of the oldest outbox row not yet published (0 when none waits)',
    registers,
    async collect() {
      await refresh();
      this.set(totals?.outboxOldestNewAge ?? 0);
    },
  });
  new client.Gauge({
    name: 'ob_events_ready',
    help: 'Whether the database answered the last scrape-time read and its schema is current (as /health/ready)',
    registers,
    async collect() {
      await refresh();
      this.set(ready ? 1 : 0);
    },
  });
}

interface DatabaseTotals {
  schemaCurrent: boolean;
  oldestByClient: Map<string, number>;
  outbox: Map<string, number>;
  outboxOldestNewAge: number;
  created: number;
  polled: number;
  resolved: Map<string, number>;
  byState: Map<string, number>;
  pushAttempts: Map<string, number>;
}

async function readDatabaseTotals(knex: Knex): Promise<DatabaseTotals> {
  // One statement, so the rows counted and the rows deleted come from the same snapshot (a
  // retention batch committing meanwhile is seen on both sides or on neither).
  const { rows } = await knex.raw<{
    rows: { kind: string; label: string; n: number; polled: number }[];
  }>(
    `SELECT 'set' AS kind, state || ':' || coalesce(resolution, '') AS label,
            count(*)::bigint AS n, coalesce(sum(poll_count), 0)::bigint AS polled
       FROM event_deliveries GROUP BY state, resolution
     UNION ALL
     SELECT 'push', outcome, count(*)::bigint, 0 FROM push_attempts GROUP BY outcome
     UNION ALL
     SELECT metric, label, value, 0 FROM metric_totals`,
  );
  const now = Date.now();
  const side = await knex.raw<{
    rows: { kind: string; label: string | null; n: number; oldest: Date | null }[];
  }>(
    `SELECT 'outbox' AS kind, state AS label, count(*)::bigint AS n,
            min(created_at) FILTER (WHERE state = 'new') AS oldest
       FROM event_outbox GROUP BY state
     UNION ALL
     SELECT 'migrations', NULL, count(*)::bigint, NULL FROM ${MIGRATIONS_TABLE}
     UNION ALL
     SELECT 'clients', NULL, count(*)::bigint, NULL FROM clients`,
  );
  const t: DatabaseTotals = {
    ...{
      schemaCurrent: false,
      oldestByClient: new Map(),
      outbox: new Map(),
      outboxOldestNewAge: 0,
    },
    ...{ created: 0, polled: 0 },
    ...{ resolved: new Map(), byState: new Map(), pushAttempts: new Map() },
  };
  let clients = 0;
  for (const r of side.rows) {
    if (r.kind === 'outbox' && r.label) {
      t.outbox.set(r.label, Number(r.n));
      if (r.oldest) t.outboxOldestNewAge = Math.max(0, (now - r.oldest.getTime()) / 1000);
    } else if (r.kind === 'migrations') {
      t.schemaCurrent = Number(r.n) === migrations.length;
    } else if (r.kind === 'clients') {
      clients = Number(r.n);
    }
  }
  if (clients <= PER_CLIENT_SERIES_LIMIT) {
    // jti is a UUIDv7: its first 48 bits are the creation time in ms, and the pending index
    // (client_id, jti) hands out each client's smallest one without reading the events table.
    const oldest = await knex.raw<{ rows: { client_id: string; jti: string }[] }>(
      `SELECT client_id, min(jti::text) AS jti FROM event_deliveries WHERE state = 'pending' GROUP BY client_id`,
    );
    for (const r of oldest.rows) {
      const ms = parseInt(r.jti.replace(/-/g, '').slice(0, 12), 16);
      t.oldestByClient.set(r.client_id, Math.max(0, (now - ms) / 1000));
    }
  }
  const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);
  for (const r of rows) {
    const n = Number(r.n);
    if (r.kind === 'set') {
      const [state = '', resolution = ''] = r.label.split(':');
      t.created += n;
      t.polled += Number(r.polled);
      add(t.byState, state, n);
      if (resolution) add(t.resolved, resolution, n);
    } else if (r.kind === 'push') {
      add(t.pushAttempts, r.label, n);
    } else if (r.kind === 'sets_deleted') {
      t.created += n;
      if (r.label !== 'pending') add(t.resolved, r.label, n);
    } else if (r.kind === 'sets_polled_deleted') {
      t.polled += n;
    } else if (r.kind === 'push_attempts_deleted') {
      add(t.pushAttempts, r.label, n);
    }
  }
  return t;
}

/**
 * Table health for the hot tables (see migrations/20261201111000_autovacuum.ts): dead tuples,
 * their share of the table, and the table's size on disk (indexes and TOAST included), read
 * from pg_stat_user_tables at scrape time (at most every 30 s). One series per table of our
 * schema: bounded.
 */
function registerTableGauges(registers: client.Registry[], knex: Knex): void {
  let rows: TableStats[] = [];
  let refreshing: Promise<void> | undefined;
  let refreshedAt = 0;
  const refresh = (): Promise<void> => {
    if (refreshing) return refreshing;
    if (Date.now() - refreshedAt < 30_000) return Promise.resolve();
    refreshing = readTableStats(knex)
      .then((r) => {
        rows = r;
        refreshedAt = Date.now();
      })
      .catch(() => {})
      .finally(() => (refreshing = undefined));
    return refreshing;
  };
  const gauge = (name: string, help: string, value: (t: TableStats) => number) =>
    new client.Gauge({
      name,
      help,
      labelNames: ['table'],
      registers,
      async collect() {
        await refresh();
        this.reset();
        for (const t of rows) this.set({ table: t.table }, value(t));
      },
    });
  gauge(
    'ob_events_db_dead_tuples',
    'Dead row versions per table (pg_stat_user_tables.n_dead_tup): what the next vacuum removes',
    (t) => t.dead,
  );
  gauge(
    'ob_events_db_dead_tuple_ratio',
    'Dead row versions as a share of all row versions per table (0 to 1); high and rising: vacuum falls behind',
    (t) => (t.dead + t.live === 0 ? 0 : t.dead / (t.dead + t.live)),
  );
  gauge(
    'ob_events_db_table_bytes',
    'Size on disk per table, indexes and TOAST included (pg_total_relation_size)',
    (t) => t.bytes,
  );
  gauge(
    'ob_events_db_last_vacuum_age_seconds',
    'Seconds since the table was last vacuumed (manual or autovacuum); -1 when never',
    (t) => (t.lastVacuum ? Math.max(0, (Date.now() - t.lastVacuum.getTime()) / 1000) : -1),
  );
}

interface TableStats {
  table: string;
  live: number;
  dead: number;
  bytes: number;
  lastVacuum: Date | null;
}

async function readTableStats(knex: Knex): Promise<TableStats[]> {
  const { rows } = await knex.raw<{ rows: TableStats[] }>(
    `SELECT relname AS "table", n_live_tup AS live, n_dead_tup AS dead,
            pg_total_relation_size(relid) AS bytes,
            greatest(last_vacuum, last_autovacuum) AS "lastVacuum"
       FROM pg_stat_user_tables
      WHERE schemaname = current_schema() AND relname NOT LIKE 'knex%'
      ORDER BY relname`,
  );
  return rows;
}
