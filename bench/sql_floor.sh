#!/usr/bin/env bash
# The database floor of a badge event (issue 19): what MariaDB's CPU costs for the least SQL the
# relay's design needs per event, without mailpushd. See bench/README.md ("The database floor").
#
#   bench/sql_floor.sh [--events N] [--mailboxes N] [--clients C] [--keep-tmp]
#
# Starts a private MariaDB (durable, scripts/mariadb.sh), applies the migrations, loads the
# fan-out benchmark's seed (N mailboxes, 1-3 devices each), then replays through the mariadb
# client, C connections at once (default 4, each its own registrations), the statements of the
# design in their barest form:
#   - per batch of 15 events, one autocommit UPDATE of 15 registration rows that moves each
#     count and marks its badge (the callback's one durable row write per event);
#   - per 90 events, the dispatcher's round: the due read on ix_registrations_badge_due, then
#     one transaction that clears the 90 marks by id and version (64 a statement).
# No CASE count rules, no JOINs for the device's badge, no recent items: each statement does less
# than the relay's own. MariaDB's CPU (utime + stime from /proc) over the replay, divided by the
# events, is the floor of the MariaDB share of "CPU per badge event" on this machine for any SQL
# that writes the event durably and clears it after the send. Prints a summary and, last, one
# JSON line. Everything it starts is stopped on exit; at most 5 minutes.
set -euo pipefail

BUDGET_SECONDS=300
readonly DATABASE=mailpush_floor
events=60000
mailboxes=10000
clients=4
keep_tmp=0
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2 && shift ;;
    --mailboxes) mailboxes=$2 && shift ;;
    --clients) clients=$2 && shift ;;
    --keep-tmp) keep_tmp=1 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sql_floor: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ "$events" =~ ^[0-9]+$ ]] && [ "$events" -ge 1000 ] && [ "$events" -le 1000000 ] ||
  { echo "sql_floor: --events must be 1000..1000000" >&2; exit 2; }
[[ "$mailboxes" =~ ^[0-9]+$ ]] && [ "$mailboxes" -ge 1000 ] && [ "$mailboxes" -le 1000000 ] ||
  { echo "sql_floor: --mailboxes must be 1000..1000000" >&2; exit 2; }
[[ "$clients" =~ ^[0-9]+$ ]] && [ "$clients" -ge 1 ] && [ "$clients" -le 16 ] ||
  { echo "sql_floor: --clients must be 1..16" >&2; exit 2; }

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"
readonly BENCH_NAME=sql_floor
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailpush-sql-floor.XXXXXX")
source "$root/bench/lib.sh"
source "$root/bench/region_lib.sh"
stop_region_on_exit
start_private_mariadb
mariadbd_pid=$(db_pid)

