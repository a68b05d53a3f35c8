// A client's transport identity: besides its certificate subject DN (tls_subject_dn, until now
// only for tls_client_auth), optionally the SHA-256 thumbprints (x5t#S256) of the certificates it
// may use. /token refuses a request over any other certificate, for both auth methods. Existing
// rows keep their DN (or none) and get no pinned thumbprints: a private_key_jwt client without a
// DN is served only in development mode (README, "Client authentication at /token").
import type { Knex } from 'knex';

export const name = '20261201120000_client_transport_identity';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE clients
      ADD COLUMN tls_cert_thumbprints text[] NOT NULL DEFAULT '{}'
        CONSTRAINT clients_tls_cert_thumbprints_shape CHECK (
          cardinality(tls_cert_thumbprints) <= 20
          AND array_to_string(tls_cert_thumbprints, ',') ~ '^([A-Za-z0-9_-]{43}(,|$))*$'
        );
    COMMENT ON COLUMN clients.tls_cert_thumbprints IS 'Pinned transport certificates: base64url SHA-256 of the DER (x5t#S256); empty means any certificate with the registered subject DN.';
    COMMENT ON COLUMN clients.tls_subject_dn IS 'RFC 4514 subject DN of the TPP transport certificate, compared as a parsed DN (RFC 4517 distinguishedNameMatch); required for tls_client_auth, and outside development mode for every client without pinned thumbprints.';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE clients DROP COLUMN tls_cert_thumbprints;
    COMMENT ON COLUMN clients.tls_subject_dn IS 'RFC 4514 subject DN of the TPP transport certificate (tls_client_auth), compared as a parsed DN.';
  `);
}
