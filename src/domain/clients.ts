// TPP clients: registration rules, revocation, and the cached lookup every request makes.
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { importJWK, type JSONWebKeySet, type JWK } from 'jose';
import type { Clock } from '../clock.js';
import { DnSyntaxError, formatDn, parseDn } from '../crypto/distinguishedName.js';
import { CHANNELS, notify, type Notifier } from '../db/notifier.js';
import type { AuthMethod, Client, ClientsStore, NewClient } from '../db/stores/clientsStore.js';
import { AppError, invalid } from '../errors.js';
import type { Logger } from '../logger.js';
import { ReadThroughCache } from './readThroughCache.js';
import type { RemoteJwks } from '../net/remoteJwks.js';
import type { Knex } from 'knex';

export const KNOWN_SCOPES = ['accounts', 'payments', 'fundsconfirmations', 'eventpolling'] as const;
export const DEFAULT_SCOPES = ['accounts', 'payments', 'fundsconfirmations'];
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const KEY_ALGS = ['PS256', 'ES256'];

/** How long a client lookup may be served from memory: revocation reaches every replica within it. */
const CLIENT_CACHE_MS = 1_000;

export interface ClientRegistration {
  clientId: string;
  name?: string | undefined;
  authMethod?: string | undefined;
  /** The TPP's public JWK Set; or give `jwksUri`. */
  jwks?: unknown;
  /** HTTPS URL of the TPP's public JWK Set (fetched, cached, refetched on an unknown kid). */
  jwksUri?: string | undefined;
  tlsSubjectDn?: string | undefined;
  /** Pinned transport certificates: x5t#S256 (base64url) or SHA-256 hex, colons allowed. */
  tlsCertThumbprints?: string[] | undefined;
  scopes?: string[] | undefined;
  signingIss?: string | undefined;
}

export interface RegistrationPolicy {
  /** Outside development mode every client needs a transport identity (DN or thumbprints). */
  requireTransportIdentity: boolean;
  /** MAX_CLIENT_JWKS_KEYS: each kid-less assertion may have to try every key. */
  maxJwksKeys: number;
}

export const DEFAULT_REGISTRATION_POLICY: RegistrationPolicy = {
  requireTransportIdentity: false,
  maxJwksKeys: 20,
};

/** What `clients update` changes; absent members stay. `tlsSubjectDn: null` removes the DN. */
export interface ClientChanges {
  name?: string | undefined;
  authMethod?: string | undefined;
  jwks?: unknown;
  jwksUri?: string | undefined;
  tlsSubjectDn?: string | null | undefined;
  /** Pinned transport certificates (x5t#S256 or SHA-256 hex); `[]` removes every pin. */
  tlsCertThumbprints?: string[] | undefined;
  scopes?: string[] | undefined;
  signingIss?: string | undefined;
}

export interface ClientsDeps {
  store: ClientsStore;
  knex: Knex;
  clock: Clock;
  policy?: RegistrationPolicy;
  /** Fetches the keys of clients registered with a jwks_uri; without it, jwks_uri is refused. */
  remoteJwks?: RemoteJwks | undefined;
  logger?: Logger | undefined;
}

const MAX_THUMBPRINTS = 20;

export class Clients {
  private readonly cache: ReadThroughCache<Client | undefined>;

  constructor(private readonly deps: ClientsDeps) {
    // 10,000 entries: bounds memory under a flood of unknown ids.
    this.cache = new ReadThroughCache({
      ttlMs: CLIENT_CACHE_MS,
      maxEntries: 10_000,
      now: () => deps.clock.now(),
    });
  }

  private get policy(): RegistrationPolicy {
    return this.deps.policy ?? DEFAULT_REGISTRATION_POLICY;
  }

  /** Invalidate cached entries when any replica changes a client. */
  async watch(notifier: Notifier): Promise<void> {
    await notifier.listen(CHANNELS.config, (payload) => {
      if (payload.startsWith('client:')) this.cache.forget(payload.slice('client:'.length));
    });
    notifier.onResync(() => this.cache.clear());
  }

  /** Registers a new client, or a revoked or deleted one again (with exactly these settings). */
  async register(input: ClientRegistration): Promise<Client> {
    const client = await validateRegistration(input, this.policy, this.deps.remoteJwks);
    const created = await this.deps.knex.transaction(async (trx) => {
      const row = await this.deps.store.in(trx).insertOrReactivate(client);
      if (row) await notify(trx, CHANNELS.config, `client:${client.clientId}`);
      return row;
    });
    if (!created) {
      throw new AppError(
        'conflict',
        `client ${client.clientId} is already registered and active: change it with update`,
      );
    }
    this.cache.forget(client.clientId);
    return created;
  }

