// How a client is shown to operators: `ob-events clients …` and the admin API print the same JSON.
import type { Client } from '../db/stores/clientsStore.js';

/** A client as the CLI and the admin API show it (snake_case, RFC 7591 names where one exists). */
export function clientView(c: Client) {
  return {
    client_id: c.clientId,
    name: c.name,
    token_endpoint_auth_method: c.authMethod,
    tls_client_auth_subject_dn: c.tlsSubjectDn,
    tls_cert_thumbprints: c.tlsCertThumbprints,
    scopes: c.scopes,
    signing_iss: c.signingIss,
    status: c.status,
    created_at: c.createdAt.toISOString(),
    updated_at: c.updatedAt?.toISOString() ?? null,
    revoked_at: c.revokedAt?.toISOString() ?? null,
    deleted_at: c.deletedAt?.toISOString() ?? null,
    ...(c.jwksUri !== null ? { jwks_uri: c.jwksUri } : { jwks: c.jwks }),
  };
}
