// Security hardening (issue 12):
// - admin_request_macs: the HMACs of admin API requests already accepted, kept until their
//   timestamp leaves the tolerance window. The primary key makes "first use wins" atomic across
//   every replica sharing the database, so a captured request cannot be replayed on any of them.
// - signing_keys: a key that is no longer active only verifies, so its private half is erased
//   (from now on the store erases it when a key starts retiring).
import type { Knex } from 'knex';

export const name = '20261201122000_admin_replay_and_retired_keys';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE admin_request_macs (
      mac bytea PRIMARY KEY CHECK (length(mac) = 32),
      expires_at timestamptz NOT NULL
    );
    CREATE INDEX admin_request_macs_expires_at_idx ON admin_request_macs (expires_at);
    COMMENT ON TABLE admin_request_macs IS 'HMAC-SHA256 values of accepted admin API requests, until their timestamp is out of the tolerance window: the replay cache shared by every replica.';
    COMMENT ON COLUMN admin_request_macs.mac IS 'The 32-byte HMAC-SHA256 of the accepted request (x-ob-events-signature v1).';
    COMMENT ON COLUMN admin_request_macs.expires_at IS 'When the signed timestamp can no longer be accepted; rows past it are pruned.';
    ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_private_key_present;
    ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_private_key_present
      CHECK (source = 'file' OR status <> 'active' OR private_key IS NOT NULL);
    UPDATE signing_keys SET private_key = NULL WHERE status <> 'active' AND private_key IS NOT NULL;
  `);
}

export async function down(knex: Knex): Promise<void> {
  // Erased private keys of retired keys cannot come back (nor should they).
  await knex.raw(`
    DROP TABLE admin_request_macs;
    ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_private_key_present;
    ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_private_key_present
      CHECK (source = 'file' OR private_key IS NOT NULL) NOT VALID;
  `);
}
