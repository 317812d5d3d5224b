-- EWS subscription ids a registration was bound to before the app resubscribed: callbacks from
-- them are answered Unsubscribe, so Exchange never sends the same mailbox's events twice.

CREATE TABLE IF NOT EXISTS superseded_subscriptions (
  registration_id BIGINT UNSIGNED NOT NULL,
  subscription_id VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  superseded_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (registration_id, subscription_id),
  CONSTRAINT fk_superseded_registration FOREIGN KEY (registration_id) REFERENCES registrations (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
