#!/usr/bin/env bash
# The fan-out benchmark (issue 7): EWS callbacks in, APNs badges out, through MariaDB. See
# bench/README.md ("Fan-out").
#
#   bench/fanout_bench.sh [--skip-build] [--build-dir DIR] [--quick] [--keep-tmp] [--perf DIR]
#                         [--scales 10000,1000000] [--rates 1000,5000] [--seconds S]
#                         [--buffer-pool SIZE] [--no-capacity] [--table-stats]
#
# Starts a private MariaDB (durable), migrates, starts apns-sim (production, client certificates
# of the test CA required) and mailpushd (release build; APNs pointed at the simulator; portal
# with a fresh KEK and admin token), onboards ONE customer through POST /portal/v1/customers with
# the test certificate mail.p12, then for each scale N: loads N mailboxes with 1-3 devices each
# (1,2,3 cycling) with bulk INSERT … SELECT from MariaDB's sequence engine, restarts mailpushd,
# waits for it to preload its registration cache from the database (timed), and replays
# badge callbacks (bench/fanout_load) at each fixed rate, open loop, 64 keep-alive connections, for
# S seconds (20), then a closed-loop capacity run (10 s).
# After each run it waits for the outbox to drain and matches every notification apns-sim
# accepted with the callback it came from (bench/fanout_check): latency from the callback's due
# time to apns-sim's received_ms, delivered vs coalesced, and lost = devices whose mailbox's newest
# acknowledged badge never arrived (must be 0).
# Prints a summary and, last, ONE JSON line whose last key is goals_met. Progress on stderr.
# Everything it starts is stopped on exit; the whole run has a 15-minute budget (each step's
# limit comes out of what is left). --quick: 10,000 mailboxes only, 5 s per rate (a smoke test).
# FANOUT_BENCH_REGION='{"dispatch":{"batch":200}}' merges JSON into the region file, and
# FANOUT_BENCH_SQL='ALTER TABLE …' runs after the migrations (experiments; both are recorded).
# --table-stats turns on MariaDB's userstat and reports rows read per table and index per 1,000
# events (diagnosis; it costs MariaDB a little CPU). --perf DIR records perf profiles of mailpushd
# and mariadbd during the runs at 5,000 events/s and more.
set -euo pipefail

BUDGET_SECONDS=900
readonly DATABASE=mailpush_fanout
readonly CONNECTIONS=64

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"

skip_build=0
keep_tmp=0
quick=0
build_dir=""
perf_dir=""
scales="10000,1000000"
rates="1000,5000"
seconds=20
capacity_seconds=10
buffer_pool=2G
table_stats=0

usage() { sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --keep-tmp) keep_tmp=1 ;;
    --quick) quick=1 ;;
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --perf) perf_dir=$(realpath -m -- "$2") && shift ;;
    --scales) scales=$2 && shift ;;
    --rates) rates=$2 && shift ;;
    --seconds) seconds=$2 && shift ;;
    --buffer-pool) buffer_pool=$2 && shift ;;
    --no-capacity) capacity_seconds=0 ;;
    --table-stats) table_stats=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "fanout_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  scales=10000 seconds=5 capacity_seconds=$((capacity_seconds > 0 ? 5 : 0)) BUDGET_SECONDS=300
