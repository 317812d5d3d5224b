#!/usr/bin/env bash
# ops/backup end to end on loopback: a private MariaDB gets rows, mailpush-backup backs it up
# (password from a 0600 defaults file), the rows change, mailpush-restore fills a new data
# directory, a second private server starts on it and must hold the original rows. Also: the
# refusals (a group-readable defaults file, a non-empty data directory, an unprepared backup)
# and that the password appears in no output. Both servers are stopped on exit.
#   bash tests/ops/backup_restore_test.sh      (ctest: ops.backup_restore)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
backup_bin="$root/ops/backup/mailpush-backup"
restore_bin="$root/ops/backup/mailpush-restore"
mariadb_sh="$root/scripts/mariadb.sh"

if ! command -v mariadb-backup >/dev/null 2>&1; then
  echo "SKIP: mariadb-backup is not installed (scripts/install-deps.sh installs it)"
  exit 77
fi

# Short path: the servers' Unix sockets must fit in 107 bytes.
work=$(mktemp -d /tmp/mp-bk.XXXXXX)
server_a="$work/a"
server_b="$work/b"
out="$work/out.txt" # everything the scripts print, searched for the password at the end

cleanup() {
  local rc=$?
  for s in "$server_a" "$server_b"; do
    [ -d "$s" ] && bash "$mariadb_sh" stop --datadir "$s" >/dev/null 2>&1 || true
  done
  if [ "$rc" -ne 0 ] && [ -f "$out" ]; then
    echo "--- output of the scripts:" >&2
    cat "$out" >&2
  fi
  rm -rf -- "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
pass() { echo "ok: $*"; }

# Ports: reserve_port (scripts/lib/ports.sh), held until this script exits.
# shellcheck source=scripts/lib/ports.sh
source "$root/scripts/lib/ports.sh"

# SQL from stdin as the server's admin over its Unix socket (unix_socket authentication).
admin_sql() { # DIR
  mariadb --defaults-file="$1/my.cnf" --protocol=socket --user="$(id -un)" --batch \
    --skip-column-names --connect-timeout=5
}

reserve_port port_a || fail "no free port"
bash "$mariadb_sh" start --datadir "$server_a" --port "$port_a" --database mailpush_bk >/dev/null
pass "server A on 127.0.0.1:$port_a"

# ---- rows to keep ----
admin_sql "$server_a" <<'SQL'
CREATE TABLE mailpush_bk.customers (id INT PRIMARY KEY, customer_id VARCHAR(40) NOT NULL,
  state VARCHAR(16) NOT NULL) ENGINE=InnoDB;
INSERT INTO mailpush_bk.customers VALUES (1, 'use1-alpha', 'active'), (2, 'use1-bravo', 'active'),
  (3, 'use1-charlie', 'disabled');
CREATE TABLE mailpush_bk.outbox (id BIGINT AUTO_INCREMENT PRIMARY KEY, badge INT NOT NULL) ENGINE=InnoDB;
INSERT INTO mailpush_bk.outbox (badge) SELECT seq FROM mailpush_bk.seq_1_to_5000;
SQL
snapshot_sql="SELECT COUNT(*), SUM(badge) FROM mailpush_bk.outbox;
SELECT GROUP_CONCAT(CONCAT(id, ':', customer_id, ':', state) ORDER BY id) FROM mailpush_bk.customers;"
before=$(admin_sql "$server_a" <<<"$snapshot_sql")
pass "rows written: $(echo "$before" | tr '\n' ' ')"

# ---- the backup account; its password only in a 0600 file ----
password=$(openssl rand -hex 20)
printf "CREATE USER 'mailpush_backup'@'localhost' IDENTIFIED BY '%s';
GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'mailpush_backup'@'localhost';\n" \
  "$password" | admin_sql "$server_a"
defaults="$work/backup.cnf"
(
  umask 077
  printf '[client]\nuser=mailpush_backup\npassword=%s\nsocket=%s\n' "$password" "$server_a/mysqld.sock" \
    >"$defaults"
)

# Refusal: a defaults file others can read.
chmod 0640 "$defaults"
if bash "$backup_bin" --defaults-extra-file "$defaults" --target-dir "$work/refused" >>"$out" 2>&1; then
  fail "mailpush-backup accepted a group-readable defaults file"
fi
grep -q "make it 0600" "$out" || fail "no 'make it 0600' advice for a group-readable defaults file"
chmod 0600 "$defaults"
pass "a group-readable defaults file is refused"

# Refusal: a wrong password says so.
wrong="$work/wrong.cnf"
(umask 077 && printf '[client]\nuser=mailpush_backup\npassword=wrong\nsocket=%s\n' "$server_a/mysqld.sock" >"$wrong")
if bash "$backup_bin" --defaults-extra-file "$wrong" --target-dir "$work/refused2" >>"$out" 2>&1; then
  fail "mailpush-backup succeeded with a wrong password"
fi
grep -q "was refused: check user and password" "$out" || fail "no advice for a refused account"
pass "a wrong password is reported as such"

# ---- back up ----
bash "$backup_bin" --defaults-extra-file "$defaults" --target-dir "$work/backup" >>"$out" 2>&1 ||
  fail "mailpush-backup failed"
[ "$(stat -c %a "$work/backup")" = 700 ] || fail "backup directory is not mode 0700"
grep -q '^backup_type=log-applied' "$work/backup/mailpush-backup.info" ||
  fail "backup is not prepared: $(cat "$work/backup/mailpush-backup.info")"
pass "backup made and prepared ($(grep size_bytes "$work/backup/mailpush-backup.info"))"

# ---- the rows change after the backup ----
admin_sql "$server_a" <<'SQL'
UPDATE mailpush_bk.customers SET state = 'deleted' WHERE id = 1;
DELETE FROM mailpush_bk.customers WHERE id = 2;
DELETE FROM mailpush_bk.outbox WHERE id > 100;
INSERT INTO mailpush_bk.outbox (badge) VALUES (999999);
SQL
changed=$(admin_sql "$server_a" <<<"$snapshot_sql")
[ "$changed" != "$before" ] || fail "rows did not change"
pass "rows changed: $(echo "$changed" | tr '\n' ' ')"

# Refusal: a non-empty data directory.
mkdir -p "$work/notempty" && touch "$work/notempty/ibdata1"
if bash "$restore_bin" --backup "$work/backup" --datadir "$work/notempty" >>"$out" 2>&1; then
  fail "mailpush-restore wrote into a non-empty data directory"
fi
grep -q "is not empty" "$out" || fail "no 'is not empty' reason"
pass "a non-empty data directory is refused"

# Refusal: a backup that was never prepared.
mkdir -p "$work/raw"
printf 'backup_type = full-backuped\nfrom_lsn = 0\n' >"$work/raw/mariadb_backup_checkpoints"
if bash "$restore_bin" --backup "$work/raw" --datadir "$work/rawdata" >>"$out" 2>&1; then
  fail "mailpush-restore restored an unprepared backup"
fi
grep -q "was never prepared" "$out" || fail "no 'never prepared' reason"
pass "an unprepared backup is refused"

# ---- restore into a new data directory and start a server on it ----
bash "$restore_bin" --backup "$work/backup" --datadir "$server_b/data" --owner "$(id -un)" >>"$out" 2>&1 ||
  fail "mailpush-restore failed"
# The same accounts' password file, so scripts/mariadb.sh's bootstrap keeps them as they were.
cp -p "$server_a/mailpush.password" "$server_b/mailpush.password"
reserve_port port_b || fail "no free port"
bash "$mariadb_sh" start --datadir "$server_b" --port "$port_b" >/dev/null
after=$(admin_sql "$server_b" <<<"$snapshot_sql")
[ "$after" = "$before" ] || fail "restored rows differ: got '$after', want '$before'"
pass "server B on 127.0.0.1:$port_b from the restored data holds the original rows: $(echo "$after" | tr '\n' ' ')"
# The backup account came back with the server's accounts.
[ "$(admin_sql "$server_b" <<<"SELECT COUNT(*) FROM mysql.user WHERE user = 'mailpush_backup';")" = 1 ] ||
  fail "the accounts were not restored"
pass "accounts restored"

# ---- no password anywhere it should not be ----
if grep -rqF -- "$password" "$out" "$work/backup/mailpush-backup.log" "$work/backup/mailpush-backup.info"; then
  fail "the password appears in the scripts' output or logs"
fi
pass "the password is in no output or log"

echo "PASS: backup_restore"
