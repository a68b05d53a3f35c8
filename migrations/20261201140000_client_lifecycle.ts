// TPP clients for their whole life (issue 14): signing keys by reference (`jwks_uri`, e.g. the
// directory's keystore URL) as an alternative to a stored JWK Set, a `deleted` status that keeps
// the row (events, deliveries and push attempts still name the client: the audit trail), and a
// resolution for the SETs a deletion discards.
import type { Knex } from 'knex';

export const name = '20261201140000_client_lifecycle';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE clients
      ADD COLUMN jwks_uri text NULL
        CHECK (jwks_uri IS NULL OR (jwks_uri LIKE 'https://%' AND length(jwks_uri) <= 2000)),
      ADD COLUMN updated_at timestamptz NULL,
      ADD COLUMN deleted_at timestamptz NULL,
      ALTER COLUMN jwks DROP NOT NULL,
      ADD CONSTRAINT clients_one_key_source CHECK ((jwks IS NULL) <> (jwks_uri IS NULL)),
      DROP CONSTRAINT clients_status_check,
      ADD CONSTRAINT clients_status_check CHECK (status IN ('active', 'revoked', 'deleted'));
    COMMENT ON COLUMN clients.jwks IS 'Public JWK Set verifying the client assertions and x-jws-signature of this TPP; NULL when jwks_uri is set.';
    COMMENT ON COLUMN clients.jwks_uri IS 'HTTPS URL of the TPP''s public JWK Set (fetched with the callback address policy, cached, refetched on an unknown kid); NULL when jwks is set.';
    COMMENT ON COLUMN clients.status IS 'active; revoked (no tokens, its tokens stop working); deleted (as revoked, and its subscription and pending SETs are gone). A revoked or deleted id can be added again.';
    COMMENT ON COLUMN clients.updated_at IS 'When the registration was last changed (update, or added again).';
    COMMENT ON COLUMN clients.deleted_at IS 'When the client was deleted, if it is.';

    ALTER TABLE event_deliveries
      DROP CONSTRAINT event_deliveries_resolution_check,
      ADD CONSTRAINT event_deliveries_resolution_check
        CHECK (resolution IN ('ack', 'set_err', 'push_accepted', 'push_rejected', 'subscription_deleted', 'client_deleted'));
    COMMENT ON COLUMN event_deliveries.resolution IS 'How it left pending: ack, set_err, push_accepted, push_rejected, subscription_deleted, client_deleted.';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    UPDATE event_deliveries SET resolution = 'subscription_deleted' WHERE resolution = 'client_deleted';
    ALTER TABLE event_deliveries
      DROP CONSTRAINT event_deliveries_resolution_check,
      ADD CONSTRAINT event_deliveries_resolution_check
        CHECK (resolution IN ('ack', 'set_err', 'push_accepted', 'push_rejected', 'subscription_deleted'));
    UPDATE clients SET status = 'revoked' WHERE status = 'deleted';
    UPDATE clients SET jwks = '{"keys": []}'::jsonb, status = 'revoked' WHERE jwks IS NULL;
    ALTER TABLE clients
      DROP CONSTRAINT clients_status_check,
      ADD CONSTRAINT clients_status_check CHECK (status IN ('active', 'revoked')),
      DROP CONSTRAINT clients_one_key_source,
      ALTER COLUMN jwks SET NOT NULL,
      DROP COLUMN deleted_at,
      DROP COLUMN updated_at,
      DROP COLUMN jwks_uri;
  `);
}