  list(): Promise<Client[]> {
    return this.deps.store.list();
  }

  /** One client, whatever its status (deleted ones too: their row is the audit trail). */
  async show(clientId: string): Promise<Client> {
    const client = await this.deps.store.find(clientId);
    if (!client) throw new AppError('not_found', `no client ${clientId}`);
    return client;
  }

  /** Changes a client that is not deleted; the new settings apply on every replica within 2 s. */
  async update(clientId: string, changes: ClientChanges): Promise<Client> {
    const current = await this.deps.store.find(clientId);
    if (!current || current.status === 'deleted') {
      throw new AppError('not_found', `no client ${clientId}`);
    }
    if (changes.jwks !== undefined && changes.jwksUri !== undefined) {
      throw invalid('UK.OBIE.Field.Invalid', 'give jwks or jwks_uri, not both', 'jwks_uri');
    }
    const keys =
      changes.jwks !== undefined
        ? { jwks: changes.jwks }
        : changes.jwksUri !== undefined
          ? { jwksUri: changes.jwksUri }
          : current.jwksUri !== null
            ? { jwksUri: current.jwksUri }
            : { jwks: current.jwks };
    const dn = changes.tlsSubjectDn === undefined ? current.tlsSubjectDn : changes.tlsSubjectDn;
    const client = await validateRegistration(
      {
        clientId,
        name: changes.name ?? current.name,
        authMethod: changes.authMethod ?? current.authMethod,
        ...keys,
        tlsSubjectDn: dn ?? undefined,
        tlsCertThumbprints: changes.tlsCertThumbprints ?? current.tlsCertThumbprints,
        scopes: changes.scopes ?? current.scopes,
        signingIss: changes.signingIss ?? current.signingIss,
      },
      this.policy,
      this.deps.remoteJwks,
    );
    const updated = await this.deps.knex.transaction(async (trx) => {
      const row = await this.deps.store.in(trx).update(client);
      if (row) await notify(trx, CHANNELS.config, `client:${clientId}`);
      return row;
    });
    if (!updated) throw new AppError('not_found', `no client ${clientId}`);
    this.cache.forget(clientId);
    return updated;
  }

  /**
   * Deletes a client: its tokens stop working on every replica within 2 s (as for revoke), its
   * subscription goes and its pending SETs are discarded, in one transaction. The row stays,
   * marked deleted, because its events, deliveries and push attempts name it (the audit trail,
   * removed by retention as usual); the id can be registered again.
   */
  async delete(clientId: string): Promise<{ client: Client; discardedSets: number }> {
    const result = await this.deps.knex.transaction(async (trx) => {
      const client = await this.deps.store.in(trx).markDeleted(clientId);
      if (!client) return undefined;
      await trx('event_subscriptions').where({ client_id: clientId }).delete();
      await trx('push_breakers').where({ client_id: clientId }).delete();
      const discarded = await trx.raw<{ rowCount: number }>(
        `UPDATE event_deliveries
            SET state = 'discarded', resolved_at = now(), resolution = 'client_deleted',
                leased_until = NULL
          WHERE client_id = :clientId AND state = 'pending'`,
        { clientId },
      );
      await notify(trx, CHANNELS.config, `client:${clientId}`);
      // Replicas caching the subscription (publishing, push) drop it (src/domain/subscriptions.ts).
      await notify(trx, CHANNELS.config, `subscription:${clientId}`);
      return { client, discardedSets: discarded.rowCount };
    });
    if (!result) throw new AppError('not_found', `no client ${clientId}`);
    this.cache.forget(clientId);
    return result;
  }

  async revoke(clientId: string): Promise<Client> {
    const client = await this.deps.knex.transaction(async (trx) => {
      const revoked = await this.deps.store.in(trx).revoke(clientId);
      await notify(trx, CHANNELS.config, `client:${clientId}`);
      return revoked;
    });
    if (!client) throw new AppError('not_found', `no client ${clientId}`);
    this.cache.forget(clientId);
    return client;
  }

  /**
   * The client if it exists and is active; cached for at most a second. For a client with a
   * jwks_uri, `jwks` is its fetched set (cached; fetched again when `kid` is not in it).
   */
  async findActive(clientId: string, kid?: string): Promise<Client | undefined> {
    const client = await this.findActiveRecord(clientId);
    if (!client || client.jwksUri === null) return client;
    return { ...client, jwks: await this.remoteKeys(client.jwksUri, kid) };
  }

  /** Whether the id was ever registered (a refusal can then say "revoked" rather than "unknown"). */
  async statusOf(clientId: string): Promise<Client['status'] | undefined> {
    if (!CLIENT_ID.test(clientId)) return undefined;
    return (await this.deps.store.find(clientId))?.status;
  }

