// Totals that Prometheus can read from any replica (issue 15: a publish made by the CLI or by
// another replica's outbox worker was invisible to this server's process-local counters).
// /metrics counts rows at scrape time: SETs by delivery state and resolution, push attempts by
// outcome. Retention (and any other delete) removes rows, so a plain count would go down; the
// rows deleted are added here, in the deleting transaction, by statement-level triggers: rows
// now + rows deleted = a total that only grows, whoever deleted them (retention, a cascade from
// `events`, an operator's purge). Nothing is added to the hot paths (insert, lease, ack).
import type { Knex } from 'knex';

export const name = '20261201150000_metric_totals';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE metric_totals (
      metric text NOT NULL CHECK (metric IN ('sets_deleted', 'sets_polled_deleted', 'push_attempts_deleted')),
      label text NOT NULL CHECK (length(label) <= 100),
      value bigint NOT NULL DEFAULT 0 CHECK (value >= 0),
      PRIMARY KEY (metric, label)
    );
    COMMENT ON TABLE metric_totals IS 'Rows deleted so far from the tables /metrics counts, so that its totals only grow (see the migration).';
    COMMENT ON COLUMN metric_totals.metric IS 'sets_deleted (event_deliveries rows), sets_polled_deleted (their poll_count) or push_attempts_deleted (push_attempts rows).';
    COMMENT ON COLUMN metric_totals.label IS 'sets_*: the resolution (ack, set_err, ...) or "pending"; push_attempts_deleted: the outcome.';
    COMMENT ON COLUMN metric_totals.value IS 'How many such rows (or poll hand-outs) were deleted, ever.';

    CREATE FUNCTION metric_totals_sets_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO metric_totals (metric, label, value)
        SELECT m.metric, coalesce(d.resolution, 'pending'),
               CASE m.metric WHEN 'sets_deleted' THEN count(*) ELSE coalesce(sum(d.poll_count), 0) END
          FROM deleted_rows d CROSS JOIN (VALUES ('sets_deleted'), ('sets_polled_deleted')) AS m (metric)
         GROUP BY 1, 2
        ON CONFLICT (metric, label) DO UPDATE SET value = metric_totals.value + EXCLUDED.value;
      RETURN NULL;
    END $$;
    COMMENT ON FUNCTION metric_totals_sets_deleted() IS 'Adds deleted event_deliveries rows (and their poll hand-outs) to metric_totals, by resolution.';
    CREATE TRIGGER event_deliveries_count_deleted AFTER DELETE ON event_deliveries
      REFERENCING OLD TABLE AS deleted_rows
      FOR EACH STATEMENT EXECUTE FUNCTION metric_totals_sets_deleted();

    CREATE FUNCTION metric_totals_push_attempts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO metric_totals (metric, label, value)
        SELECT 'push_attempts_deleted', outcome, count(*) FROM deleted_rows GROUP BY 2
        ON CONFLICT (metric, label) DO UPDATE SET value = metric_totals.value + EXCLUDED.value;
      RETURN NULL;
    END $$;
    COMMENT ON FUNCTION metric_totals_push_attempts_deleted() IS 'Adds deleted push_attempts rows to metric_totals, by outcome.';
    CREATE TRIGGER push_attempts_count_deleted AFTER DELETE ON push_attempts
      REFERENCING OLD TABLE AS deleted_rows
      FOR EACH STATEMENT EXECUTE FUNCTION metric_totals_push_attempts_deleted();
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TRIGGER push_attempts_count_deleted ON push_attempts;
    DROP TRIGGER event_deliveries_count_deleted ON event_deliveries;
    DROP FUNCTION metric_totals_push_attempts_deleted();
    DROP FUNCTION metric_totals_sets_deleted();
    DROP TABLE metric_totals;
  `);
}
