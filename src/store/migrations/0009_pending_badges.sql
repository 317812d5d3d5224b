-- Issue 19: one durable row write per badge event. A callback that moves a registration's count
-- marks that same row pending instead of inserting an outbox row per device: the dispatcher
-- reads the pending rows of its instance, sends each device its current badge (the sum over its
-- active registrations, read when sent) and clears the marks it sent by id and version, so an
-- event committed meanwhile is sent too. The outbox table keeps only dead letters.
--
-- badge_version: moves with every event that notifies; a clear matches only the version read.
-- badge_owner: the instance that sends it (NULL: nothing pending); taken over like outbox rows.
-- badge_due_at: the next attempt (NULL: nothing pending). badge_queued_at: when the badge first
-- waited (its age, its expiry). badge_attempts, badge_error: the failed attempts so far. The index
-- serves the due reads, the take-over and the outbox figures (queued, oldest) without row reads.
-- Every statement is re-runnable.
ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS badge_version BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER count_batch,
  ADD COLUMN IF NOT EXISTS badge_owner VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL
    AFTER badge_version,
  ADD COLUMN IF NOT EXISTS badge_due_at DATETIME(6) NULL AFTER badge_owner,
  ADD COLUMN IF NOT EXISTS badge_queued_at DATETIME(6) NULL AFTER badge_due_at,
  ADD COLUMN IF NOT EXISTS badge_attempts SMALLINT UNSIGNED NOT NULL DEFAULT 0 AFTER badge_queued_at,
  ADD COLUMN IF NOT EXISTS badge_error VARCHAR(255) NULL AFTER badge_attempts;
ALTER TABLE registrations
  ADD INDEX IF NOT EXISTS ix_registrations_badge_due (badge_owner, badge_due_at, badge_queued_at);

-- Queued outbox rows of an earlier version become pending marks on their device's active
-- registrations (the badge sent is the device's current one), then leave the outbox.
UPDATE registrations r
  JOIN (SELECT device_id, MIN(created_at) AS queued_at, MAX(owner) AS owner
        FROM outbox WHERE state = 'queued' GROUP BY device_id) o ON o.device_id = r.device_id
  SET r.badge_version = r.badge_version + 1, r.badge_owner = o.owner,
      r.badge_due_at = UTC_TIMESTAMP(6), r.badge_queued_at = COALESCE(r.badge_queued_at, o.queued_at)
  WHERE r.state = 'active';
DELETE FROM outbox WHERE state = 'queued';
