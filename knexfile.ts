// For the knex CLI (`npx knex --knexfile dist/knexfile.js migrate:status`). ob-events itself runs
// migrations with `ob-events migrate`, which reads the same DATABASE_URL.
import type { Knex } from 'knex';
import { migratorConfig } from './src/db/migrate.js';

const config: Knex.Config = {
  client: 'pg',
  connection: process.env.DATABASE_URL,
  migrations: migratorConfig(),
};

export default config;
