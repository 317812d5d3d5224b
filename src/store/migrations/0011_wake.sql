-- Issue 20: a background push (content-available, priority 5, no badge) wakes the app when its
-- subscription needs it: a Graph lifecycle event (reauthorizationRequired, subscriptionRemoved,
-- missed), a Graph subscription a day before it expires, an EWS subscription gone silent.
--
-- wake_reason: a wake is pending ('reauthorize', 'resubscribe', 'resync', 'renew'); it rides on
-- the registration's pending mark (migration 0009), so the dispatcher that sends the badge sends
-- the wake too. wake_sent_at: the last wake sent, for the limit of one per registration every few
-- minutes and one per silence or expiry. The indexes serve the upkeep's searches: wakes waiting
-- without a mark (few: the column is NULL everywhere else) and Graph subscriptions near their
-- expiry. Every statement is re-runnable.
ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS wake_reason VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
  ADD COLUMN IF NOT EXISTS wake_sent_at DATETIME(6) NULL;
ALTER TABLE registrations
  ADD INDEX IF NOT EXISTS ix_registrations_graph_expiry (graph_expires_at),
  ADD INDEX IF NOT EXISTS ix_registrations_wake (wake_reason);
