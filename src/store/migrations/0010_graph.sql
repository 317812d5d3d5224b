-- Issue 20: Microsoft Graph change notifications (Exchange Online after EWS). A registration's
-- source says which listener URL it was given: 'ews' (SOAP SendNotification) or 'graph' (JSON
-- change notifications and lifecycle events). The relay never holds a Microsoft credential: the
-- app creates and renews the Graph subscription with its own token.
--
-- client_state_hash: SHA-256 of the clientState the app generated (16-128 characters); every
-- notification's clientState is hashed and compared with it in constant time.
-- graph_tenant, graph_user: the tenant and user ids the app stated, if it did: a notification of
-- another tenant is dropped.
-- graph_baseline: the unread messages the app reported that the relay has no digest of.
-- graph_items: graph::UnreadSet's bytes (8 per message digest, bounded to 640 digests):
-- unread_count = graph_baseline + the digests known unread.
-- graph_expires_at: the subscription's expiry as the newest notification stated it.
-- Every statement is re-runnable; the new columns are added at the end (instant in MariaDB).
ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS source ENUM('ews', 'graph') NOT NULL DEFAULT 'ews',
  ADD COLUMN IF NOT EXISTS client_state_hash BINARY(32) NULL,
  ADD COLUMN IF NOT EXISTS graph_tenant VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
  ADD COLUMN IF NOT EXISTS graph_user VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
  ADD COLUMN IF NOT EXISTS graph_baseline INT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS graph_items VARBINARY(5120) NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS graph_expires_at DATETIME(6) NULL;
