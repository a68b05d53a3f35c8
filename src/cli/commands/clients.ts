// `ob-events clients add|list|revoke`.
import type { Client } from '../../db/stores/clientsStore.js';
import { printJson, withServices } from '../context.js';
import { readJsonFile } from '../files.js';

export interface ClientsAddOptions {
  clientId: string;
  jwks: string;
  auth: string;
  tlsSubjectDn?: string;
  tlsCertThumbprint?: string[];
  scopes?: string[];
  name?: string;
  signingIss?: string;
}

export async function clientsAdd(o: ClientsAddOptions): Promise<void> {
  const jwks = readJsonFile(o.jwks);
  await withServices(async ({ clients }) => {
    const client = await clients.register({
      clientId: o.clientId,
      jwks,
      authMethod: o.auth,
      tlsSubjectDn: o.tlsSubjectDn,
      tlsCertThumbprints: o.tlsCertThumbprint,
      scopes: o.scopes,
      name: o.name,
      signingIss: o.signingIss,
    });
    printJson(view(client));
  });
}

export async function clientsList(): Promise<void> {
  await withServices(async ({ clients }) => printJson((await clients.list()).map(view)));
}

export async function clientsRevoke(id: string): Promise<void> {
  await withServices(async ({ clients }) => printJson(view(await clients.revoke(id))));
}

function view(c: Client) {
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
    revoked_at: c.revokedAt?.toISOString() ?? null,
    jwks: c.jwks,
  };
}
