-- The certificate portal (DESIGN.md flows 1, 2, 6): one-time onboarding invites, the App ID a
-- customer was created for (a renewal must keep it), expired credentials, and which expiry
-- warnings were sent, so that every instance of a region sends each warning once.

CREATE TABLE IF NOT EXISTS portal_invites (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  code_hash   BINARY(48) NOT NULL,
  created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  created_by  VARCHAR(128) NOT NULL,
  note        VARCHAR(255) NOT NULL DEFAULT '',
  expires_at  DATETIME(6) NOT NULL,
  used_at     DATETIME(6) NULL,
  customer_id BIGINT UNSIGNED NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_portal_invites_code (code_hash),
  CONSTRAINT fk_portal_invites_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

ALTER TABLE customers
  ADD COLUMN IF NOT EXISTS app_id VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''
  AFTER display_name;

ALTER TABLE credentials
  MODIFY COLUMN state ENUM('pending', 'active', 'retired', 'failed', 'expired') NOT NULL DEFAULT 'pending';

-- The smallest warning threshold (days: 30, 14, 7, 1, then 0 for "expired") already announced.
ALTER TABLE credentials
  ADD COLUMN IF NOT EXISTS expiry_warned_days SMALLINT NULL AFTER not_after;
