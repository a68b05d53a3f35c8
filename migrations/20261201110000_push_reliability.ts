// Push that recovers in seconds and never sends twice after a 202 across an outage (issue 11):
// - push_breakers becomes one row per TPP endpoint that has failed, shared by every replica:
//   the failure counters (a streak of "endpoint down" answers, a failure-rate window), the
//   open/half-open state with a growing cool-down, the one probe in flight (claimed atomically
//   by one claim), and whether push was disabled after failing for too long.
//   push_breaker_record() applies a batch of outcomes to it (called by the outcome write in
//   src/db/stores/pushStore.ts): one place, one row lock, the same answer on every replica.
// - push_workers: a heartbeat per push worker. A SET whose lease ended is taken over by another
//   worker only when its holder has not been seen for PUSH_WORKER_TIMEOUT_SECONDS (it may
//   still hold a 202 it could not record): event_deliveries.leased_by names the holder.
// Open breakers of the old table are dropped (they were transient: the endpoints are judged
// again from their next attempts).
import type { Knex } from 'knex';

export const name = '20261201110000_push_reliability';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE push_breakers;
    CREATE TABLE push_breakers (
      client_id text PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
      callback_url text NOT NULL CHECK (length(callback_url) <= 2000),
      open_until timestamptz NULL,
      probe_until timestamptz NULL,
      trips integer NOT NULL DEFAULT 0 CHECK (trips >= 0),
      opened_at timestamptz NULL,
      down_streak integer NOT NULL DEFAULT 0 CHECK (down_streak >= 0),
      window_started_at timestamptz NOT NULL DEFAULT now(),
      window_attempts integer NOT NULL DEFAULT 0 CHECK (window_attempts >= 0),
      window_failures integer NOT NULL DEFAULT 0 CHECK (window_failures >= 0),
      failing_since timestamptz NULL,
      last_success_at timestamptz NULL,
      disabled_at timestamptz NULL,
      last_error text NULL CHECK (length(last_error) <= 2000),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE push_breakers IS 'Circuit breaker and health of a TPP callback endpoint, one row per client once a push to it failed; shared by every replica. No row, or a row with open_until NULL: closed.';
    COMMENT ON COLUMN push_breakers.client_id IS 'The TPP whose endpoint this is.';
    COMMENT ON COLUMN push_breakers.callback_url IS 'The CallbackUrl judged; a subscription with another URL is not held back by this row.';
    COMMENT ON COLUMN push_breakers.open_until IS 'NULL: closed. Else no push before then; afterwards one probe at a time (half-open).';
    COMMENT ON COLUMN push_breakers.probe_until IS 'A probe claimed by one worker is in flight until then (its lease); nobody else probes meanwhile.';
    COMMENT ON COLUMN push_breakers.trips IS 'Openings in a row (1 + failed probes); the cool-down doubles with each, from PUSH_RETRY_BASE_MS up to PUSH_BREAKER_OPEN_SECONDS.';
    COMMENT ON COLUMN push_breakers.opened_at IS 'When it opened in this run of failures.';
    COMMENT ON COLUMN push_breakers.down_streak IS 'Answers in a row that say the endpoint is down (refused, time-out, TLS, 429, 502, 503, 504).';
    COMMENT ON COLUMN push_breakers.window_started_at IS 'Start of the failure-rate window (PUSH_BREAKER_WINDOW_SECONDS), judged when it ends.';
    COMMENT ON COLUMN push_breakers.window_attempts IS 'Attempts in the current window.';
    COMMENT ON COLUMN push_breakers.window_failures IS 'Failed attempts in the current window.';
    COMMENT ON COLUMN push_breakers.failing_since IS 'First failure since the last success (NULL: the last attempt succeeded).';
    COMMENT ON COLUMN push_breakers.last_success_at IS 'Last 202 or 400 from the endpoint.';
    COMMENT ON COLUMN push_breakers.disabled_at IS 'Push disabled after PUSH_DISABLE_AFTER_SECONDS of failure (SETs stay pollable) until an operator enables it.';
    COMMENT ON COLUMN push_breakers.last_error IS 'The last failure.';
    COMMENT ON COLUMN push_breakers.updated_at IS 'When outcomes last moved it.';

    CREATE TABLE push_workers (
      worker text PRIMARY KEY CHECK (length(worker) <= 200),
      seen_at timestamptz NOT NULL,
      connected_since timestamptz NOT NULL
    );
    COMMENT ON TABLE push_workers IS 'Heartbeats of push workers: a SET leased by a worker seen within PUSH_WORKER_TIMEOUT_SECONDS is never taken by another.';
    COMMENT ON COLUMN push_workers.worker IS 'The worker (host:pid:instance), as in push_attempts.worker and event_deliveries.leased_by.';
    COMMENT ON COLUMN push_workers.seen_at IS 'Last heartbeat.';
    COMMENT ON COLUMN push_workers.connected_since IS 'Start of the current run of heartbeats without a gap (a worker takes nobody''s SETs until it has been connected for PUSH_WORKER_TIMEOUT_SECONDS).';

    ALTER TABLE event_deliveries ADD COLUMN leased_by text NULL;
    COMMENT ON COLUMN event_deliveries.leased_by IS 'The push worker holding the lease (push_workers.worker); NULL for poll leases and when free.';

    CREATE FUNCTION push_breaker_record(
      p_client text, p_url text, p_attempts integer, p_ok integer, p_failures integer,
      p_downs integer, p_trailing_downs integer, p_probe boolean, p_retry_after_ms double precision,
      p_error text, p_failures_to_open integer, p_window_s double precision,
      p_failure_rate double precision, p_base_ms double precision, p_max_open_s double precision,
      p_disable_after_s double precision)
    RETURNS TABLE (change text, open_until timestamptz, trips integer, reason text)
    LANGUAGE plpgsql AS $fn$
    DECLARE
      b push_breakers%ROWTYPE;
      v_now timestamptz := now();
      v_change text := NULL;
      v_judged boolean := false;
      v_cool_ms double precision;
    BEGIN
      IF p_failures = 0 THEN
        -- Only successes: a row exists only for endpoints that failed.
        SELECT * INTO b FROM push_breakers pb WHERE pb.client_id = p_client FOR UPDATE;
        IF NOT FOUND THEN RETURN; END IF;
      ELSE
        INSERT INTO push_breakers (client_id, callback_url) VALUES (p_client, p_url)
          ON CONFLICT (client_id) DO NOTHING;
        SELECT * INTO b FROM push_breakers pb WHERE pb.client_id = p_client FOR UPDATE;
      END IF;
      IF b.callback_url <> p_url THEN
        -- Another endpoint now: judged afresh (a TPP re-enables push by fixing its URL).
        b.callback_url := p_url; b.open_until := NULL; b.probe_until := NULL; b.trips := 0;
        b.opened_at := NULL; b.down_streak := 0; b.window_started_at := v_now;
        b.window_attempts := 0; b.window_failures := 0; b.failing_since := NULL;
        b.disabled_at := NULL;
      END IF;

      -- The failure-rate window is judged once it has run its length (a burst inside one
      -- window is not a rate), and only if it ended recently.
      IF b.window_started_at <= v_now - make_interval(secs => p_window_s) THEN
        v_judged := b.window_started_at > v_now - make_interval(secs => 2 * p_window_s)
                    AND b.window_failures >= p_failures_to_open
                    AND b.window_failures >= p_failure_rate * b.window_attempts;
        b.window_started_at := v_now; b.window_attempts := 0; b.window_failures := 0;
      END IF;
      b.window_attempts := b.window_attempts + p_attempts;
      b.window_failures := b.window_failures + p_failures;

      IF p_ok > 0 THEN
        -- Any success closes it.
        IF b.open_until IS NOT NULL THEN v_change := 'closed'; END IF;
        b.open_until := NULL; b.probe_until := NULL; b.trips := 0; b.opened_at := NULL;
        b.down_streak := 0; b.failing_since := NULL; b.last_success_at := v_now;
      ELSE
        b.failing_since := coalesce(b.failing_since, v_now);
        b.down_streak := CASE WHEN p_trailing_downs = p_attempts THEN b.down_streak + p_downs
                              ELSE p_trailing_downs END;
        b.last_error := left(p_error, 2000);
        IF b.open_until IS NULL THEN
          IF b.down_streak >= p_failures_to_open OR p_retry_after_ms IS NOT NULL OR v_judged THEN
            b.trips := 1; b.opened_at := v_now; v_change := 'opened';
          END IF;
        ELSIF p_probe THEN
          b.trips := b.trips + 1; v_change := 'reopened';
        END IF;
        -- (Failures of requests that were in flight when it opened change nothing.)
        IF v_change IS NOT NULL THEN
          v_cool_ms := CASE WHEN p_retry_after_ms IS NOT NULL THEN least(p_retry_after_ms, 3600000)
                            ELSE least(p_max_open_s * 1000, p_base_ms * 2 ^ least(b.trips - 1, 30)) END;
          b.open_until := v_now + make_interval(secs => v_cool_ms / 1000.0);
          b.probe_until := NULL;
        END IF;
        IF b.disabled_at IS NULL AND p_disable_after_s > 0
           AND b.failing_since <= v_now - make_interval(secs => p_disable_after_s) THEN
          b.disabled_at := v_now; v_change := 'disabled';
        END IF;
      END IF;

      UPDATE push_breakers pb
         SET callback_url = b.callback_url, open_until = b.open_until, probe_until = b.probe_until,
             trips = b.trips, opened_at = b.opened_at, down_streak = b.down_streak,
             window_started_at = b.window_started_at, window_attempts = b.window_attempts,
             window_failures = b.window_failures, failing_since = b.failing_since,
             last_success_at = b.last_success_at, disabled_at = b.disabled_at,
             last_error = b.last_error, updated_at = v_now
       WHERE pb.client_id = p_client;
      IF v_change IS NOT NULL THEN
        RETURN QUERY SELECT v_change, b.open_until, b.trips, b.last_error;
      END IF;
    END
    $fn$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP FUNCTION push_breaker_record(text, text, integer, integer, integer, integer, integer,
      boolean, double precision, text, integer, double precision, double precision,
      double precision, double precision, double precision);
    ALTER TABLE event_deliveries DROP COLUMN leased_by;
    DROP TABLE push_workers;
    DROP TABLE push_breakers;
    CREATE TABLE push_breakers (
      client_id text PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
      callback_url text NOT NULL CHECK (length(callback_url) <= 2000),
      opened_at timestamptz NOT NULL DEFAULT now(),
      open_until timestamptz NOT NULL,
      trips integer NOT NULL DEFAULT 1 CHECK (trips >= 1),
      last_error text NULL CHECK (length(last_error) <= 2000)
    );
  `);
}
