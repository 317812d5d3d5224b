-- Two changes found by the fan-out benchmark (issue 7).
--
-- The once-a-minute count of silent subscriptions (no callback for twice the StatusFrequency)
-- compared COALESCE(last_heard_at, created_at) with a per-row interval: no index could serve it,
-- so it read every registration (about 1 s of MariaDB a minute at 2M registrations). The moment
-- a registration falls silent is now an indexed virtual column, and the count reads only the
-- silent ones. It replaces the (state, last_heard_at) index, which nothing used, so a callback's
-- write still maintains one secondary index.
ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS silent_after DATETIME(6)
    AS (COALESCE(last_heard_at, created_at) + INTERVAL (2 * status_frequency_minutes) MINUTE) VIRTUAL;
ALTER TABLE registrations
  DROP INDEX IF EXISTS ix_registrations_silent,
  ADD INDEX IF NOT EXISTS ix_registrations_silent_after (state, silent_after);

-- Outbox rows are owned by their writer and taken over by owner (instances' heartbeats), never by
-- a per-row lease: the column and its index were written with every notification and never read.
ALTER TABLE outbox
  DROP INDEX IF EXISTS ix_outbox_lease,
  DROP COLUMN IF EXISTS lease_until;
