-- Instances of mailpushd seen by the region: who owns outbox rows, who is alive (heartbeat).

CREATE TABLE IF NOT EXISTS instances (
  instance_id  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  host_name    VARCHAR(255) NOT NULL,
  version      VARCHAR(64) NOT NULL,
  started_at   DATETIME(6) NOT NULL,
  heartbeat_at DATETIME(6) NOT NULL,
  stopped_at   DATETIME(6) NULL,
  PRIMARY KEY (instance_id),
  KEY ix_instances_heartbeat (heartbeat_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
