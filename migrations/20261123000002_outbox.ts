// The transactional outbox: the bank's own code inserts an event in its own transaction; the
// outbox worker publishes it. A statement-level trigger wakes the worker on commit.
import type { Knex } from 'knex';

export const name = '20261123000002_outbox';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE event_outbox (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      event jsonb NOT NULL,
      state text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'done', 'skipped', 'failed')),
      result_jti uuid NULL,
      error text NULL,
      attempts integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      processed_at timestamptz NULL
    );
    CREATE INDEX event_outbox_new_idx ON event_outbox (id) WHERE state = 'new';
    CREATE INDEX event_outbox_processed_at_idx ON event_outbox (processed_at) WHERE state IN ('done', 'skipped');
    COMMENT ON TABLE event_outbox IS 'Events written by the bank''s systems in their own transactions, published by the outbox worker.';
    COMMENT ON COLUMN event_outbox.id IS 'Insertion order; rows are published in this order.';
    COMMENT ON COLUMN event_outbox.event IS 'The event exactly as the admin API takes it: {"clientId","type","subject":{"id","type","links"},...} (README).';
    COMMENT ON COLUMN event_outbox.state IS 'new (waiting), done (published or a duplicate), skipped (nobody subscribed), failed (cannot be published; see error).';
    COMMENT ON COLUMN event_outbox.result_jti IS 'The SET jti created for the row (or the first one, for a duplicate idempotency key).';
    COMMENT ON COLUMN event_outbox.error IS 'Why the row was skipped or failed.';
    COMMENT ON COLUMN event_outbox.attempts IS 'Publishing attempts that ended in an unexpected error; the row fails after a few.';
    COMMENT ON COLUMN event_outbox.created_at IS 'When the bank''s transaction inserted the row.';
    COMMENT ON COLUMN event_outbox.processed_at IS 'When the worker finished with the row.';

    CREATE FUNCTION event_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('ob_events_outbox', '');
      RETURN NULL;
    END $$;
    COMMENT ON FUNCTION event_outbox_notify() IS 'Wakes the outbox worker when the inserting transaction commits.';
    CREATE TRIGGER event_outbox_inserted AFTER INSERT ON event_outbox
      FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_notify();
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE event_outbox;
    DROP FUNCTION event_outbox_notify();
  `);
}
