-- Issue 17: badges belong to registrations. A callback on one registration's listener URL
-- changes only that registration's unread count, and notifies only its device; a device's badge
-- is the sum over its active registrations. Every statement is re-runnable.
--
-- unread_count: today's per-mailbox counts are copied to every registration of the mailbox, so
-- no badge changes at the upgrade (mailboxes.unread_count is no longer written after it).
-- folder_id: the FolderId the app stated at registration (only that folder's events count);
-- NULL: every folder the subscription reports. recent_items: the newest NewMail items counted
-- (16 hex digits of a digest and a comma each, newest last), so a notification Exchange sends
-- again after a lost OK counts once.
ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS unread_count INT UNSIGNED NULL AFTER status_frequency_minutes,
  ADD COLUMN IF NOT EXISTS folder_id VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NULL
    AFTER unread_count,
  ADD COLUMN IF NOT EXISTS recent_items VARCHAR(340) CHARACTER SET ascii COLLATE ascii_bin
    NOT NULL DEFAULT '' AFTER folder_id;
UPDATE registrations r JOIN mailboxes m ON m.id = r.mailbox_id
  SET r.unread_count = m.unread_count
  WHERE r.unread_count IS NULL;
ALTER TABLE registrations
  MODIFY COLUMN unread_count INT UNSIGNED NOT NULL DEFAULT 0;

-- The batch that last moved the count in a way worth a push (a random number per batch): the
-- outbox rows of a batch are those of its registrations, so an item Exchange sent again, or an
-- event of another folder, costs no push.
ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS count_batch BIGINT UNSIGNED NULL AFTER recent_items;