say "schema (src/store/migrations/*.sql) and the fan-out seed: $mailboxes mailboxes"
cat src/store/migrations/*.sql | sql || die "the migrations"
echo "INSERT INTO customers (customer_id, registration_key_hash, admin_key_hash) VALUES ('floor-1',
  UNHEX(SHA2('floor-registration-key', 384)), UNHEX(SHA2('floor-admin-key', 384)))" | sql ||
  die "the customer"
customer_row=$(echo "SELECT id FROM customers WHERE customer_id = 'floor-1'" | sql)
seed_sql "$mailboxes" | sql || die "the seed"

# The workload, one file per client: client k marks the first registration of mailboxes
# k, k + C, k + 2C, ... in random order (so clients never wait for each other's rows), and
# clears them in rounds as the dispatcher does, by id and the version it marked.
per_client=$((events / clients))
say "writing the statements: $per_client events per client, $clients clients"
for k in $(seq 0 $((clients - 1))); do
  awk -v n="$mailboxes" -v c="$clients" -v k="$k" -v e="$per_client" -v seed="$((k + 7))" '
    BEGIN {
      srand(seed)
      m = 0
      for (mb = k + 1; mb <= n; mb += c) ids[m++] = 3 * (mb - 1) + 1
      pending = 0; batch = ""; inbatch = 0
      for (i = 0; i < e; i++) {
        id = ids[int(rand() * m)]
        if (id in inthis) { i--; continue }
        inthis[id] = 1
        batch = batch (inbatch ? "," : "") id; inbatch++
        ver[id]++
        if (!(id in due)) { due[id] = 1; order[pending++] = id }
        if (inbatch == 15 || i == e - 1) {
          print "UPDATE registrations SET last_heard_at = UTC_TIMESTAMP(6), unread_count = unread_count + 1, badge_version = badge_version + 1, badge_owner = '\''floor'\'', badge_queued_at = IFNULL(badge_queued_at, UTC_TIMESTAMP(6)), badge_due_at = IFNULL(badge_due_at, UTC_TIMESTAMP(6)) WHERE id IN (" batch ") AND state = '\''active'\'';"
          batch = ""; inbatch = 0; delete inthis
        }
        if ((i + 1) % 90 == 0 || i == e - 1) {
          print "SELECT r.id, r.badge_version FROM registrations r FORCE INDEX (ix_registrations_badge_due) WHERE r.badge_owner = '\''floor'\'' AND r.badge_due_at <= UTC_TIMESTAMP(6) AND r.id % " c " = " (k % c) " ORDER BY r.badge_due_at LIMIT 1000;"
          print "START TRANSACTION;"
          for (p = 0; p < pending; p += 64) {
            cases = ""; list = ""
            for (q = p; q < pending && q < p + 64; q++) {
              cases = cases " WHEN " order[q] " THEN " ver[order[q]]
              list = list (q > p ? "," : "") order[q]
            }
            print "UPDATE registrations SET badge_attempts = 0, badge_error = NULL, badge_queued_at = IF(badge_version = CASE id" cases " ELSE NULL END, NULL, UTC_TIMESTAMP(6)), badge_owner = IF(badge_queued_at IS NULL, NULL, badge_owner), badge_due_at = IF(badge_queued_at IS NULL, NULL, badge_due_at) WHERE badge_owner IS NOT NULL AND id IN (" list ");"
          }
          print "COMMIT;"
          pending = 0; delete due
        }
      }
    }' >"$tmp/client-$k.sql"
done

# Each client's rows are disjoint (mailbox k mod C), so the per-client SELECT's id filter keeps the
# rounds apart; the `%` costs the read a little more than the relay's own owner filter.
say "replaying: $events events, $clients clients at once"
db0=$(ticks "$mariadbd_pid")
t0=$(date +%s%N)
pids=()
for k in $(seq 0 $((clients - 1))); do
  timeout "$(allow 240)" "${sql_command[@]}" <"$tmp/client-$k.sql" >/dev/null &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "a replay client failed"; done
t1=$(date +%s%N)
db1=$(ticks "$mariadbd_pid")

left=$(echo "SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL" | sql)
written=$(echo "SELECT SUM(unread_count) FROM registrations" | sql)
[ "$written" = "$((per_client * clients))" ] || die "expected $((per_client * clients)) counted events, found $written"
[ "$left" = 0 ] || die "$left marks were left pending"
total=$((per_client * clients))
us=$(awk -v t="$((db1 - db0))" -v hz="$clk_tck" -v e="$total" 'BEGIN { printf "%.1f", t / hz * 1e6 / e }')
wall=$(awk -v ns="$((t1 - t0))" 'BEGIN { printf "%.2f", ns / 1e9 }')
rate=$(awk -v e="$total" -v w="$wall" 'BEGIN { printf "%.0f", e / w }')
echo
echo "Database floor of a badge event: MariaDB $(echo 'SELECT @@version' | sql), durable (flush_log_at_trx_commit $(echo 'SELECT @@innodb_flush_log_at_trx_commit' | sql)), $mailboxes mailboxes"
echo "  $total events from $clients clients in ${wall}s ($rate/s): every count written, every mark cleared"
echo "  MariaDB CPU per event: $us us (two row writes: the mark and its clear; 1/15 of a commit and 1/90 of a round each)"
echo "  the issue-19 goal for mailpushd + MariaDB together: <= 100 us"
jq -cn --argjson events "$total" --argjson clients "$clients" --argjson mailboxes "$mailboxes" \
  --argjson us "$us" --argjson wall "$wall" --argjson rate "$rate" \
  '{benchmark: "sql_floor", events: $events, clients: $clients, mailboxes: $mailboxes,
    seconds: $wall, events_per_s: $rate, mariadb_cpu_us_per_event: $us,
    floor_above_goal_100_us: ($us > 100)}'
