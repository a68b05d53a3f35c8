// Real-time push: one row per delivery attempt (what operators look at when a TPP says it got
// nothing), the open circuit breakers shared by every replica, and the push-due index reshaped
// for the per-client claim (src/db/stores/pushStore.ts): the claim walks each subscribed
// client's due SETs in (push_next_at, jti) order, so the index leads with client_id (a client
// with a deep backlog costs the others nothing).
import type { Knex } from 'knex';

export const name = '20261123000003_push';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE push_attempts (
      id bigint GENERATED ALWAYS AS IDENTITY,
      jti uuid NOT NULL REFERENCES events (jti) ON DELETE CASCADE,
      attempt integer NOT NULL CHECK (attempt >= 1),
      attempted_at timestamptz NOT NULL,
      worker text NOT NULL CHECK (length(worker) <= 200),
      callback_url text NOT NULL CHECK (length(callback_url) <= 2000),
      interaction_id uuid NOT NULL,
      status_code integer NULL CHECK (status_code BETWEEN 100 AND 999),
      latency_ms integer NOT NULL CHECK (latency_ms >= 0),
      outcome text NOT NULL CHECK (outcome IN ('accepted', 'rejected', 'retry', 'failed')),
      error text NULL CHECK (length(error) <= 2000),
      -- One index serves a SET's attempts in order and the cascade from events.
      PRIMARY KEY (jti, id)
    );
    COMMENT ON TABLE push_attempts IS 'Every push attempt of a SET to its TPP''s CallbackUrl, kept as long as the SET (ON DELETE CASCADE).';
    COMMENT ON COLUMN push_attempts.id IS 'Insertion order; with jti the primary key, so attempts of one SET are listed in order.';
    COMMENT ON COLUMN push_attempts.jti IS 'The SET pushed (events.jti).';
    COMMENT ON COLUMN push_attempts.attempt IS 'Attempt number for the SET, counted from 1 again after an operator retry.';
    COMMENT ON COLUMN push_attempts.attempted_at IS 'When the request started.';
    COMMENT ON COLUMN push_attempts.worker IS 'Which push worker made the attempt (host:pid:instance).';
    COMMENT ON COLUMN push_attempts.callback_url IS 'The CallbackUrl the SET was POSTed to (the subscription may change later).';
    COMMENT ON COLUMN push_attempts.interaction_id IS 'x-fapi-interaction-id sent with the attempt (new for every attempt).';
    COMMENT ON COLUMN push_attempts.status_code IS 'HTTP status answered by the TPP; NULL for time-outs, refused addresses and connection errors.';
    COMMENT ON COLUMN push_attempts.latency_ms IS 'From the start of the request to the end of the (bounded) response body or the error.';
    COMMENT ON COLUMN push_attempts.outcome IS 'accepted (202), rejected (400), retry (scheduled again), failed (retryable, but attempts or age exhausted).';
    COMMENT ON COLUMN push_attempts.error IS 'Why the attempt did not succeed: error code and message, or the start of the TPP''s response body.';

    CREATE TABLE push_breakers (
      client_id text PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
      callback_url text NOT NULL CHECK (length(callback_url) <= 2000),
      opened_at timestamptz NOT NULL DEFAULT now(),
      open_until timestamptz NOT NULL,
      trips integer NOT NULL DEFAULT 1 CHECK (trips >= 1),
      last_error text NULL CHECK (length(last_error) <= 2000)
    );
    COMMENT ON TABLE push_breakers IS 'Open circuit breakers: a callback endpoint that failed repeatedly is backed off by every replica until open_until, then probed with one SET (half-open); no row means closed.';
    COMMENT ON COLUMN push_breakers.client_id IS 'The TPP whose endpoint is backed off.';
    COMMENT ON COLUMN push_breakers.callback_url IS 'The CallbackUrl that failed; a subscription with another URL is not held back by this row.';
    COMMENT ON COLUMN push_breakers.opened_at IS 'When the breaker first opened in this run of failures.';
    COMMENT ON COLUMN push_breakers.open_until IS 'No push to the endpoint before then; afterwards one probe (half-open), which moves it on while in flight.';
    COMMENT ON COLUMN push_breakers.trips IS 'How many times it opened in a row (1 + failed probes).';
    COMMENT ON COLUMN push_breakers.last_error IS 'The failure that opened it last.';

    DROP INDEX event_deliveries_push_due_idx;
    CREATE INDEX event_deliveries_push_due_idx ON event_deliveries (client_id, push_next_at, jti)
      WHERE state = 'pending' AND push_state = 'due';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE push_breakers;
    DROP TABLE push_attempts;
    DROP INDEX event_deliveries_push_due_idx;
    CREATE INDEX event_deliveries_push_due_idx ON event_deliveries (push_next_at)
      WHERE state = 'pending' AND push_state = 'due';
  `);
}
