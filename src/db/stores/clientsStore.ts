// Rows of clients (registered TPPs).
import type { Knex } from 'knex';
import type { JSONWebKeySet } from 'jose';

export const CLIENTS = 'clients';

export type AuthMethod = 'private_key_jwt' | 'tls_client_auth';

interface ClientRow {
  client_id: string;
  name: string;
  auth_method: AuthMethod;
  jwks: JSONWebKeySet | null;
  tls_subject_dn: string | null;
  tls_cert_thumbprints: string[];
  scopes: string[];
  signing_iss: string;
  status: ClientStatus;
  created_at: Date;
  revoked_at: Date | null;
  jwks_uri: string | null;
  updated_at: Date | null;
  deleted_at: Date | null;
}

export type ClientStatus = 'active' | 'revoked' | 'deleted';

export interface Client {
  clientId: string;
  name: string;
  authMethod: AuthMethod;
  /**
   * The keys verifying its assertions and request signatures. With `jwksUri` set, the store
   * holds none (`{keys: []}`) and Clients.findActive fills in the fetched set.
   */
  jwks: JSONWebKeySet;
  tlsSubjectDn: string | null;
  /** Pinned transport certificates (x5t#S256); empty: any certificate with the subject DN. */
  tlsCertThumbprints: string[];
  scopes: string[];
  signingIss: string;
  status: ClientStatus;
  createdAt: Date;
  revokedAt: Date | null;
  /** Where its JWK Set is fetched from, instead of a stored `jwks`. */
  jwksUri: string | null;
  updatedAt: Date | null;
  deletedAt: Date | null;
}

export type NewClient = Omit<
  Client,
  'status' | 'createdAt' | 'revokedAt' | 'updatedAt' | 'deletedAt'
>;

function toClient(r: ClientRow): Client {
  return {
    clientId: r.client_id,
    name: r.name,
    authMethod: r.auth_method,
    jwks: r.jwks ?? { keys: [] },
    tlsSubjectDn: r.tls_subject_dn,
    tlsCertThumbprints: r.tls_cert_thumbprints,
    scopes: r.scopes,
    signingIss: r.signing_iss,
    status: r.status,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
    jwksUri: r.jwks_uri,
    updatedAt: r.updated_at,
    deletedAt: r.deleted_at,
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
        ...registrationColumns(c),
      })
      .onConflict('client_id')
      .ignore()
      .returning('*');
    const row = rows[0];
    return row ? toClient(row) : undefined;
  }

  /**
   * Registers the client, or registers a revoked or deleted one again (a fresh registration:
   * active, with exactly the given settings). Undefined when an active client has the id.
   */
  async insertOrReactivate(c: NewClient): Promise<Client | undefined> {
    const columns = registrationColumns(c);
    const rows = await this.knex<ClientRow>(CLIENTS)
      .insert({ client_id: c.clientId, ...columns })
      .onConflict('client_id')
      .merge({
        ...columns,
        status: 'active',
        revoked_at: null,
        deleted_at: null,
        updated_at: this.knex.fn.now() as unknown as Date,
      })
      .where(`${CLIENTS}.status`, '<>', 'active')
      .returning('*');
    const row = rows[0];
    return row ? toClient(row) : undefined;
  }

  /** Replaces the registration of a client that is not deleted; undefined when there is none. */
  async update(c: NewClient): Promise<Client | undefined> {
    const rows = await this.knex<ClientRow>(CLIENTS)
      .where({ client_id: c.clientId })
      .whereNot({ status: 'deleted' })
      .update({ ...registrationColumns(c), updated_at: this.knex.fn.now() as unknown as Date })
      .returning('*');
    const row = rows[0];
    return row ? toClient(row) : undefined;
  }

  /** Marks the client deleted (the row stays: events and deliveries name it); undefined if none. */
  async markDeleted(clientId: string): Promise<Client | undefined> {
    const rows = await this.knex<ClientRow>(CLIENTS)
      .where({ client_id: clientId })
      .whereNot({ status: 'deleted' })
      .update({
        status: 'deleted',
        deleted_at: this.knex.fn.now() as unknown as Date,
        revoked_at: this.knex.raw('coalesce(revoked_at, now())') as unknown as Date,
      })
      .returning('*');
    const row = rows[0];
    return row ? toClient(row) : undefined;
  }

  async find(clientId: string): Promise<Client | undefined> {
    const row = await this.knex<ClientRow>(CLIENTS).where({ client_id: clientId }).first();
    return row ? toClient(row) : undefined;
  }

  /** Every client but the deleted ones. */
  async list(): Promise<Client[]> {
    const rows = await this.knex<ClientRow>(CLIENTS)
      .select('*')
      .whereNot({ status: 'deleted' })
      .orderBy('client_id');
    return rows.map(toClient);
  }

  /** Marks the client revoked; returns it, or undefined when there is no such client. */
  async revoke(clientId: string): Promise<Client | undefined> {
    const rows = await this.knex<ClientRow>(CLIENTS)
      .where({ client_id: clientId })
      .whereNot({ status: 'deleted' })
      .update({
        status: 'revoked',
        revoked_at: this.knex.raw('coalesce(revoked_at, now())') as unknown as Date,
      })
      .returning('*');
    const row = rows[0];
    return row ? toClient(row) : undefined;
  }
}

function registrationColumns(c: NewClient) {
  return {
    name: c.name,
    auth_method: c.authMethod,
    // A client's keys come from one place: the stored set or the URL.
    jwks: c.jwksUri === null ? (JSON.stringify(c.jwks) as unknown as JSONWebKeySet) : null,
    jwks_uri: c.jwksUri,
    tls_subject_dn: c.tlsSubjectDn,
    tls_cert_thumbprints: c.tlsCertThumbprints,
    scopes: c.scopes,
    signing_iss: c.signingIss,
  };
}
