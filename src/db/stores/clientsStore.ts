// Rows of clients (registered TPPs).
import type { Knex } from 'knex';
import type { JSONWebKeySet } from 'jose';

export const CLIENTS = 'clients';

export type AuthMethod = 'private_key_jwt' | 'tls_client_auth';

interface ClientRow {
  client_id: string;
  name: string;
  auth_method: AuthMethod;
  jwks: JSONWebKeySet;
  tls_subject_dn: string | null;
  tls_cert_thumbprints: string[];
  scopes: string[];
  signing_iss: string;
  status: 'active' | 'revoked';
  created_at: Date;
  revoked_at: Date | null;
}

export interface Client {
  clientId: string;
  name: string;
  authMethod: AuthMethod;
  jwks: JSONWebKeySet;
  tlsSubjectDn: string | null;
  /** Pinned transport certificates (x5t#S256); empty: any certificate with the subject DN. */
  tlsCertThumbprints: string[];
  scopes: string[];
  signingIss: string;
  status: 'active' | 'revoked';
  createdAt: Date;
  revokedAt: Date | null;
}

export type NewClient = Omit<Client, 'status' | 'createdAt' | 'revokedAt'>;

function toClient(r: ClientRow): Client {
  return {
    clientId: r.client_id,
    name: r.name,
    authMethod: r.auth_method,
    jwks: r.jwks,
    tlsSubjectDn: r.tls_subject_dn,
    tlsCertThumbprints: r.tls_cert_thumbprints,
    scopes: r.scopes,
    signingIss: r.signing_iss,
    status: r.status,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

export class ClientsStore {
  private constructor(private readonly knex: Knex) {}

  static create(knex: Knex): ClientsStore {
    return new ClientsStore(knex);
  }

  /** The same store, running its statements in `trx`. */
  in(trx: Knex.Transaction): ClientsStore {
    return new ClientsStore(trx);
  }

  /** Inserts the client; returns undefined when the client_id is taken. */
  async insert(c: NewClient): Promise<Client | undefined> {
    const rows = await this.knex<ClientRow>(CLIENTS)
      .insert({
        client_id: c.clientId,
        name: c.name,
        auth_method: c.authMethod,
        jwks: JSON.stringify(c.jwks) as unknown as JSONWebKeySet,
        tls_subject_dn: c.tlsSubjectDn,
        tls_cert_thumbprints: c.tlsCertThumbprints,
        scopes: c.scopes,
        signing_iss: c.signingIss,
      })
      .onConflict('client_id')
      .ignore()
      .returning('*');
    const row = rows[0];
    return row ? toClient(row) : undefined;
  }

  async find(clientId: string): Promise<Client | undefined> {
    const row = await this.knex<ClientRow>(CLIENTS).where({ client_id: clientId }).first();
    return row ? toClient(row) : undefined;
  }

  async list(): Promise<Client[]> {
    const rows = await this.knex<ClientRow>(CLIENTS).select('*').orderBy('client_id');
    return rows.map(toClient);
  }

  /** Marks the client revoked; returns it, or undefined when there is no such client. */
  async revoke(clientId: string): Promise<Client | undefined> {
    const rows = await this.knex<ClientRow>(CLIENTS)
      .where({ client_id: clientId })
      .update({
        status: 'revoked',
        revoked_at: this.knex.raw('coalesce(revoked_at, now())') as unknown as Date,
      })
      .returning('*');
    const row = rows[0];
    return row ? toClient(row) : undefined;
  }
}
