// Operating the server: the poll hand-outs of each SET (beside push_attempts, the delivery
// history), an audit trail of what operators did (replay, dead-letter retry and purge, key
// rotation), the console's server-side sessions, `purged` as a way out of the dead letters, and
// an index for a TPP's SETs by time.
import type { Knex } from 'knex';

export const name = '20261201151000_operations';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE poll_handouts (
      id bigint GENERATED ALWAYS AS IDENTITY,
      jti uuid NOT NULL REFERENCES events (jti) ON DELETE CASCADE,
      client_id text NOT NULL,
      handed_out_at timestamptz NOT NULL DEFAULT now(),
      lease_until timestamptz NOT NULL,
      replica text NOT NULL CHECK (length(replica) <= 200),
      PRIMARY KEY (jti, id)
    );
    CREATE INDEX poll_handouts_client_idx ON poll_handouts (client_id, handed_out_at);
    COMMENT ON TABLE poll_handouts IS 'Each time a poll response carried a SET (the first few per SET: see HISTORY_MAX_PER_SET), kept as long as the SET (ON DELETE CASCADE).';
    COMMENT ON COLUMN poll_handouts.id IS 'Insertion order; with jti the primary key, so hand-outs of one SET are listed in order.';
    COMMENT ON COLUMN poll_handouts.jti IS 'The SET handed out (events.jti).';
    COMMENT ON COLUMN poll_handouts.client_id IS 'The TPP that polled (copy of events.client_id, for the per-TPP history).';
    COMMENT ON COLUMN poll_handouts.handed_out_at IS 'When the poll response was built.';
    COMMENT ON COLUMN poll_handouts.lease_until IS 'The SET was held back from other polls and pushes until then.';
    COMMENT ON COLUMN poll_handouts.replica IS 'Which server answered the poll (host:pid).';

    CREATE TABLE operator_audit (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      actor text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
      via text NOT NULL CHECK (via IN ('cli', 'admin_api', 'console')),
      action text NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
      client_id text NULL,
      jti uuid NULL,
      detail jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE INDEX operator_audit_at_idx ON operator_audit (at);
    CREATE INDEX operator_audit_client_idx ON operator_audit (client_id, at) WHERE client_id IS NOT NULL;
    COMMENT ON TABLE operator_audit IS 'Who did what, when, to which SET or TPP: replays, dead-letter retries and purges, key rotations, console log-ins. Never deleted by retention.';
    COMMENT ON COLUMN operator_audit.id IS 'Insertion order.';
    COMMENT ON COLUMN operator_audit.at IS 'When the action was taken.';
    COMMENT ON COLUMN operator_audit.actor IS 'Who: the console operator''s name, the CLI''s OS user, or the admin API caller (its signed actor member, else admin-api).';
    COMMENT ON COLUMN operator_audit.via IS 'cli, admin_api or console.';
    COMMENT ON COLUMN operator_audit.action IS 'replay, replay_since, dead_letter_retry, dead_letter_purge, keys_rotate, console_login, console_login_failed.';
    COMMENT ON COLUMN operator_audit.client_id IS 'The TPP concerned, if any.';
    COMMENT ON COLUMN operator_audit.jti IS 'The SET concerned, if one.';
    COMMENT ON COLUMN operator_audit.detail IS 'What came of it (counts, previous state, time T of a replay).';

    CREATE TABLE operator_sessions (
      token_hash text PRIMARY KEY CHECK (length(token_hash) = 64),
      operator text NOT NULL CHECK (length(operator) BETWEEN 1 AND 200),
      csrf_token text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 128),
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL
    );
    CREATE INDEX operator_sessions_expires_at_idx ON operator_sessions (expires_at);
    COMMENT ON TABLE operator_sessions IS 'Console sessions (any replica can serve an operator); the cookie holds a random token, only its SHA-256 is stored.';
    COMMENT ON COLUMN operator_sessions.token_hash IS 'Hex SHA-256 of the session cookie value.';
    COMMENT ON COLUMN operator_sessions.operator IS 'The name the operator logged in with (recorded as actor in operator_audit).';
    COMMENT ON COLUMN operator_sessions.csrf_token IS 'Synchronizer token every console form must send back.';
    COMMENT ON COLUMN operator_sessions.created_at IS 'When the operator logged in.';
    COMMENT ON COLUMN operator_sessions.expires_at IS 'The session ends then (or at log-out, which deletes the row).';

    -- A TPP's SETs by time (jti is a UUIDv7): its history, its deliveries page, replay since T.
    CREATE INDEX events_client_jti_idx ON events (client_id, jti);

    ALTER TABLE event_deliveries DROP CONSTRAINT event_deliveries_resolution_check;
    ALTER TABLE event_deliveries ADD CONSTRAINT event_deliveries_resolution_check
      CHECK (resolution IN ('ack', 'set_err', 'push_accepted', 'push_rejected', 'subscription_deleted', 'client_deleted', 'purged'));
    ALTER TABLE event_deliveries ADD COLUMN replays integer NOT NULL DEFAULT 0;
    COMMENT ON COLUMN event_deliveries.replays IS 'How many times an operator made the SET pending again after it was resolved (replay).';
    COMMENT ON COLUMN event_deliveries.resolution IS 'How it left pending: ack, set_err, push_accepted, push_rejected, subscription_deleted, client_deleted, purged (an operator removed it from the dead letters).';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    UPDATE event_deliveries SET resolution = 'subscription_deleted' WHERE resolution = 'purged';
    ALTER TABLE event_deliveries DROP COLUMN replays;
    ALTER TABLE event_deliveries DROP CONSTRAINT event_deliveries_resolution_check;
    ALTER TABLE event_deliveries ADD CONSTRAINT event_deliveries_resolution_check
      CHECK (resolution IN ('ack', 'set_err', 'push_accepted', 'push_rejected', 'subscription_deleted', 'client_deleted'));
    DROP INDEX events_client_jti_idx;
    DROP TABLE operator_sessions;
    DROP TABLE operator_audit;
    DROP TABLE poll_handouts;
  `);
}
