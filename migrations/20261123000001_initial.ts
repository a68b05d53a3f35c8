// The whole data model of ARCHITECTURE.md. Raw SQL so that what runs is what you read:
// named indexes, CHECK constraints and a comment on every table and column.
import type { Knex } from 'knex';

export const name = '20261123000001_initial';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE clients (
      client_id text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
      name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
      auth_method text NOT NULL CHECK (auth_method IN ('private_key_jwt', 'tls_client_auth')),
      jwks jsonb NOT NULL CHECK (jsonb_typeof(jwks -> 'keys') = 'array'),
      tls_subject_dn text NULL,
      scopes text[] NOT NULL,
      signing_iss text NOT NULL CHECK (length(signing_iss) BETWEEN 1 AND 256),
      status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz NULL,
      CONSTRAINT clients_tls_dn_required CHECK (auth_method <> 'tls_client_auth' OR tls_subject_dn IS NOT NULL)
    );
    COMMENT ON TABLE clients IS 'Registered TPPs: one OAuth client is one TPP (DECISIONS.md).';
    COMMENT ON COLUMN clients.client_id IS 'OAuth client_id; also the SET aud and the key of every TPP-owned row.';
    COMMENT ON COLUMN clients.name IS 'Human-readable TPP name for operators.';
    COMMENT ON COLUMN clients.auth_method IS 'Registered token endpoint auth method: private_key_jwt or tls_client_auth.';
    COMMENT ON COLUMN clients.jwks IS 'Public JWK Set verifying the client assertions and x-jws-signature of this TPP.';
    COMMENT ON COLUMN clients.tls_subject_dn IS 'RFC 4514 subject DN of the TPP transport certificate (tls_client_auth), compared as a parsed DN.';
    COMMENT ON COLUMN clients.scopes IS 'Scopes the client may request: subset of accounts, payments, fundsconfirmations, eventpolling.';
    COMMENT ON COLUMN clients.signing_iss IS 'Expected http://openbanking.org.uk/iss of request signatures; the client_id unless registered otherwise.';
    COMMENT ON COLUMN clients.status IS 'active, or revoked: a revoked client gets no tokens and its tokens stop working.';
    COMMENT ON COLUMN clients.created_at IS 'When the client was registered.';
    COMMENT ON COLUMN clients.revoked_at IS 'When the client was revoked, if it was.';

    CREATE TABLE signing_keys (
      kid text PRIMARY KEY CHECK (length(kid) BETWEEN 1 AND 128),
      alg text NOT NULL CHECK (alg = 'PS256'),
      public_jwk jsonb NOT NULL,
      private_key text NULL,
      source text NOT NULL CHECK (source IN ('generated', 'file')),
      status text NOT NULL CHECK (status IN ('active', 'retiring', 'retired')),
      created_at timestamptz NOT NULL DEFAULT now(),
      activated_at timestamptz NULL,
      retiring_since timestamptz NULL,
      retire_after timestamptz NULL,
      CONSTRAINT signing_keys_private_key_present CHECK (source = 'file' OR private_key IS NOT NULL)
    );
    CREATE UNIQUE INDEX signing_keys_one_active_uidx ON signing_keys ((true)) WHERE status = 'active';
    COMMENT ON TABLE signing_keys IS 'The server''s PS256 keys: the active one signs SETs, access tokens and responses; retiring ones stay in /jwks.';
    COMMENT ON COLUMN signing_keys.kid IS 'Key id, the JOSE kid of everything signed with the key.';
    COMMENT ON COLUMN signing_keys.alg IS 'JOSE algorithm; always PS256.';
    COMMENT ON COLUMN signing_keys.public_jwk IS 'Public JWK published at /jwks.';
    COMMENT ON COLUMN signing_keys.private_key IS 'Private JWK as JSON, or an encrypted envelope when KEY_ENCRYPTION_KEY is set; NULL for keys loaded from a PEM file.';
    COMMENT ON COLUMN signing_keys.source IS 'generated (by keys rotate) or file (SIGNING_KEY_FILE on every replica).';
    COMMENT ON COLUMN signing_keys.status IS 'active (signs), retiring (published, no longer signs), retired (gone from /jwks).';
    COMMENT ON COLUMN signing_keys.created_at IS 'When the key was made or first loaded.';
    COMMENT ON COLUMN signing_keys.activated_at IS 'When the key became the active key.';
    COMMENT ON COLUMN signing_keys.retiring_since IS 'When a newer key replaced it.';
    COMMENT ON COLUMN signing_keys.retire_after IS 'Earliest time the key may leave /jwks (end of the overlap).';

    CREATE TABLE assertion_jtis (
      client_id text NOT NULL,
      jti text NOT NULL CHECK (length(jti) BETWEEN 1 AND 256),
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (client_id, jti)
    );
    CREATE INDEX assertion_jtis_expires_at_idx ON assertion_jtis (expires_at);
    COMMENT ON TABLE assertion_jtis IS 'Client assertion jtis seen at /token, kept until the assertion expires: replay defence across replicas.';
    COMMENT ON COLUMN assertion_jtis.client_id IS 'Client (iss = sub) whose assertion carried the jti.';
    COMMENT ON COLUMN assertion_jtis.jti IS 'The assertion jti; inserted with ON CONFLICT DO NOTHING, so a second use is refused.';
    COMMENT ON COLUMN assertion_jtis.expires_at IS 'The assertion exp; the row may be purged after it.';

    CREATE TABLE event_subscriptions (
      subscription_id text PRIMARY KEY CHECK (length(subscription_id) BETWEEN 1 AND 40),
      client_id text NOT NULL REFERENCES clients (client_id),
      callback_url text NULL CHECK (length(callback_url) <= 2000),
      version text NOT NULL CHECK (length(version) BETWEEN 1 AND 10),
      event_types text[] NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX event_subscriptions_client_uidx ON event_subscriptions (client_id);
    COMMENT ON TABLE event_subscriptions IS 'OBIE event subscriptions: at most one per client (a second POST is 409).';
    COMMENT ON COLUMN event_subscriptions.subscription_id IS 'EventSubscriptionId: opaque, generated by us, at most 40 characters.';
    COMMENT ON COLUMN event_subscriptions.client_id IS 'Owning client; every read and write is keyed by the authenticated client.';
    COMMENT ON COLUMN event_subscriptions.callback_url IS 'CallbackUrl for real-time push, ending in /<version>/event-notifications; NULL means polling only.';
    COMMENT ON COLUMN event_subscriptions.version IS 'Version the TPP subscribed with (3.1, 3.1.x); below 3.1.2 only resource-update events are delivered.';
    COMMENT ON COLUMN event_subscriptions.event_types IS 'Subscribed UK.OBIE.* event type codes; NULL means all supported types.';
    COMMENT ON COLUMN event_subscriptions.created_at IS 'When the subscription was created.';
    COMMENT ON COLUMN event_subscriptions.updated_at IS 'When it was last replaced by PUT.';

    CREATE TABLE events (
      jti uuid PRIMARY KEY,
      client_id text NOT NULL REFERENCES clients (client_id),
      event_types text[] NOT NULL,
      subject_id text NOT NULL CHECK (length(subject_id) BETWEEN 1 AND 128),
      subject_type text NOT NULL CHECK (length(subject_type) BETWEEN 1 AND 128),
      txn text NOT NULL CHECK (length(txn) BETWEEN 1 AND 128),
      idempotency_key text NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
      kid text NOT NULL,
      set_jws text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX events_client_idempotency_key_uidx ON events (client_id, idempotency_key)
      WHERE idempotency_key IS NOT NULL;
    COMMENT ON TABLE events IS 'Signed SETs, one per event and TPP: written once at publish time and never updated.';
    COMMENT ON COLUMN events.jti IS 'SET jti, a UUIDv7: unique, never reused, time-ordered (the creation order of a client''s SETs).';
    COMMENT ON COLUMN events.client_id IS 'The TPP the SET is addressed to (its aud).';
    COMMENT ON COLUMN events.event_types IS 'UK.OBIE.* event type codes carried in the SET.';
    COMMENT ON COLUMN events.subject_id IS 'http://openbanking.org.uk/rid of the subject resource.';
    COMMENT ON COLUMN events.subject_type IS 'http://openbanking.org.uk/rty of the subject resource.';
    COMMENT ON COLUMN events.txn IS 'SET txn claim: the publisher''s transaction id, else the jti.';
    COMMENT ON COLUMN events.idempotency_key IS 'Publisher''s idempotency key: publishing it again for this client returns this jti.';
    COMMENT ON COLUMN events.kid IS 'Signing key that signed the SET (a key is not retired while pending SETs use it).';
    COMMENT ON COLUMN events.set_jws IS 'The compact JWS exactly as returned by every poll and push, forever.';
    COMMENT ON COLUMN events.created_at IS 'When the SET was signed and stored.';

    -- Delivery state lives apart from the SET bytes: a poll or push rewrites only this narrow row
    -- (Postgres rewrites a whole row on update), and fillfactor leaves room for HOT updates.
    CREATE TABLE event_deliveries (
      jti uuid PRIMARY KEY REFERENCES events (jti) ON DELETE CASCADE,
      client_id text NOT NULL,
      state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'acknowledged', 'errored', 'discarded')),
      leased_until timestamptz NULL,
      poll_count integer NOT NULL DEFAULT 0,
      push_state text NULL CHECK (push_state IN ('due', 'delivered', 'rejected', 'failed')),
      push_attempts integer NOT NULL DEFAULT 0,
      push_next_at timestamptz NULL,
      resolved_at timestamptz NULL,
      resolution text NULL
        CHECK (resolution IN ('ack', 'set_err', 'push_accepted', 'push_rejected', 'subscription_deleted')),
      err text NULL CHECK (length(err) <= 40),
      err_description text NULL CHECK (length(err_description) <= 1000),
      CONSTRAINT event_deliveries_resolved_consistent CHECK ((state = 'pending') = (resolved_at IS NULL))
    ) WITH (fillfactor = 70);
    CREATE INDEX event_deliveries_pending_client_idx ON event_deliveries (client_id, jti)
      WHERE state = 'pending';
    CREATE INDEX event_deliveries_push_due_idx ON event_deliveries (push_next_at)
      WHERE state = 'pending' AND push_state = 'due';
    CREATE INDEX event_deliveries_resolved_at_idx ON event_deliveries (resolved_at)
      WHERE state <> 'pending';
    COMMENT ON TABLE event_deliveries IS 'Delivery state of each SET, one narrow row per events row.';
    COMMENT ON COLUMN event_deliveries.jti IS 'The SET (events.jti).';
    COMMENT ON COLUMN event_deliveries.client_id IS 'Copy of events.client_id so the pending index serves one client without a join.';
    COMMENT ON COLUMN event_deliveries.state IS 'pending (awaiting ack), acknowledged (ack or push 202), errored (setErrs or push 400), discarded (subscription deleted).';
    COMMENT ON COLUMN event_deliveries.leased_until IS 'A poll or push attempt holds the SET until then; no other poll or push takes it meanwhile.';
    COMMENT ON COLUMN event_deliveries.poll_count IS 'How many poll responses carried this SET (above 1: redelivered).';
    COMMENT ON COLUMN event_deliveries.push_state IS 'NULL (no push), due (to push), delivered (202), rejected (400), failed (attempts or age exhausted; still pollable).';
    COMMENT ON COLUMN event_deliveries.push_attempts IS 'Push attempts made so far.';
    COMMENT ON COLUMN event_deliveries.push_next_at IS 'Earliest time of the next push attempt.';
    COMMENT ON COLUMN event_deliveries.resolved_at IS 'When the SET left pending; retention counts from here.';
    COMMENT ON COLUMN event_deliveries.resolution IS 'How it left pending: ack, set_err, push_accepted, push_rejected, subscription_deleted.';
    COMMENT ON COLUMN event_deliveries.err IS 'Error code reported by the TPP (setErrs err, or the push 400 body).';
    COMMENT ON COLUMN event_deliveries.err_description IS 'Error description reported by the TPP.';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE event_deliveries;
    DROP TABLE events;
    DROP TABLE event_subscriptions;
    DROP TABLE assertion_jtis;
    DROP TABLE signing_keys;
    DROP TABLE clients;
  `);
}