fi
[[ "$scales" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "fanout_bench: --scales: numbers, comma-separated" >&2; exit 2; }
[[ "$rates" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "fanout_bench: --rates: numbers, comma-separated" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] && [ "$seconds" -le 120 ] ||
  { echo "fanout_bench: --seconds must be 1..120" >&2; exit 2; }
[[ "$buffer_pool" =~ ^[0-9]+[MG]$ ]] || { echo "fanout_bench: --buffer-pool like 256M or 2G" >&2; exit 2; }
IFS=, read -r -a scale_list <<<"$scales"
IFS=, read -r -a rate_list <<<"$rates"
for n in "${scale_list[@]}"; do
  [ "$n" -ge 100 ] && [ "$n" -le 3000000 ] || { echo "fanout_bench: a scale must be 100..3000000" >&2; exit 2; }
done
for r in "${rate_list[@]}"; do
  [ "$r" -ge 1 ] && [ "$r" -le 50000 ] || { echo "fanout_bench: a rate must be 1..50000" >&2; exit 2; }
done

readonly BENCH_NAME=fanout
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
# shellcheck source=bench/region_lib.sh
source "$root/bench/region_lib.sh"

# ---------------------------------------------------------------- cleanup

tmp=$(mktemp -d /tmp/mailpush-fanout.XXXXXX)
stop_region_on_exit

for tool in jq curl openssl mariadb ss awk cmake; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/install-deps.sh installs the project's tools)"
done
[ -z "$perf_dir" ] || command -v perf >/dev/null 2>&1 || die "--perf needs perf"

# ---------------------------------------------------------------- build

targets=(mailpushd mailpushctl apns-sim fanout_load fanout_check)
if [ -z "$build_dir" ]; then build_dir="$root/build/release"; fi
if [ "$skip_build" = 0 ]; then build_release_targets "$build_dir" "${targets[@]}"; fi
mailpushd="$build_dir/src/app/mailpushd"
mailpushctl="$build_dir/src/app/mailpushctl"
sim="$build_dir/tools/apns_sim/apns-sim"
load="$build_dir/bench/fanout_load"
check="$build_dir/bench/fanout_check"
for b in "$mailpushd" "$mailpushctl" "$sim" "$load" "$check"; do
  [ -x "$b" ] || die "$b is missing: build the release preset (or drop --skip-build)"
done

# ---------------------------------------------------------------- helpers

kib() { awk -v k="^$2:" '$0 ~ k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
sim_reset() { curl -fsS --max-time 30 -X POST "http://127.0.0.1:$sim_control/reset" >/dev/null; }
metrics() { curl -fsS --max-time 10 --cacert "$tls/ca.crt" "https://localhost:$listener_port/metrics" >"$1" 2>/dev/null || : >"$1"; }
# Counter deltas between two /metrics files for the series the report uses, as one JSON object
# (series name with labels -> after - before).
metric_deltas() {
  awk '/^mailpush_(dispatch_round_rows|notification_delay_seconds|db_batch_writes|db_batch_seconds)_(sum|count|bucket)|^mailpush_(registration_cache_lookups_total|dispatch_rows_total|ews_callbacks_total|outbox_dead_letters_total|apns_)/ {
         v[$1] += (FILENAME == ARGV[1] ? -$2 : $2); seen[$1] = 1 }
       END { printf "{"; n = 0
             for (k in seen) { key = k; gsub(/\\/, "\\\\", key); gsub(/"/, "\\\"", key)
                               printf "%s\"%s\":%.10g", (n++ ? "," : ""), key, v[k] }
             print "}" }' "$1" "$2"
}

# ---------------------------------------------------------------- certificates and keys

make_region_files

# ---------------------------------------------------------------- MariaDB

start_private_mariadb
# The only server setting changed: a buffer pool that holds the 1M data set, as a production
# server for that many registrations would have (scripts/mariadb.sh writes 256M for development).
# Resized online; durability settings are untouched.
bp_bytes=$(awk -v s="$buffer_pool" 'BEGIN { n = substr(s, 1, length(s) - 1); u = substr(s, length(s));
  printf "%d", n * (u == "G" ? 1073741824 : 1048576) }')
echo "SET GLOBAL innodb_buffer_pool_size = $bp_bytes" | sql || die "resizing the buffer pool"
for _ in $(seq 1 300); do
  status=$(echo "SHOW STATUS LIKE 'Innodb_buffer_pool_resize_status'" | sql | cut -f2)
  case "$status" in *ompleted* | "") break ;; esac
  sleep 0.2
done
# A redo log that a bulk load of 1M mailboxes does not fill (96 MiB by default: the load would
# wait for checkpoint flushing); production servers size it in GiB too. Resized online (10.11).
echo "SET GLOBAL innodb_log_file_size = 1073741824" | sql || die "resizing the redo log"
bp_now=$(echo "SELECT @@innodb_buffer_pool_size" | sql)
db_settings=$(echo "SELECT @@version, @@innodb_flush_log_at_trx_commit, @@log_bin, @@innodb_log_file_size, @@innodb_doublewrite" | sql)
[ "$table_stats" = 0 ] || echo "SET GLOBAL userstat = 1" | sql || die "SET GLOBAL userstat"
say "MariaDB $(cut -f1 <<<"$db_settings"): flush_log_at_trx_commit $(cut -f2 <<<"$db_settings"), log_bin $(cut -f3 <<<"$db_settings"), doublewrite $(cut -f5 <<<"$db_settings"), buffer pool $((bp_now / 1048576)) MiB, redo log $(($(cut -f4 <<<"$db_settings") / 1048576)) MiB"

# ---------------------------------------------------------------- region, simulator, daemon

start_apns_sim 1000000

bench_port listener_port
region="$tmp/region.json"
# The dispatcher's settings (recorded in the output): rounds of up to 1,000 rows, a poll every
# 100 ms besides the wake-up on every commit, 2 HTTP/2 connections to APNs per credential.
dispatch_json='{"instance_id":"fanout-bench","batch":1000,"poll_ms":100,"apns_connections":2,"ttl_s":3600,"lease_s":30,"max_attempts":12}'
# The one customer's callbacks go past its default callback rate on purpose (a capacity run).
write_region "$region" "$dispatch_json" 'del(.registration) | .log_level = "warn"
  | .limits.callbacks_per_second_per_customer = 0 | .limits.callbacks_per_second_per_registration = 0
  | . * (env.FANOUT_BENCH_REGION // "{}" | fromjson)'

say "migrating (mailpushctl migrate)"
timeout "$(allow 60)" "$mailpushctl" --region "$region" migrate >"$tmp/migrate.log" 2>&1 ||
  { cat "$tmp/migrate.log" >&2; die "mailpushctl migrate"; }
# Experiments only: FANOUT_BENCH_SQL runs after the migrations (e.g. a schema change to measure).
experiment_sql=${FANOUT_BENCH_SQL:-}
if [ -n "$experiment_sql" ]; then
  say "experiment: $experiment_sql"
  echo "$experiment_sql" | sql || die "FANOUT_BENCH_SQL"
fi


say "starting mailpushd on 127.0.0.1:$listener_port; onboarding one customer through the portal (mail.p12)"
start_mailpushd
onboard_customer
stop_mailpushd

# ---------------------------------------------------------------- data

load_scale() { # N
  local n=$1 started
  started=$(date +%s%N)
  seed_sql "$n" | timeout "$(allow 400)" "${sql_command[@]}" || die "loading $n mailboxes"
  load_ms=$((($(date +%s%N) - started) / 1000000))
  seed_check "$n"
  say "  loaded $n mailboxes, $devices devices and registrations in $((load_ms / 1000)).$(((load_ms % 1000) / 100)) s"
  # Fresh statistics, and the load's dirty pages written, so that neither the statistics
  # recalculation nor the flushing of the load runs in the background during the measurements.
  echo "ANALYZE TABLE mailboxes, devices, registrations" | timeout "$(allow 120)" "${sql_command[@]}" >/dev/null ||
    die "ANALYZE TABLE"
  # (The page cleaner writes at most innodb_io_capacity pages a second, 200 by default: raised
  # while waiting, then put back.)
  local saved dirty
  saved=$(echo "SELECT @@innodb_max_dirty_pages_pct, @@innodb_io_capacity, @@innodb_io_capacity_max" | sql)
  echo "SET GLOBAL innodb_io_capacity_max = 40000; SET GLOBAL innodb_io_capacity = 20000;
        SET GLOBAL innodb_max_dirty_pages_pct = 0" | sql
  for _ in $(seq 1 900); do
    dirty=$(echo "SHOW STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | sql | cut -f2)
    [ "${dirty:-0}" -gt 100 ] || break
    [ $((deadline - SECONDS)) -gt 240 ] || break
    sleep 0.2
  done
  read -r pct io io_max <<<"$saved"
  echo "SET GLOBAL innodb_max_dirty_pages_pct = $pct; SET GLOBAL innodb_io_capacity = $io;
        SET GLOBAL innodb_io_capacity_max = $io_max" | sql
  data_mib=$(echo "SELECT ROUND(SUM(data_length + index_length) / 1048576) FROM information_schema.tables
                   WHERE table_schema = '$DATABASE'" | sql)
  # What the once-a-minute silent-subscription count costs at this size (the query of
  # store::count_silent_subscriptions; an index range since migration 0006).
  local t0
  t0=$(date +%s%N)
  echo "SELECT COUNT(*) FROM registrations r WHERE r.state = 'active' AND r.silent_after < UTC_TIMESTAMP(6)" |
    sql >/dev/null
  silent_count_ms=$((($(date +%s%N) - t0) / 1000000))
  say "  data $data_mib MiB; $dirty dirty pages left; the silent-subscription count takes $silent_count_ms ms"
}

# MariaDB's counters of statements, rows and pages, as one JSON object (for per-event figures).
db_status() {
  echo "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_select', 'Com_insert_select',
          'Com_update', 'Com_delete', 'Com_commit', 'Innodb_rows_read', 'Innodb_rows_inserted',
          'Innodb_rows_updated', 'Innodb_rows_deleted', 'Innodb_buffer_pool_read_requests',
          'Innodb_buffer_pool_reads', 'Innodb_data_fsyncs', 'Innodb_buffer_pool_pages_flushed',
          'Handler_read_key', 'Handler_read_next', 'Handler_read_rnd_next', 'Handler_write',
          'Handler_delete', 'Handler_update')" |
    sql | jq -R -s -c 'split("\n") | map(select(length > 0) | split("\t") | {key: .[0], value: (.[1] | tonumber)}) | from_entries'
}

# Rows read per table and per index so far (userstat), as one JSON object; {} without --table-stats.
table_stats() {
  if [ "$table_stats" = 0 ]; then echo '{}'; return; fi
  echo "SELECT CONCAT(table_name, ':rows_read'), rows_read FROM information_schema.table_statistics
          WHERE table_schema = '$DATABASE'
        UNION ALL SELECT CONCAT(table_name, '.', index_name), rows_read FROM information_schema.index_statistics
          WHERE table_schema = '$DATABASE'" |
    sql | jq -R -s -c 'split("\n") | map(select(length > 0) | split("\t") | {key: .[0], value: (.[1] | tonumber)}) | from_entries'
}

# InnoDB's purge backlog (undo of committed deletes and updates not yet purged): the outbox's
# deleted rows stay in its indexes, delete-marked, until purge removes them.
history_length() {
  echo "SHOW ENGINE INNODB STATUS" | sql | tr '\\' '\n' | awk '/History list length/ { print $4; exit }'
}

# Waits until the outbox holds no queued row (every callback answered OK has been dispatched).
drain() { # limit-seconds
  local until=$((SECONDS + $1)) queued
  while [ "$SECONDS" -lt "$until" ]; do
    queued=$(echo "SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL" | sql)
    [ "$queued" != 0 ] || return 0
    sleep 0.1
  done
  say "  WARNING: $queued notifications still queued after $1 s"
  return 1
}

badge_base=1
# run SCALE NAME RATE SECONDS [MAILBOXES]: one fanout_load run (to mailboxes 1…MAILBOXES, by
# default the whole scale), its drain, CPU of mailpushd and mariadbd around both, metric deltas,
# and fanout_check; leaves $tmp/runs/SCALE-NAME.json.
run() {
  local n=$1 name=$2 rate=$3 secs=$4 mailboxes=${5:-$1} out="$tmp/runs/$1-$2"
  local mp0 mp1 db0 db1 sim0 sim1 busy0 busy1 t0 t1 drained=true perf_pids=()
  kill -0 "$mailpushd_pid" 2>/dev/null || die "mailpushd is not running"
  metrics "$out.metrics0"
  db_status >"$out.db0"
  table_stats >"$out.ts0"
  mp0=$(ticks "$mailpushd_pid"); db0=$(ticks "$(db_pid)"); sim0=$(ticks "$sim_pid"); busy0=$(machine_busy)
  t0=$(date +%s%N)
  if [ -n "$perf_dir" ] && [ "$rate" -ge 5000 ]; then
    mkdir -p "$perf_dir"
    perf record -q -g -F 499 -o "$perf_dir/$n-$name.mailpushd.data" -p "$mailpushd_pid" 2>/dev/null &
    perf_pids+=($!)
    perf record -q -g -F 499 -o "$perf_dir/$n-$name.mariadbd.data" -p "$(db_pid)" 2>/dev/null &
    perf_pids+=($!)
  fi
  local rate_args=(--rate "$rate")
  [ "$rate" != 0 ] || rate_args=(--rate 0 --max-events 400000)
  timeout "$(allow $((secs + 60)))" "$load" --port "$listener_port" --ca "$tls/ca.crt" --mode events \
    --mailboxes "$mailboxes" --connections "$CONNECTIONS" "${rate_args[@]}" --duration "$secs" \
    --seed $((n + rate)) --badge-base "$badge_base" --events "$out.events" --label "$name" \
    >"$out.load" 2>"$out.load.err" || { cat "$out.load.err" >&2; die "fanout_load $name"; }
  local history_end history_drained
  history_end=$(history_length)
  drain "$(allow 120)" || drained=false
  t1=$(date +%s%N)
  mp1=$(ticks "$mailpushd_pid"); db1=$(ticks "$(db_pid)"); sim1=$(ticks "$sim_pid"); busy1=$(machine_busy)
  if [ "${#perf_pids[@]}" -gt 0 ]; then
    kill -INT "${perf_pids[@]}" 2>/dev/null || true
    wait "${perf_pids[@]}" 2>/dev/null || true
  fi
  metrics "$out.metrics1"
  db_status >"$out.db1"
  table_stats >"$out.ts1"
  history_drained=$(history_length)
  local dead
  dead=$(echo "SELECT COUNT(*) FROM outbox WHERE state = 'dead'" | sql)
  timeout "$(allow 120)" "$check" --events "$out.events" --control-port "$sim_control" >"$out.check" 2>"$out.check.err" ||
    { cat "$out.check.err" >&2; die "fanout_check $name"; }
  sim_reset
  echo "DELETE FROM outbox WHERE state = 'dead'" | sql
  badge_base=$((badge_base + $(jq -r .events_written "$out.load")))
  jq -c -n --slurpfile l "$out.load" --slurpfile c "$out.check" --argjson m "$(metric_deltas "$out.metrics0" "$out.metrics1")" \
    --slurpfile d0 "$out.db0" --slurpfile d1 "$out.db1" --slurpfile t0 "$out.ts0" --slurpfile t1 "$out.ts1" \
    --argjson tck "$clk_tck" --argjson mp "$((mp1 - mp0))" --argjson db "$((db1 - db0))" \
    --argjson simt "$((sim1 - sim0))" --argjson busy "$((busy1 - busy0))" --argjson wall_ms "$(((t1 - t0) / 1000000))" \
    --argjson n "$n" --argjson mailboxes "$mailboxes" --arg name "$name" --argjson rate "$rate" --argjson dead "$dead" --argjson drained "$drained" \
    --argjson h1 "${history_end:-null}" --argjson h2 "${history_drained:-null}" '
    def r(d): . * d | round / d;
    def by_label(prefix): [$m | to_entries[] | select(.key | startswith(prefix + "{"))
      | {key: (.key | capture("=\"(?<v>[^\"]*)\"").v), value: .value}] | from_entries;
    # The bucket the q-quantile falls in (an upper bound, in ms), from the histogram deltas.
    def bucket_quantile(name; q): ([$m | to_entries[] | select(.key | startswith(name + "_bucket{"))
      | {le: (.key | capture("le=\"(?<v>[^\"]*)\"").v), c: .value}
      | select(.le != "+Inf") | {le: (.le | tonumber), c}] | sort_by(.le)) as $b
      | ($m[name + "_count"] // 0) as $total
      | if $total == 0 then null else ([$b[] | select(.c >= q * $total)][0].le // "inf") | if type == "number" then . * 1000 else . end end;
    $l[0] as $l | $c[0] as $c
    | ($l.soap_ok) as $ok
    | {scale: $n, run: $name, mailboxes: $mailboxes, rate_target: $rate, seconds: $l.elapsed_s,
       events_per_s: ($l.ok_rate | r(10)), requests: $l.requests, ok: $ok,
       answers_503: ($l.non_2xx["503"] // 0),
       other_answers: ($l.requests - $ok - ($l.non_2xx["503"] // 0)),
       non_2xx: $l.non_2xx, errors: $l.errors, skipped: $l.skipped, redraws: $l.redraws,
       answer_ms: $l.answer_ms, client_max_lag_ms: $l.max_lag_ms,
       sim_accepted: $c.sim_accepted, matched: $c.matched, stray: $c.stray, duplicates: $c.duplicates,
       events_delivered_all: $c.events_delivered_all, events_delivered_some: $c.events_delivered_some,
       events_coalesced: $c.events_coalesced, notifications_expected: $c.notifications_expected,
       notifications_delivered: $c.notifications_delivered,
       notifications_coalesced: $c.notifications_coalesced, delivered_not_ok: $c.delivered_not_ok,
       lost_devices: $c.lost_devices, lost_mailboxes: $c.lost_mailboxes, dead_letters: $dead,
       drained: $drained, purge_history_at_end: $h1, purge_history_drained: $h2, latency_ms: $c.latency_ms, latency_from_send_ms: $c.latency_from_send_ms,
       wall_s: ($wall_ms / 1000),
       mailpushd_cpu_s: ($mp / $tck), mariadbd_cpu_s: ($db / $tck), sim_cpu_s: ($simt / $tck),
       client_cpu_s: $l.client_cpu_s,
       other_cpu_s: ([($busy - $mp - $db - $simt) / $tck - $l.client_cpu_s, 0] | max | r(100)),
       mailpushd_cpu_s_per_1k: (if $ok > 0 then $mp / $tck * 1000 / $ok | r(1000) else null end),
       mariadbd_cpu_s_per_1k: (if $ok > 0 then $db / $tck * 1000 / $ok | r(1000) else null end),
       cpu_s_per_1k: (if $ok > 0 then ($mp + $db) / $tck * 1000 / $ok | r(1000) else null end),
       db_batches: ($m["mailpush_db_batch_writes_count"] // 0),
       db_batch_writes_mean: (if ($m["mailpush_db_batch_writes_count"] // 0) > 0
         then $m["mailpush_db_batch_writes_sum"] / $m["mailpush_db_batch_writes_count"] | r(10) else null end),
       db_batch_ms_mean: (if ($m["mailpush_db_batch_writes_count"] // 0) > 0
         then $m["mailpush_db_batch_seconds_sum"] * 1000 / $m["mailpush_db_batch_writes_count"] | r(100) else null end),
       dispatch_rounds: ($m["mailpush_dispatch_round_rows_count"] // 0),
       dispatch_round_rows_mean: (if ($m["mailpush_dispatch_round_rows_count"] // 0) > 0
         then $m["mailpush_dispatch_round_rows_sum"] / $m["mailpush_dispatch_round_rows_count"] | r(10) else null end),
       dispatch_rows: by_label("mailpush_dispatch_rows_total"),
       delay_metric_ms: {count: ($m["mailpush_notification_delay_seconds_count"] // 0),
         mean: (if ($m["mailpush_notification_delay_seconds_count"] // 0) > 0
           then $m["mailpush_notification_delay_seconds_sum"] * 1000 / $m["mailpush_notification_delay_seconds_count"] | r(100) else null end),
         p50_le: bucket_quantile("mailpush_notification_delay_seconds"; 0.5),
         p99_le: bucket_quantile("mailpush_notification_delay_seconds"; 0.99)},
       cache_lookups: by_label("mailpush_registration_cache_lookups_total"),
       callbacks: by_label("mailpush_ews_callbacks_total"),
       # MariaDB per 1,000 events (statements, rows, buffer-pool pages; ~10 drain polls a second included).
       mariadb_per_1k: (if $ok > 0 then ($d1[0] | to_entries | map({key: .key,
         value: ((.value - ($d0[0][.key] // 0)) * 1000 / $ok | r(10))}) | from_entries) else null end),
       # Rows written (handler writes + updates + deletes) per event answered OK: callback
       # writes, the dispatcher clears, the instance heartbeat; last-heard flushes that fall in
       # the run (every heard_flush_s, 30 s) are amortised over the events of all registrations.
       rows_written_per_event: (if $ok > 0 then ((["Handler_write", "Handler_update",
         "Handler_delete"] | map(($d1[0][.] // 0) - ($d0[0][.] // 0)) | add) / $ok | r(1000)) else null end),
       rows_read_per_1k: (if $ok > 0 and ($t1[0] | length) > 0 then ($t1[0] | to_entries | map({key: .key,
         value: ((.value - ($t0[0][.key] // 0)) * 1000 / $ok | r(10))}) | map(select(.value > 0)) | from_entries) else null end)}' \
    >"$out.json" || die "assembling $name"
  say "$(jq -r '"  \(.run): \(.ok) OK (\(.answers_503) x 503, \(.other_answers) other) = \(.events_per_s)/s; \(.matched) notifications matched (\(.events_coalesced) events coalesced), p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) max \(.latency_ms.max) ms; lost \(.lost_devices); CPU per 1k events: mailpushd \(.mailpushd_cpu_s_per_1k) s + MariaDB \(.mariadbd_cpu_s_per_1k) s; rows written per event \(.rows_written_per_event); other processes \(.other_cpu_s) s"' "$out.json")"
}

# ---------------------------------------------------------------- the scales

mkdir -p "$tmp/runs"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
b0=$(machine_busy); sleep 2; b1=$(machine_busy)
busy_before_pct=$(((b1 - b0) * 100 / (2 * clk_tck * $(nproc))))
say "machine ${busy_before_pct}% busy before the runs (load average $load_before)"
cache_entries=$(jq -r '.limits.registration_cache_entries // 4000000' "$region")

for n in "${scale_list[@]}"; do
  badge_base=1 # badges are unique within a scale (each scale has its own data)
  say "scale $n: loading $n mailboxes with 1-3 devices each"
  load_scale "$n"
  start_mailpushd
  rss_start_kib=$(kib "$mailpushd_pid" VmRSS)
  # The dispatcher starts after the first credential refresh: one event to mailbox 1 shows it is
  # up and opens the APNs connection before anything is measured.
  say "  first notification (credential loaded, APNs connection open)"
  timeout "$(allow 30)" "$load" --port "$listener_port" --ca "$tls/ca.crt" --mailboxes 1 --rate 1 \
    --duration 1 --connections 1 --badge-base 999999 --label probe >"$tmp/runs/$n-probe.load" 2>&1 ||
    die "probe: $(cat "$tmp/runs/$n-probe.load")"
  until_probe=$((SECONDS + 40))
  until [ "$(sim_get /stats | jq .accepted)" -ge 1 ]; do
    [ "$SECONDS" -lt "$until_probe" ] || die "no notification reached apns-sim: $(tail -n 5 "$tmp/mailpushd-$launches.log")"
    sleep 0.2
  done
  drain 30 || true
  sim_reset
  # The registration cache as in steady state (every subscription's heartbeat, 30 min, comes
  # within the cache's hour): mailpushd preloads it from the database at start, in the background.
  say "  waiting for mailpushd to preload its registration cache ($devices registrations, $cache_entries entries at most)"
  until_preload=$((SECONDS + $(allow 300)))
  while :; do
    metrics "$tmp/preload.metrics"
    preload_s=$(awk '$1 == "mailpush_registration_cache_preload_seconds" {printf "%.1f", $2}' "$tmp/preload.metrics")
    [ -z "$preload_s" ] || break
    [ "$SECONDS" -lt "$until_preload" ] || die "mailpushd did not preload its registration cache: $(tail -n 3 "$tmp/mailpushd-$launches.log")"
    sleep 0.5
  done
  preloaded=$(awk '$1 == "mailpush_registration_cache_entries" {printf "%d", $2}' "$tmp/preload.metrics")
  rss_preloaded_kib=$(kib "$mailpushd_pid" VmRSS)
  say "  preloaded $preloaded registrations in $preload_s s; mailpushd RSS $(mib "$rss_preloaded_kib") MiB"
  for rate in "${rate_list[@]}"; do
    say "  $rate events/s for ${seconds}s, open loop, $CONNECTIONS connections"
    run "$n" "rate$rate" "$rate" "$seconds"
  done
  if [ "$capacity_seconds" -gt 0 ]; then
    say "  capacity: as fast as $CONNECTIONS connections go, ${capacity_seconds}s"
    run "$n" capacity 0 "$capacity_seconds"
  fi
  jq -n -c --argjson n "$n" --argjson devices "$devices" --argjson load_ms "$load_ms" --argjson data "${data_mib:-0}" \
    --argjson silent "$silent_count_ms" --argjson preloaded "$preloaded" --argjson preload_s "$preload_s" \
    --argjson rss_pre "$rss_preloaded_kib" \
    --argjson hwm "$(kib "$mailpushd_pid" VmHWM)" --argjson rss "$(kib "$mailpushd_pid" VmRSS)" \
    --argjson rss0 "$rss_start_kib" \
    '{scale: $n, devices: $devices, load_s: ($load_ms / 1000), data_mib: $data, silent_count_ms: $silent,
      preloaded: $preloaded, preload_s: $preload_s, rss_preloaded_mib: ($rss_pre / 1024 | . * 10 | round / 10),
      rss_start_mib: ($rss0 / 1024 | . * 10 | round / 10),
      rss_peak_mib: ($hwm / 1024 | . * 10 | round / 10), rss_end_mib: ($rss / 1024 | . * 10 | round / 10)}' \
    >"$tmp/runs/$n-scale.json"
  say "  mailpushd RSS: peak $(mib "$(kib "$mailpushd_pid" VmHWM)") MiB, now $(mib "$(kib "$mailpushd_pid" VmRSS)") MiB"
  grep -v -e '"level":"info"' -e 'registration.not_configured' "$tmp/mailpushd-$launches.log" | tail -n 3 >&2 || true
  stop_mailpushd
done

# ---------------------------------------------------------------- report

small=${scale_list[0]}
large=${scale_list[$((${#scale_list[@]} - 1))]}
high=${rate_list[$((${#rate_list[@]} - 1))]}
jq -s -c --argjson small "$small" --argjson large "$large" --argjson high "$high" \
  --argjson busy "$busy_before_pct" --arg load "$load_before" --argjson cores "$(nproc)" \
  --argjson conns "$CONNECTIONS" --argjson secs "$seconds" --argjson dispatch "$dispatch_json" \
  --argjson cache "$cache_entries" --argjson bp "$((bp_now / 1048576))" --argjson quick "$quick" \
  --arg customer "$customer_public" --arg dbv "$(cut -f1 <<<"$db_settings")" \
  --arg experiment "$experiment_sql" --arg region_patch "${FANOUT_BENCH_REGION:-}" \
  --argjson threads "$(jq '.threads // 0' "$region")" --argjson pool "$(jq '.database.pool_size' "$region")" '
  def r(d): . * d | round / d;
  [.[] | select(.run)] as $runs | [.[] | select(.run | not)] as $scales
  | def get(n; name): [$runs[] | select(.scale == n and .run == name)][0];
  def fig(x): {mailboxes: x.mailboxes, events_per_s: x.events_per_s, ok: x.ok, answers_503: x.answers_503,
      other_answers: x.other_answers, errors: x.errors, sim_accepted: x.sim_accepted,
      notifications_delivered: x.notifications_delivered, events_coalesced: x.events_coalesced,
      notifications_coalesced: x.notifications_coalesced, lost_devices: x.lost_devices,
      stray: x.stray, duplicates: x.duplicates, dead_letters: x.dead_letters,
      p50_ms: x.latency_ms.p50, p99_ms: x.latency_ms.p99, max_ms: x.latency_ms.max,
      answer_p99_ms: x.answer_ms.p99,
      mailpushd_cpu_s_per_1k: x.mailpushd_cpu_s_per_1k, mariadbd_cpu_s_per_1k: x.mariadbd_cpu_s_per_1k,
      cpu_s_per_1k: x.cpu_s_per_1k, other_cpu_s: x.other_cpu_s,
      db_batch_writes_mean: x.db_batch_writes_mean, dispatch_round_rows_mean: x.dispatch_round_rows_mean,
      mariadb_per_1k: x.mariadb_per_1k, db_batch_ms_mean: x.db_batch_ms_mean,
      delay_metric_ms: x.delay_metric_ms, dispatch_rounds: x.dispatch_rounds, seconds: x.seconds,
      client_max_lag_ms: x.client_max_lag_ms, purge_history_at_end: x.purge_history_at_end,
      rows_read_per_1k: x.rows_read_per_1k, rows_written_per_event: x.rows_written_per_event,
      cache_hit: (if x.cache_lookups then ((x.cache_lookups.hit // 0) / ([(x.cache_lookups | add // 0), 1] | max) | r(1000)) else null end)};
  ([$runs[] | .lost_devices] | add) as $lost
  | (if $high == 5000 then [$runs[] | select(.run == "rate5000") | .latency_ms.p99] | max else null end) as $p99
  | (if $small != $large and get($large; "rate\($high)") and get($small; "rate\($high)")
     then (get($large; "rate\($high)").cpu_s_per_1k / get($small; "rate\($high)").cpu_s_per_1k | r(1000)) else null end) as $ratio
  | ([$runs[] | select(.rate_target > 0) | .rate_target] | unique
     | map(. as $rt | {key: "\($rt)", value: (if $small != $large and get($large; "rate\($rt)") and get($small; "rate\($rt)")
         then (get($large; "rate\($rt)").cpu_s_per_1k / get($small; "rate\($rt)").cpu_s_per_1k | r(1000)) else null end)})
     | from_entries) as $ratios
  | (if $large >= 1000000 then [$scales[] | select(.scale == $large) | .rss_peak_mib][0] else null end) as $rss
  | {benchmark: "fanout", quick: ($quick == 1), cores: $cores, machine_busy_pct_before: $busy, load_before: $load,
     mariadb: $dbv, innodb_buffer_pool_mib: $bp, customer: $customer, connections: $conns, seconds_per_rate: $secs,
     mailpushd: {threads: $threads, pool_size: $pool, registration_cache_entries: $cache, dispatch: $dispatch},
     experiment: (if $experiment == "" and $region_patch == "" then null
                  else {sql: $experiment, region: $region_patch} end),
     other_cpu_s_during_runs: ([$runs[] | .other_cpu_s] | add | r(10)),
     scales: ($scales | map({key: "\(.scale)", value: (. + {runs: ([$runs[] as $x | select($x.scale == .scale) | $x]
                | map({key: .run, value: fig(.)}) | from_entries)})}) | from_entries),
     cost_ratio: $ratio, cost_ratio_by_rate: $ratios,
     p99_ms_at_5000: $p99, rss_1m_mib: $rss, lost_devices: $lost,
     capacity: ([$runs[] | select(.run == "capacity")
       | {key: "\(.scale)", value: {events_per_s, sustained_events_per_s: (.ok / .wall_s | r(10)),
                                    p99_ms: .latency_ms.p99}}] | from_entries),
     # A goal that this run could not measure (--quick: no 1M scale) is null, and not met.
     p99_ms_at_5000_le_50: (if $p99 == null then null else $p99 <= 50 end),
     cost_ratio_le_1_3: (if $ratio == null then null else $ratio <= 1.3 end),
     rss_1m_le_300_mib: (if $rss == null then null else $rss <= 300 end),
     no_loss: ($lost == 0 and ([$runs[] | .stray] | add) == 0)}
  # The badge-event goals (issue 19), at the smallest scale: CPU per event at capacity
  # (mailpushd + MariaDB), the capacity itself, and CPU per event at 1,000/s against it.
  | (get($small; "capacity")) as $cap | (get($small; "rate1000")) as $low
  | .event_goals = {
      cpu_us_per_event_at_capacity: (if $cap then $cap.cpu_s_per_1k * 1000 | r(10) else null end),
      capacity_events_per_s: (if $cap then $cap.events_per_s else null end),
      low_rate_cpu_ratio: (if $cap and $low then $low.cpu_s_per_1k / $cap.cpu_s_per_1k | r(100) else null end),
      rows_written_per_event_at_capacity: (if $cap then $cap.rows_written_per_event else null end)}
  | .event_goals += {
      cpu_le_100_us: (if .event_goals.cpu_us_per_event_at_capacity == null then null else .event_goals.cpu_us_per_event_at_capacity <= 100 end),
      capacity_ge_12000: (if .event_goals.capacity_events_per_s == null then null else .event_goals.capacity_events_per_s >= 12000 end),
      low_rate_le_2x: (if .event_goals.low_rate_cpu_ratio == null then null else .event_goals.low_rate_cpu_ratio <= 2 end)}
  | . + {goals_met: (.p99_ms_at_5000_le_50 == true and .cost_ratio_le_1_3 == true
                     and .rss_1m_le_300_mib == true and .no_loss)}' \
  "$tmp"/runs/*-rate*.json $(ls "$tmp"/runs/*-capacity.json "$tmp"/runs/*-cached*.json 2>/dev/null) "$tmp"/runs/*-scale.json \
  >"$tmp/result.json" || die "assembling the result"

jq -r '
  def goal(name; v; rule; ok): "  \(name) = \(v)  goal \(rule)  \(if ok == null then "not measured" elif ok then "met" else "MISSED" end)";
  "",
  "Fan-out benchmark: \(.cores) cores shared by fanout_load, mailpushd, MariaDB \(.mariadb) (buffer pool \(.innodb_buffer_pool_mib) MiB) and apns-sim; \(.connections) keep-alive connections; one customer",
  "  machine \(.machine_busy_pct_before)% busy before (load \(.load_before)); other processes used \(.other_cpu_s_during_runs) CPU s during the runs",
  "  mailpushd: threads \(.mailpushd.threads), database pool \(.mailpushd.pool_size), registration cache \(.mailpushd.registration_cache_entries), dispatch \(.mailpushd.dispatch | tojson)",
  (.scales | to_entries[] | .value as $s |
    "  \($s.scale) mailboxes (\($s.devices) devices; loaded in \($s.load_s) s; \($s.data_mib) MiB; cache preload \($s.preloaded) in \($s.preload_s) s, RSS then \($s.rss_preloaded_mib) MiB; RSS peak \($s.rss_peak_mib) MiB, end \($s.rss_end_mib) MiB; silent count \($s.silent_count_ms) ms):",
    ($s.runs | to_entries[] | "    \(.key | .[0:12] | . + " " * (12 - length)) \(.value.events_per_s)/s OK \(.value.ok), 503 \(.value.answers_503), other \(.value.other_answers); sim \(.value.sim_accepted); delivered \(.value.notifications_delivered), coalesced \(.value.notifications_coalesced); p50 \(.value.p50_ms) p99 \(.value.p99_ms) max \(.value.max_ms) ms; CPU s/1k events mailpushd \(.value.mailpushd_cpu_s_per_1k) + MariaDB \(.value.mariadbd_cpu_s_per_1k); cache hits \(.value.cache_hit); lost \(.value.lost_devices)")),
  goal("p99_ms_at_5000  "; .p99_ms_at_5000; "<= 50"; .p99_ms_at_5000_le_50),
  goal("cost_ratio      "; .cost_ratio; "<= 1.3 (1M / 10k CPU per event, mailpushd + MariaDB; by rate \(.cost_ratio_by_rate | tojson))"; .cost_ratio_le_1_3),
  goal("rss_1m_mib      "; .rss_1m_mib; "<= 300"; .rss_1m_le_300_mib),
  goal("lost_devices    "; .lost_devices; "= 0 (and no stray notification)"; .no_loss),
  goal("cpu_us_per_event"; .event_goals.cpu_us_per_event_at_capacity; "<= 100 (mailpushd + MariaDB at capacity, smallest scale)"; .event_goals.cpu_le_100_us),
  goal("capacity        "; .event_goals.capacity_events_per_s; ">= 12000 events/s (smallest scale)"; .event_goals.capacity_ge_12000),
  goal("low_rate_ratio  "; .event_goals.low_rate_cpu_ratio; "<= 2 (CPU per event at 1,000/s over capacity)"; .event_goals.low_rate_le_2x),
  "  rows written per event at capacity: \(.event_goals.rows_written_per_event_at_capacity) (MariaDB handler row writes + updates + deletes, all writers)",
  (.capacity | to_entries[] | "  capacity at \(.key): \(.value.events_per_s) callbacks/s answered OK with 64 connections; \(.value.sustained_events_per_s)/s counting until the last badge was delivered (p99 \(.value.p99_ms) ms)"),
  "  goals_met = \(.goals_met)",
  ""' "$tmp/result.json"
cat "$tmp/result.json"
