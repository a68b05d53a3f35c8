// OBIE release management: each subscription remembers the API version it was created through, so
// that it is refused through an older one (a v4.0 subscription through v3.1) and served, unchanged,
// through the same or a newer one. Every row before this migration was created through v3.1, the
// only version served then; the default stays for rows written by other tools (and older code).
import type { Knex } from 'knex';

export const name = '20261201130000_subscription_api_version';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE event_subscriptions
      ADD COLUMN api_version text NOT NULL DEFAULT 'v3.1'
        CONSTRAINT event_subscriptions_api_version_check CHECK (api_version ~ '^v[0-9]{1,2}\\.[0-9]{1,2}$');
    COMMENT ON COLUMN event_subscriptions.api_version IS 'The OBIE API version the subscription was created through (v3.1, v4.0): it is reachable through that version and newer ones only. Never changes.';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE event_subscriptions DROP COLUMN api_version;`);
}
