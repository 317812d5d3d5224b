-- The relay's tables (docs/architecture.md, "Data"). Every statement is re-runnable, so a
-- migration interrupted half-way (DDL commits implicitly in MariaDB) completes on the next run.

CREATE TABLE IF NOT EXISTS customers (
  id                    BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  customer_id           VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  display_name          VARCHAR(200) NOT NULL DEFAULT '',
  state                 ENUM('active', 'disabled', 'deleted') NOT NULL DEFAULT 'active',
  registration_key_hash BINARY(48) NOT NULL,
  admin_key_hash        BINARY(48) NOT NULL,
  content_available     TINYINT(1) NOT NULL DEFAULT 0,
  caller_cidrs          TEXT NULL,
  paused_reason         VARCHAR(255) NULL,
  created_at            DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at            DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  UNIQUE KEY uq_customers_customer_id (customer_id),
  UNIQUE KEY uq_customers_registration_key (registration_key_hash),
  UNIQUE KEY uq_customers_admin_key (admin_key_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS credentials (
  id                  BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  customer_id         BIGINT UNSIGNED NOT NULL,
  topic               VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  environments        SET('development', 'production') NOT NULL,
  subject             VARCHAR(1024) NOT NULL,
  issuer              VARCHAR(1024) NOT NULL,
  serial_hex          VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  fingerprint_sha256  BINARY(32) NOT NULL,
  not_before          DATETIME NOT NULL,
  not_after           DATETIME NOT NULL,
  kek_id              VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  wrapped_data_key    VARBINARY(512) NOT NULL,
  sealed_material     MEDIUMBLOB NOT NULL,
  state               ENUM('pending', 'active', 'retired', 'failed') NOT NULL DEFAULT 'pending',
  failure_reason      VARCHAR(512) NULL,
  last_success_at     DATETIME(6) NULL,
  last_failure_at     DATETIME(6) NULL,
  last_failure_reason VARCHAR(255) NULL,
  created_at          DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  activated_at        DATETIME(6) NULL,
  retired_at          DATETIME(6) NULL,
  PRIMARY KEY (id),
  KEY ix_credentials_customer_state (customer_id, state),
  KEY ix_credentials_expiry (state, not_after),
  CONSTRAINT fk_credentials_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS devices (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  customer_id     BIGINT UNSIGNED NOT NULL,
  environment     ENUM('development', 'production') NOT NULL,
  token_hex       VARCHAR(200) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  state           ENUM('active', 'unregistered', 'invalid') NOT NULL DEFAULT 'active',
  unregistered_at DATETIME(6) NULL,
  invalid_reason  VARCHAR(64) NULL,
  created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  UNIQUE KEY uq_devices_token (customer_id, environment, token_hex),
  KEY ix_devices_state (customer_id, state),
  CONSTRAINT fk_devices_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS mailboxes (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  customer_id      BIGINT UNSIGNED NOT NULL,
  address_hmac     BINARY(32) NOT NULL,
  unread_count     INT UNSIGNED NOT NULL DEFAULT 0,
  badge_updated_at DATETIME(6) NULL,
  created_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  UNIQUE KEY uq_mailboxes_address (customer_id, address_hmac),
  CONSTRAINT fk_mailboxes_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS registrations (
  id                       BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  customer_id              BIGINT UNSIGNED NOT NULL,
  mailbox_id               BIGINT UNSIGNED NOT NULL,
  device_id                BIGINT UNSIGNED NOT NULL,
  secret_hash              BINARY(48) NOT NULL,
  subscription_id          VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NULL,
  superseded_subscription  VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NULL,
  watermark                VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NULL,
  status_frequency_minutes SMALLINT UNSIGNED NOT NULL DEFAULT 30,
  state                    ENUM('active', 'deleted') NOT NULL DEFAULT 'active',
  last_heard_at            DATETIME(6) NULL,
  created_at               DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at               DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  deleted_at               DATETIME(6) NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_registrations_secret (secret_hash),
  UNIQUE KEY uq_registrations_pair (mailbox_id, device_id),
  KEY ix_registrations_device (device_id),
  KEY ix_registrations_silent (state, last_heard_at),
  CONSTRAINT fk_registrations_customer FOREIGN KEY (customer_id) REFERENCES customers (id),
  CONSTRAINT fk_registrations_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id),
  CONSTRAINT fk_registrations_device FOREIGN KEY (device_id) REFERENCES devices (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- No foreign keys on the hot queue: rows are written and deleted in batches.
CREATE TABLE IF NOT EXISTS outbox (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  owner           VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  lease_until     DATETIME(6) NOT NULL,
  customer_id     BIGINT UNSIGNED NOT NULL,
  device_id       BIGINT UNSIGNED NOT NULL,
  mailbox_id      BIGINT UNSIGNED NOT NULL,
  badge           INT UNSIGNED NOT NULL,
  state           ENUM('queued', 'dead') NOT NULL DEFAULT 'queued',
  attempts        SMALLINT UNSIGNED NOT NULL DEFAULT 0,
  next_attempt_at DATETIME(6) NOT NULL,
  expires_at      DATETIME(6) NOT NULL,
  last_error      VARCHAR(255) NULL,
  created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  KEY ix_outbox_owner (owner, state, next_attempt_at),
  KEY ix_outbox_lease (state, lease_until),
  KEY ix_outbox_age (state, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS audit_log (
  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  at             DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  actor          VARCHAR(128) NOT NULL,
  action         VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  customer_id    BIGINT UNSIGNED NULL,
  source_address VARCHAR(64) NULL,
  detail         TEXT NULL,
  PRIMARY KEY (id),
  KEY ix_audit_customer (customer_id, at),
  KEY ix_audit_at (at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