  private async findActiveRecord(clientId: string): Promise<Client | undefined> {
    // An id outside the registration grammar cannot exist: no query (and no NUL byte, lone
    // surrogate or 15,000-character id ever reaches Postgres or the cache).
    if (!CLIENT_ID.test(clientId)) return undefined;
    return this.cache.get(clientId, async () => {
      const found = await this.deps.store.find(clientId);
      return found?.status === 'active' ? found : undefined;
    });
  }

  /** An unreachable jwks_uri leaves the client without keys: its signatures fail, clearly logged. */
  private async remoteKeys(uri: string, kid: string | undefined) {
    if (!this.deps.remoteJwks) return { keys: [] };
    try {
      return await this.deps.remoteJwks.keys(uri, kid);
    } catch (err) {
      this.deps.logger?.warn({ jwksUri: uri, err: (err as Error).message }, 'jwks_uri unusable');
      return { keys: [] };
    }
  }
}

/** Active clients without any transport identity (production start-up names them). */
export function withoutTransportIdentity(clients: Client[]): Client[] {
  return clients.filter(
    (c) => c.status === 'active' && c.tlsSubjectDn === null && c.tlsCertThumbprints.length === 0,
  );
}

async function validateRegistration(
  input: ClientRegistration,
  policy: RegistrationPolicy,
  remoteJwks: RemoteJwks | undefined,
): Promise<NewClient> {
  if (!CLIENT_ID.test(input.clientId)) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      'client id must be 1-128 characters of A-Z a-z 0-9 . _ : -',
      'client_id',
    );
  }
  const authMethod = (input.authMethod ?? 'private_key_jwt') as AuthMethod;
  if (authMethod !== 'private_key_jwt' && authMethod !== 'tls_client_auth') {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      'auth method must be private_key_jwt or tls_client_auth',
      'auth',
    );
  }
  let tlsSubjectDn: string | null = null;
  if (input.tlsSubjectDn !== undefined) {
    try {
      tlsSubjectDn = formatDn(parseDn(input.tlsSubjectDn));
    } catch (err) {
      if (err instanceof DnSyntaxError) {
        throw invalid('UK.OBIE.Field.Invalid', `TLS subject DN: ${err.message}`, 'tls_subject_dn');
      }
      throw err;
    }
  }
  if (authMethod === 'tls_client_auth' && tlsSubjectDn === null) {
    throw invalid(
      'UK.OBIE.Field.Missing',
      'tls_client_auth needs the TLS subject DN',
      'tls_subject_dn',
    );
  }
  const tlsCertThumbprints = validateThumbprints(input.tlsCertThumbprints ?? []);
  if (policy.requireTransportIdentity && tlsSubjectDn === null && tlsCertThumbprints.length === 0) {
    throw invalid(
      'UK.OBIE.Field.Missing',
      'a transport identity is required outside development mode: the TLS subject DN of the client certificate and/or its thumbprint',
      'tls_subject_dn',
    );
  }
  const scopes = input.scopes ?? DEFAULT_SCOPES;
  const unknown = scopes.filter((s) => !(KNOWN_SCOPES as readonly string[]).includes(s));
  if (scopes.length === 0 || unknown.length > 0) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      `scopes must be some of ${KNOWN_SCOPES.join(', ')}${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`,
      'scopes',
    );
  }
  const name = input.name ?? input.clientId;
  if (name.length < 1 || name.length > 200)
    throw invalid('UK.OBIE.Field.Invalid', 'name must be 1-200 characters', 'name');
  const signingIss = input.signingIss ?? input.clientId;
  if (signingIss.length < 1 || signingIss.length > 256) {
    throw invalid('UK.OBIE.Field.Invalid', 'signing iss must be 1-256 characters', 'signing_iss');
  }
  const keys = await validateKeySource(input, remoteJwks, policy.maxJwksKeys);
  return {
    clientId: input.clientId,
    name,
    authMethod,
    ...keys,
    tlsSubjectDn,
    tlsCertThumbprints,
    scopes: [...new Set(scopes)],
    signingIss,
  };
}

