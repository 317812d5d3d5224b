-- Issue 17: a registration's listener secret is its capability. Every statement is re-runnable.

-- The registration quota per customer counts a customer's active registrations on this index
-- (under a lock of the customer's row, so two registrations at once cannot both take the last
-- place); the per-device quota uses ix_registrations_device.
ALTER TABLE registrations
  ADD INDEX IF NOT EXISTS ix_registrations_customer_state (customer_id, state);

-- Whether the secret is a tagged capability (keys::RegionSecret::issue_capability). Rows from
-- before are not: their listener URLs keep working, and `mailpushctl status` counts them, so the
-- operators know when limits.refuse_untagged_secrets can be turned on.
ALTER TABLE registrations
  ADD COLUMN IF NOT EXISTS secret_tagged BOOLEAN NOT NULL DEFAULT FALSE AFTER secret_hash;