/** Exactly one of a JWK Set and a jwks_uri; the URL is fetched now, so a wrong one is refused. */
async function validateKeySource(
  input: ClientRegistration,
  remoteJwks: RemoteJwks | undefined,
  maxKeys: number,
): Promise<{ jwks: JSONWebKeySet; jwksUri: string | null }> {
  const hasJwks = input.jwks !== undefined && input.jwks !== null;
  const hasUri = input.jwksUri !== undefined;
  if (hasJwks === hasUri) {
    throw invalid('UK.OBIE.Field.Invalid', 'give the JWKS or a jwks_uri (one of them)', 'jwks');
  }
  if (hasJwks) return { jwks: await validatePublicJwks(input.jwks, maxKeys), jwksUri: null };
  const uri = input.jwksUri!;
  const fail = (message: string) =>
    invalid('UK.OBIE.Field.Invalid', `jwks_uri: ${message}`, 'jwks_uri');
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw fail('not a URL');
  }
  if (url.protocol !== 'https:' || url.hash !== '' || uri.length > 2000) {
    throw fail('must be an https URL of at most 2000 characters, without a fragment');
  }
  if (!remoteJwks) throw fail('fetching keys by URL is not available here');
  try {
    await remoteJwks.fetch(uri);
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw fail((err as Error).message);
  }
  return { jwks: { keys: [] }, jwksUri: uri };
}

/** A public JWK Set of RSA or EC signing keys, each with a unique kid and no private members. */
/** x5t#S256 values (base64url SHA-256 of the DER); SHA-256 hex (as openssl prints it) converted. */
export function validateThumbprints(values: string[]): string[] {
  const out: string[] = [];
  for (const value of values) {
    const hex = value.replace(/:/g, '');
    let thumbprint: string;
    if (/^[0-9A-Fa-f]{64}$/.test(hex)) thumbprint = Buffer.from(hex, 'hex').toString('base64url');
    else if (/^[A-Za-z0-9_-]{43}$/.test(value)) thumbprint = value;
    else {
      throw invalid(
        'UK.OBIE.Field.Invalid',
        'a certificate thumbprint must be its x5t#S256 (43 base64url characters) or SHA-256 in hex',
        'tls_cert_thumbprint',
      );
    }
    if (!out.includes(thumbprint)) out.push(thumbprint);
  }
  if (out.length > MAX_THUMBPRINTS) {
    throw invalid(
      'UK.OBIE.Field.Invalid',
      `at most ${MAX_THUMBPRINTS} certificate thumbprints`,
      'tls_cert_thumbprint',
    );
  }
  return out;
}

export async function validatePublicJwks(
  value: unknown,
  maxKeys = DEFAULT_REGISTRATION_POLICY.maxJwksKeys,
): Promise<JSONWebKeySet> {
  const fail = (message: string) => invalid('UK.OBIE.Field.Invalid', `JWKS: ${message}`, 'jwks');
  if (
    typeof value !== 'object' ||
    value === null ||
    !Array.isArray((value as { keys?: unknown }).keys)
  ) {
    throw fail('must be a JSON object with a "keys" array');
  }
  const keys = (value as { keys: unknown[] }).keys;
  if (keys.length === 0) throw fail('has no keys');
  // Bounded: a kid-less assertion may be tried against every key (MAX_CLIENT_JWKS_KEYS).
  if (keys.length > maxKeys) throw fail(`has ${keys.length} keys; at most ${maxKeys} are allowed`);
  const kids = new Set<string>();
  const clean: JWK[] = [];
  for (const [i, k] of keys.entries()) {
    if (typeof k !== 'object' || k === null) throw fail(`key ${i} is not an object`);
    const jwk = k as JWK & Record<string, unknown>;
    if (PRIVATE_MEMBERS.some((m) => m in jwk)) throw fail(`key ${i} contains private key material`);
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') throw fail(`key ${i}: kty must be RSA or EC`);
    if (typeof jwk.kid !== 'string' || jwk.kid === '') throw fail(`key ${i} has no kid`);
    if (kids.has(jwk.kid)) throw fail(`kid ${jwk.kid} appears twice`);
    kids.add(jwk.kid);
    if (jwk.use !== undefined && jwk.use !== 'sig') throw fail(`key ${jwk.kid}: use must be sig`);
    if (jwk.alg !== undefined && !KEY_ALGS.includes(jwk.alg))
      throw fail(`key ${jwk.kid}: alg must be PS256 or ES256`);
    const alg = jwk.alg ?? (jwk.kty === 'RSA' ? 'PS256' : 'ES256');
    if (jwk.kty === 'EC' && jwk.crv !== 'P-256')
      throw fail(`key ${jwk.kid}: EC keys must use P-256`);
    try {
      await importJWK(jwk, alg);
      const bits =
        createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).asymmetricKeyDetails
          ?.modulusLength ?? 0;
      if (jwk.kty === 'RSA' && bits < 2048)
        throw fail(`key ${jwk.kid}: RSA keys must have at least 2048 bits`);
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw fail(`key ${jwk.kid} is not a usable public key (${(err as Error).message})`);
    }
    clean.push(jwk);
  }
  return { keys: clean };
}
