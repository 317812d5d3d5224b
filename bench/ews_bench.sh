#!/usr/bin/env bash
# The EWS listener benchmark (issue 4): mailpushd against a static-reply nginx, both over HTTPS
# on loopback, driven by bench/ews_load with the same settings. See bench/README.md.
#
#   bench/ews_bench.sh [--skip-build] [--build-dir DIR] [--registrations N] [--threads T]
#                      [--keep-tmp] [--quick]
#
# Builds the release preset, starts a private MariaDB, migrates, loads N (100,000) registrations
# with bulk SQL, starts mailpushd and a private nginx, binds every subscription, then runs
#   (a) keep-alive, 8 connections, max rate, 20 s     (b) new TLS connection per request, 15 s
#   (c) keep-alive at half of mailpushd's (a) rate, 20 s, for p99
#   (d) keep-alive, 64 connections, max rate, 15 s (capacity with room to batch; no goal)
#   (h8), (h64) heartbeats: one StatusEvent per registration on its bound subscription (each a
#       registration of its own: one last-heard row per heartbeat, as in production), keep-alive,
#       8 and 64 connections, max rate; CPU counted until every last-heard time is in MariaDB
# against both, checks in MariaDB that what mailpushd answered OK was recorded, and prints a
# summary and, last, one JSON line with the figures, the ratios and goals_met.
# Progress goes to stderr. Everything it starts is stopped on exit; it never runs for more
# than 10 minutes (each step has a time limit taken from what is left of the budget).
# --skip-build uses the binaries already in the build folder; --quick runs 5 s each (a smoke
# test, not figures to report); --keep-tmp keeps the temporary folder (logs, runs/*.json);
# --perf DIR records `perf` profiles of mailpushd and mariadbd during every mailpushd run into DIR.
# --hostile runs, instead of (a)-(d), the flood of made-up listener URLs (issue 17): (e) real
# callbacks at 1,000/s alone, (f) the same while a second ews_load POSTs to 5,000 new random
# secrets a second, (g) the flood alone; it reports the real callbacks' p99 in (e) and (f) and
# mailpushd's and MariaDB's CPU per refused request in (g); then (h), the flood alone again with
# made-up secrets in the capability's form (44 characters, refused from their missing tag
# without a lookup: the region gets a region secret for it). --legacy-region leaves out the region
# keys newer than issue 17's server (to measure a build from before it) and (h).
# --heartbeats-only runs (h8) and (h64) alone and prints their JSON (quicker, for experiments).
# --durable-heartbeats leaves out listener.heard_flush_s (a build from before heartbeats were
# answered from memory, issue 19). The region writes heartbeats every 5 s (30 s by default).
set -euo pipefail

readonly BUDGET_SECONDS=600
RUN_A_SECONDS=20 RUN_B_SECONDS=15 RUN_C_SECONDS=20 RUN_D_SECONDS=15
readonly CONNECTIONS=8 CAPACITY_CONNECTIONS=64
readonly DATABASE=mailpush_bench

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"

skip_build=0
keep_tmp=0
build_dir=""
registrations=100000
client_threads=1
perf_dir=""

usage() { sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
hostile=0
legacy_region=0
durable_heartbeats=0
heartbeats_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --keep-tmp) keep_tmp=1 ;;
    --quick) RUN_A_SECONDS=5 RUN_B_SECONDS=5 RUN_C_SECONDS=5 RUN_D_SECONDS=5 ;;
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --registrations) registrations=$2 && shift ;;
    --threads) client_threads=$2 && shift ;;
    --perf) perf_dir=$(realpath -m -- "$2") && shift ;;
    --hostile) hostile=1 ;;
    --legacy-region) legacy_region=1 ;;
    --durable-heartbeats) durable_heartbeats=1 ;;
    --heartbeats-only) heartbeats_only=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "ews_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$registrations" =~ ^[0-9]+$ ]] || [ "$registrations" -lt 1000 ]; then
  echo "ews_bench: --registrations must be a number >= 1000" >&2
  exit 2
fi
[[ "$client_threads" =~ ^[1-8]$ ]] || { echo "ews_bench: --threads must be 1 to 8" >&2; exit 2; }

readonly BENCH_NAME=bench
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

# ---------------------------------------------------------------- cleanup

tmp=$(mktemp -d /tmp/mailpush-bench.XXXXXX)
mailpushd_pid=""
nginx_pid=""
db_started=0
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_process "$mailpushd_pid" TERM 100
  stop_process "$nginx_pid" QUIT 50
  if [ "$db_started" = 1 ]; then
    timeout 90 bash scripts/mariadb.sh stop --datadir "$tmp/db" >/dev/null 2>&1 ||
      echo "ews_bench: could not stop the private MariaDB in $tmp/db" >&2
  fi
  if [ "$keep_tmp" = 1 ]; then
    echo "ews_bench: kept $tmp" >&2
  else
    rm -rf -- "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools

for tool in jq curl openssl mariadb ss awk cmake; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/install-deps.sh installs the project's tools)"
done
ensure_nginx

# ---------------------------------------------------------------- build

if [ -z "$build_dir" ]; then build_dir="$root/build/release"; fi
[ "$skip_build" = 1 ] || build_release mailpushd mailpushctl ews_load ews_seed
mailpushd="$build_dir/src/app/mailpushd"
mailpushctl="$build_dir/src/app/mailpushctl"
ews_load="$build_dir/bench/ews_load"
ews_seed="$build_dir/bench/ews_seed"
for b in "$mailpushd" "$mailpushctl" "$ews_load" "$ews_seed"; do
  [ -x "$b" ] || die "$b is missing: build the release preset (or drop --skip-build)"
done

# ---------------------------------------------------------------- helpers

sql_command=(mariadb --defaults-file="$tmp/db/my.cnf" --protocol=socket --user="$(id -un)" --batch
  --skip-column-names --connect-timeout=5 "$DATABASE")
sql() { "${sql_command[@]}"; } # SQL on stdin -> tab-separated rows

db_pid() { cat "$tmp/db/mariadbd.pid"; }

# ---------------------------------------------------------------- TLS, MariaDB, schema, data

tls="$tmp/tls"
say "development TLS files (certs/make-dev-certs.sh)"
timeout "$(allow 60)" bash certs/make-dev-certs.sh "$tls" >/dev/null 2>&1 || die "certs/make-dev-certs.sh"

bench_port db_port
say "starting a private MariaDB on 127.0.0.1:$db_port (datadir $tmp/db)"
db_started=1
timeout "$(allow 120)" bash scripts/mariadb.sh start --datadir "$tmp/db" --port "$db_port" --database "$DATABASE" \
  >"$tmp/mariadb-start.log" 2>&1 || { cat "$tmp/mariadb-start.log" >&2; die "scripts/mariadb.sh start"; }

bench_port listener_port
region="$tmp/region.json"
jq --argjson port "$listener_port" --arg cert "$tls/listener.crt" --arg key "$tls/listener.key" \
  --argjson dbport "$db_port" --arg db "$DATABASE" --arg pw "$tmp/db/mailpush.password" --arg ca "$tls/ca.crt" '
  .listener.port = $port | .listener.tls_cert = $cert | .listener.tls_key = $key
  | .database.host = "127.0.0.1" | .database.port = $dbport | del(.database.socket)
  | .database.name = $db | .database.password_file = $pw | .database.migrate_on_start = false
  | .apns.ca_file = $ca | del(.registration)
  | .limits.max_connections = 20000 | .log_level = "warn" | .threads = 1 | del(.portal)
  | . * (env.EWS_BENCH_REGION // "{}" | fromjson)' regions/dev.json >"$region"
if [ "$hostile" = 1 ] && [ "$legacy_region" = 0 ]; then
  bash scripts/make-region-secret.sh "$tmp/region-secret" >/dev/null
  jq --arg s "$tmp/region-secret" '.registration = {secret_file: $s}' "$region" >"$region.new" &&
    mv "$region.new" "$region"
fi
# One loopback address sends everything: per-address limits would measure the limiter. (The
# hostile runs keep the unknown-secret limit off too: a flood from many addresses is the case.)
# The one customer's callbacks go past its default callback rate on purpose: off as well.
if [ "$legacy_region" = 0 ]; then
  jq '.limits.max_connections_per_address = 0 | .limits.connections_per_second_per_address = 0
      | .limits.unknown_secrets_per_second_per_address = 0
      | .limits.callbacks_per_second_per_customer = 0
      | .limits.callbacks_per_second_per_registration = 0' "$region" >"$region.new" && mv "$region.new" "$region"
fi
if [ "$legacy_region" = 0 ] && [ "$durable_heartbeats" = 0 ]; then
  jq '.listener.heard_flush_s = 5' "$region" >"$region.new" && mv "$region.new" "$region"
fi

say "migrating (mailpushctl migrate)"
timeout "$(allow 60)" "$mailpushctl" --region "$region" migrate >"$tmp/migrate.log" 2>&1 ||
  { cat "$tmp/migrate.log" >&2; die "mailpushctl migrate"; }
# EWS_BENCH_SQL='ALTER TABLE …' runs after the migrations (experiments).
if [ -n "${EWS_BENCH_SQL:-}" ]; then echo "$EWS_BENCH_SQL" | sql || die "EWS_BENCH_SQL"; fi

# The floor of durability on this machine, measured before the load: one synchronous 4 KiB write
# in MariaDB's data folder (dd, O_DSYNC), and one durable single-row autocommit UPDATE through
# the mariadb client, one after the other. A callback answered only after its commit waits at
# least one commit, so 8 connections cannot exceed 8 / (commit + the reference's round trip).
say "measuring the durability floor: synchronous writes and serial autocommit UPDATEs"
dsync_writes=1000 probe_updates=1000
t0=$(date +%s%N)
timeout "$(allow 60)" dd if=/dev/zero of="$tmp/db/dsync.probe" bs=4k count="$dsync_writes" oflag=dsync \
  status=none || die "dd (synchronous writes)"
dsync_us=$((($(date +%s%N) - t0) / 1000 / dsync_writes))
rm -f "$tmp/db/dsync.probe"
echo "CREATE TABLE bench_probe (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB; INSERT INTO bench_probe VALUES (1, 0);" | sql
for _ in $(seq 1 "$probe_updates"); do echo "UPDATE bench_probe SET v = v + 1 WHERE id = 1;"; done >"$tmp/probe.sql"
t0=$(date +%s%N)
timeout "$(allow 60)" "${sql_command[@]}" <"$tmp/probe.sql" || die "the commit probe"
commit_us=$((($(date +%s%N) - t0) / 1000 / probe_updates))
echo "DROP TABLE bench_probe" | sql
say "  synchronous 4 KiB write ${dsync_us} us, durable autocommit UPDATE ${commit_us} us (serial)"

say "generating $registrations registrations and their callback bodies (ews_seed)"
timeout "$(allow 120)" "$ews_seed" --registrations "$registrations" --sql "$tmp/seed.sql" \
  --bind "$tmp/bind.tsv" --mixed "$tmp/mixed.tsv" || die "ews_seed"
load_started=$SECONDS
timeout "$(allow 120)" "${sql_command[@]}" <"$tmp/seed.sql" || die "loading the registrations"
load_seconds=$((SECONDS - load_started))
loaded=$(echo "SELECT COUNT(*) FROM registrations WHERE state = 'active'" | sql)
[ "$loaded" = "$registrations" ] || die "expected $registrations registrations, found $loaded"
say "loaded $loaded registrations in ${load_seconds}s"
rm -f "$tmp/seed.sql"

# ---------------------------------------------------------------- servers

say "starting mailpushd on 127.0.0.1:$listener_port"
"$mailpushd" --region "$region" >"$tmp/mailpushd.log" 2>&1 </dev/null &
mailpushd_pid=$!
wait_https "https://localhost:$listener_port/readyz" "$(allow 30)" ||
  { tail -n 20 "$tmp/mailpushd.log" >&2; die "mailpushd did not become ready"; }

bench_port nginx_port
soap_ok='<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><soap:Body><m:SendNotificationResult><m:SubscriptionStatus>OK</m:SubscriptionStatus></m:SendNotificationResult></soap:Body></soap:Envelope>'
start_reference_nginx "$nginx_port" "return 200 '$soap_ok';"

# ---------------------------------------------------------------- runs

mkdir -p "$tmp/runs"
# run NAME SERVER(mailpushd|nginx) SECONDS EWS_LOAD_ARGS...: one ews_load run with the server's
# CPU (and, for mailpushd, MariaDB's) measured around it; leaves $tmp/runs/NAME.json.
run() {
  local name=$1 server=$2 secs=$3 port cpu0 cpu1 db0 db1 busy0 busy1 pids=()
  shift 3
  if [ "$server" = mailpushd ]; then
    port=$listener_port
    pids=("$mailpushd_pid")
  else
    port=$nginx_port
    read -r -a pids <<<"$(nginx_pids)"
  fi
  kill -0 "${pids[@]}" 2>/dev/null || die "$server is not running"
  local batches0='[0,0,0]' batches1='[0,0,0]'
  [ "$server" != mailpushd ] || batches0=$(batch_totals)
  cpu0=$(ticks "${pids[@]}")
  db0=$(ticks "$(db_pid)")
  busy0=$(machine_busy)
  local perf_pids=()
  if [ -n "$perf_dir" ] && [ "$server" = mailpushd ]; then
    mkdir -p "$perf_dir"
    perf record -q -g -F 999 -o "$perf_dir/$name.mailpushd.data" -p "$mailpushd_pid" 2>/dev/null &
    perf_pids+=($!)
    perf record -q -g -F 999 -o "$perf_dir/$name.mariadbd.data" -p "$(db_pid)" 2>/dev/null &
    perf_pids+=($!)
  fi
  timeout "$(allow $((secs + 60)))" "$ews_load" --port "$port" --ca "$tls/ca.crt" --threads "$client_threads" \
    --label "$name" "$@" >"$tmp/runs/$name.raw" 2>"$tmp/runs/$name.err" ||
    { cat "$tmp/runs/$name.err" >&2; die "ews_load $name"; }
  # settle: a command that returns once the run's work is done (the heartbeats' bulk write),
  # counted in the run's CPU.
  if [ -n "${settle:-}" ]; then $settle || die "$name: $settle"; fi
  cpu1=$(ticks "${pids[@]}")
  db1=$(ticks "$(db_pid)")
  busy1=$(machine_busy)
  [ "$server" != mailpushd ] || batches1=$(batch_totals)
  if [ "${#perf_pids[@]}" -gt 0 ]; then
    kill -INT "${perf_pids[@]}" 2>/dev/null || true
    wait "${perf_pids[@]}" 2>/dev/null || true
  fi
  tail -n 1 "$tmp/runs/$name.raw" | jq -c --arg server "$server" --argjson tck "$clk_tck" \
    --argjson cpu "$((cpu1 - cpu0))" --argjson db "$((db1 - db0))" --argjson busy "$((busy1 - busy0))" \
    --argjson b0 "$batches0" --argjson b1 "$batches1" '
    # Group commits during the run (mailpushd): how many, callbacks per transaction, time each.
    (($b1[0] - $b0[0]) as $n | if $n > 0 then {db_batches: $n,
       db_batch_writes_mean: (($b1[1] - $b0[1]) / $n * 10 | round / 10),
       db_batch_ms_mean: (($b1[2] - $b0[2]) * 1000 / $n * 1000 | round / 1000)} else {} end) as $batch
    | . + $batch + {server: $server, server_cpu_s: ($cpu / $tck), db_cpu_s: (if $server == "mailpushd" then $db / $tck else 0 end),
         machine_busy_s: ($busy / $tck)}
    # CPU used during the run by anything but the server, its MariaDB and the load generator.
    | . + {other_cpu_s: ([.machine_busy_s - .server_cpu_s - .db_cpu_s - .client_cpu_s, 0] | max | . * 100 | round / 100)}
    | . + {server_cpu_ms_per_callback: (if .answered > 0 then .server_cpu_s * 1000 / .answered else null end),
           db_cpu_ms_per_callback: (if .answered > 0 then .db_cpu_s * 1000 / .answered else null end)}' \
    >"$tmp/runs/$name.json" || die "ews_load $name printed no JSON: $(cat "$tmp/runs/$name.raw")"
  say "$(jq -r '"\(.label): \(.answered) answered (\(.soap_ok) OK, \(.errors) errors) in \(.elapsed_s)s = \(.ok_rate) OK/s, p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) ms, server CPU \(.server_cpu_ms_per_callback*1000|floor) us/callback, other processes \(.other_cpu_s) CPU s"' "$tmp/runs/$name.json")"
}

# [transactions, callbacks, seconds] of mailpushd's group commits so far, from its /metrics.
batch_totals() {
  curl -fsS --max-time 5 --cacert "$tls/ca.crt" "https://localhost:$listener_port/metrics" 2>/dev/null |
    awk '$1 == "mailpush_db_batch_writes_count" { n = $2 } $1 == "mailpush_db_batch_writes_sum" { w = $2 }
         $1 == "mailpush_db_batch_seconds_sum" { t = $2 } END { printf "[%d,%d,%.6f]\n", n, w, t }'
}

# What is recorded in MariaDB, for the checks after each mailpushd run.
first_id=1
# Badges belong to registrations (registration = mailbox = device id in the seed). Each NewMail
# request carries fresh ItemIds (--fresh-item-ids), so every one answered OK counts once; a
# modified registration holds 1 + i % 97 once touched, 0 before.
newmail_sum() { echo "SELECT COALESCE(SUM(unread_count), 0) FROM registrations WHERE (id - $first_id) % 5 IN (1, 2, 3)" | sql; }
modified_wrong() {
  echo "SELECT COUNT(*) FROM registrations WHERE (id - $first_id) % 5 = 4 AND unread_count <> 0
        AND unread_count <> 1 + (id - $first_id) % 97" | sql
}
db_now() { echo "SELECT UTC_TIMESTAMP(6)" | sql; }
heard_since() { echo "SELECT COUNT(*) FROM registrations WHERE last_heard_at >= '$1'" | sql; }
# wait_heard N SINCE: until N registrations have a last_heard_at from SINCE on (heartbeats are
# written in bulk every few seconds); false after 30 s.
wait_heard() {
  local n=$1 since deadline=$((SECONDS + 30))
  shift
  since="$*"
  until [ "$(heard_since "$since")" -ge "$n" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# check NAME SUM_BEFORE SINCE: compares the run's OK answers with what MariaDB holds now.
check() {
  local name=$1 before=$2 since=$3 after ok_newmail wrong heard expected_heard requests errors soap_ok verdict
  after=$(newmail_sum)
  ok_newmail=$(jq -r '.labels.newmail.soap_ok // 0' "$tmp/runs/$name.json")
  wrong=$(modified_wrong)
  requests=$(jq -r '.requests' "$tmp/runs/$name.json")
  errors=$(jq -r '.errors' "$tmp/runs/$name.json")
  soap_ok=$(jq -r '.soap_ok' "$tmp/runs/$name.json")
  # Requests take the shuffled list in order from its first line: when all were answered OK, the
  # registrations heard from are exactly those of its first min(requests, N) lines (the
  # heartbeats among them once their bulk write has run).
  if [ "$errors" = 0 ] && [ "$soap_ok" = "$requests" ]; then
    expected_heard=$((requests < registrations ? requests : registrations))
    wait_heard "$expected_heard" "$since" || true
  else
    expected_heard=null
  fi
  heard=$(heard_since "$since")
  verdict=true
  [ "$((after - before))" = "$ok_newmail" ] || verdict=false
  [ "$wrong" = 0 ] || verdict=false
  [ "$expected_heard" = null ] || [ "$heard" = "$expected_heard" ] || verdict=false
  jq -c --argjson d "$((after - before))" --argjson ok "$ok_newmail" --argjson wrong "$wrong" \
    --argjson heard "$heard" --argjson eh "$expected_heard" --argjson v "$verdict" \
    '. + {durable: {newmail_ok: $ok, unread_increments: $d, modified_mismatches: $wrong,
                    registrations_heard: $heard, registrations_expected: $eh, all_recorded: $v}}' \
    "$tmp/runs/$name.json" >"$tmp/runs/$name.json.new" && mv "$tmp/runs/$name.json.new" "$tmp/runs/$name.json"
  say "  durability: $ok_newmail NewMail answered OK, unread counts rose by $((after - before)); modified mismatches $wrong; registrations heard $heard (expected $expected_heard) -> $verdict"
}

b0=$(machine_busy); sleep 2; b1=$(machine_busy)
busy_before_pct=$(( (b1 - b0) * 100 / (2 * clk_tck * $(nproc)) ))
if [ "$busy_before_pct" -gt 10 ]; then
  say "WARNING: the machine was ${busy_before_pct}% busy before the runs (other processes): the figures will be low"
else
  say "machine ${busy_before_pct}% busy before the runs"
fi

say "binding: one StatusEvent per registration ($registrations) to mailpushd, which also fills its registration cache"
since=$(db_now)
run bind mailpushd 300 --mode keepalive --connections 32 --requests "$registrations" --bodies "$tmp/bind.tsv"
bound=$(echo "SELECT COUNT(*) FROM registrations WHERE subscription_id IS NOT NULL AND last_heard_at >= '$since'" | sql)
say "  $bound of $registrations registrations bound to their subscription id"
rss_after_bind=$(awk '/^VmRSS/ { print $2 }' "/proc/$mailpushd_pid/status")

# A counter of mailpushd's heartbeats (mailpush_ews_heartbeats_total) by result, 0 when absent.
heartbeat_count() {
  curl -fsS --max-time 5 --cacert "$tls/ca.crt" "https://localhost:$listener_port/metrics" 2>/dev/null |
    awk -v key="mailpush_ews_heartbeats_total{result=\"$1\"}" '$1 == key { n = $2 } END { printf "%d\n", n + 0 }'
}
# wait_written DEFERRED0 WRITTEN0: when heartbeats were deferred since the counts DEFERRED0, until
# WRITTEN0 + N last-heard times are written (read from mailpushd, not by scanning the table: the
# run's MariaDB CPU is the bulk write's alone); false after 30 s.
wait_written() {
  local deferred0=$1 written0=$2 deadline=$((SECONDS + 30))
  [ "$(heartbeat_count deferred)" -gt "$deferred0" ] || return 0  # written before OK (durable)
  until [ "$(heartbeat_count written)" -ge "$((written0 + registrations))" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# heartbeats NAME CONNECTIONS: one StatusEvent per registration (bind.tsv: now on the bound
# subscription) against mailpushd, CPU counted until every last-heard time is written, and the
# same requests against nginx.
heartbeats() {
  local name=$1 conns=$2 since heard
  since=$(db_now)
  settle="wait_written $(heartbeat_count deferred) $(heartbeat_count written)" \
    run "${name}_mailpushd" mailpushd 120 --mode keepalive \
    --connections "$conns" --requests "$registrations" --bodies "$tmp/bind.tsv"
  wait_heard "$registrations" "$since" || true
  heard=$(heard_since "$since")
  jq -c --argjson heard "$heard" --argjson n "$registrations" \
    '. + {durable: {registrations_heard: $heard, all_recorded: ($heard == $n and .soap_ok == $n)}}' \
    "$tmp/runs/${name}_mailpushd.json" >"$tmp/runs/${name}_mailpushd.json.new" &&
    mv "$tmp/runs/${name}_mailpushd.json.new" "$tmp/runs/${name}_mailpushd.json"
  say "  $heard of $registrations last-heard times written"
  run "${name}_nginx" nginx 120 --mode keepalive --connections "$conns" --requests "$registrations" \
    --bodies "$tmp/bind.tsv"
}

mixed=(--bodies "$tmp/mixed.tsv" --fresh-item-ids)
if [ "$hostile" = 1 ]; then
  readonly REAL_RATE=1000 FLOOD_RATE=5000 HOSTILE_SECONDS=20
  say "(e) real callbacks alone: $REAL_RATE/s open loop, $CONNECTIONS connections, ${HOSTILE_SECONDS}s"
  run e_real mailpushd "$HOSTILE_SECONDS" --mode keepalive --connections "$CONNECTIONS" --rate "$REAL_RATE" \
    --duration "$HOSTILE_SECONDS" "${mixed[@]}"
  say "(f) the same while $FLOOD_RATE/s POST to new random secrets (16 connections)"
  timeout "$(allow $((HOSTILE_SECONDS + 60)))" "$ews_load" --port "$listener_port" --ca "$tls/ca.crt" \
    --label f_flood --mode keepalive --connections 16 --rate "$FLOOD_RATE" --duration "$HOSTILE_SECONDS" \
    --random-secrets >"$tmp/runs/f_flood.raw" 2>"$tmp/runs/f_flood.err" &
  flood_pid=$!
  run f_real mailpushd "$HOSTILE_SECONDS" --mode keepalive --connections "$CONNECTIONS" --rate "$REAL_RATE" \
    --duration "$HOSTILE_SECONDS" "${mixed[@]}"
  wait "$flood_pid" || { cat "$tmp/runs/f_flood.err" >&2; die "ews_load f_flood"; }
  tail -n 1 "$tmp/runs/f_flood.raw" >"$tmp/runs/f_flood.json"
  say "  flood: $(jq -r '"\(.answered) answered (\(.unsubscribe) Unsubscribe, \(.errors) errors), p99 \(.latency_ms.p99) ms"' "$tmp/runs/f_flood.json")"
  say "(g) the flood alone: $FLOOD_RATE/s to new random secrets, 16 connections, ${HOSTILE_SECONDS}s"
  run g_flood mailpushd "$HOSTILE_SECONDS" --mode keepalive --connections 16 --rate "$FLOOD_RATE" \
    --duration "$HOSTILE_SECONDS" --random-secrets
  runs=("$tmp"/runs/{e_real,f_real,f_flood,g_flood}.json)
  if [ "$legacy_region" = 0 ]; then
    say "(h) the flood alone with made-up capabilities (44 characters, no tag): $FLOOD_RATE/s, ${HOSTILE_SECONDS}s"
    run h_flood mailpushd "$HOSTILE_SECONDS" --mode keepalive --connections 16 --rate "$FLOOD_RATE" \
      --duration "$HOSTILE_SECONDS" --random-secrets --secret-chars 44
    runs+=("$tmp/runs/h_flood.json")
  fi
  rss_hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$mailpushd_pid/status")
  jq -s -c --argjson rss_kib "$rss_hwm" --argjson n "$registrations" --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" '
    {benchmark: "ews_hostile", registrations: $n, rss_hwm_kib: $rss_kib,
     real_alone: {ok_rate: .[0].ok_rate, soap_ok: .[0].soap_ok, errors: .[0].errors, p50_ms: .[0].latency_ms.p50, p99_ms: .[0].latency_ms.p99},
     real_with_flood: {ok_rate: .[1].ok_rate, soap_ok: .[1].soap_ok, errors: .[1].errors, p50_ms: .[1].latency_ms.p50, p99_ms: .[1].latency_ms.p99,
                       server_cpu_s: .[1].server_cpu_s, db_cpu_s: .[1].db_cpu_s},
     flood_during_f: {answered: .[2].answered, unsubscribe: .[2].unsubscribe, errors: .[2].errors, non_2xx: .[2].non_2xx, p99_ms: .[2].latency_ms.p99},
     flood_alone: {answered: .[3].answered, unsubscribe: .[3].unsubscribe, errors: .[3].errors, non_2xx: .[3].non_2xx, rate: .[3].rate,
                   server_us_per_refused: (.[3].server_cpu_ms_per_callback * 1000 | round),
                   db_us_per_refused: (.[3].db_cpu_ms_per_callback * 1000 | round), other_cpu_s: .[3].other_cpu_s},
     flood_capability_form: (if length > 4 then {answered: .[4].answered, unsubscribe: .[4].unsubscribe,
                   errors: .[4].errors, rate: .[4].rate,
                   server_us_per_refused: (.[4].server_cpu_ms_per_callback * 1000 | round),
                   db_us_per_refused: (.[4].db_cpu_ms_per_callback * 1000 | round)} else null end)}' \
    "${runs[@]}" >"$tmp/result.json" || die "assembling the result"
  jq -r '"hostile: real callbacks p99 \(.real_alone.p99_ms) ms alone, \(.real_with_flood.p99_ms) ms during the flood (\(.real_with_flood.soap_ok) OK, \(.real_with_flood.errors) errors); flood alone: \(.flood_alone.answered) answered, mailpushd \(.flood_alone.server_us_per_refused) us + MariaDB \(.flood_alone.db_us_per_refused) us CPU per refused request\(if .flood_capability_form then "; made-up capabilities: mailpushd \(.flood_capability_form.server_us_per_refused) us + MariaDB \(.flood_capability_form.db_us_per_refused) us" else "" end)"' "$tmp/result.json" >&2
  cat "$tmp/result.json"
  exit 0
fi
say "(h8) heartbeats: one StatusEvent per registration, keep-alive, $CONNECTIONS connections, max rate"
heartbeats h8 "$CONNECTIONS"
say "(h64) heartbeats: the same with $CAPACITY_CONNECTIONS connections"
heartbeats h64 "$CAPACITY_CONNECTIONS"
if [ "$heartbeats_only" = 1 ]; then
  jq -s -c 'map({key: .label, value: {ok_rate, p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99,
      server_us: (.server_cpu_ms_per_callback * 1000 | round), db_us: (.db_cpu_ms_per_callback * 1000 | . * 10 | round / 10),
      other_cpu_s, durable}}) | from_entries' "$tmp"/runs/{h8,h64}_{mailpushd,nginx}.json
  exit 0
fi

say "(a) keep-alive, $CONNECTIONS connections, max rate, ${RUN_A_SECONDS}s"
before=$(newmail_sum); since=$(db_now)
run a_mailpushd mailpushd "$RUN_A_SECONDS" --mode keepalive --connections "$CONNECTIONS" --duration "$RUN_A_SECONDS" "${mixed[@]}"
check a_mailpushd "$before" "$since"
run a_nginx nginx "$RUN_A_SECONDS" --mode keepalive --connections "$CONNECTIONS" --duration "$RUN_A_SECONDS" "${mixed[@]}"

say "(b) a new TLS connection (full handshake) per request, $CONNECTIONS at a time, max rate, ${RUN_B_SECONDS}s"
before=$(newmail_sum); since=$(db_now)
run b_mailpushd mailpushd "$RUN_B_SECONDS" --mode newconn --connections "$CONNECTIONS" --duration "$RUN_B_SECONDS" "${mixed[@]}"
check b_mailpushd "$before" "$since"
run b_nginx nginx "$RUN_B_SECONDS" --mode newconn --connections "$CONNECTIONS" --duration "$RUN_B_SECONDS" "${mixed[@]}"

half=$(jq -r '.ok_rate / 2 | floor' "$tmp/runs/a_mailpushd.json")
[ "$half" -ge 1 ] || half=1
say "(c) keep-alive at half of mailpushd's (a) rate: $half/s, ${RUN_C_SECONDS}s"
before=$(newmail_sum); since=$(db_now)
run c_mailpushd mailpushd "$RUN_C_SECONDS" --mode keepalive --connections "$CONNECTIONS" --rate "$half" --duration "$RUN_C_SECONDS" "${mixed[@]}"
check c_mailpushd "$before" "$since"
run c_nginx nginx "$RUN_C_SECONDS" --mode keepalive --connections "$CONNECTIONS" --rate "$half" --duration "$RUN_C_SECONDS" "${mixed[@]}"

say "(d) keep-alive, $CAPACITY_CONNECTIONS connections, max rate, ${RUN_D_SECONDS}s (capacity when there is concurrency to batch; no goal)"
before=$(newmail_sum); since=$(db_now)
run d_mailpushd mailpushd "$RUN_D_SECONDS" --mode keepalive --connections "$CAPACITY_CONNECTIONS" --duration "$RUN_D_SECONDS" "${mixed[@]}"
check d_mailpushd "$before" "$since"
run d_nginx nginx "$RUN_D_SECONDS" --mode keepalive --connections "$CAPACITY_CONNECTIONS" --duration "$RUN_D_SECONDS" "${mixed[@]}"

rss_hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$mailpushd_pid/status")
timeout 10 curl -fsS --cacert "$tls/ca.crt" "https://localhost:$listener_port/metrics" >"$tmp/metrics.txt" 2>/dev/null || true
grep -E '^mailpush_(ews_callbacks_total|registration_cache_lookups_total|db_jobs_rejected|http_requests_refused)' \
  "$tmp/metrics.txt" >&2 || true
[ ! -s "$tmp/mailpushd.log" ] || { say "mailpushd log (warnings and errors), last lines:"; tail -n 5 "$tmp/mailpushd.log" >&2; }

# ---------------------------------------------------------------- report

jq -s -c --argjson rss_kib "$rss_hwm" --argjson rss_bind_kib "$rss_after_bind" --argjson n "$registrations" \
  --argjson load_s "$load_seconds" --arg nginx "$(nginx_version)" \
  --argjson cores "$(nproc)" --argjson threads "$client_threads" --argjson busy_before "$busy_before_pct" \
  --argjson conns "$CONNECTIONS" --argjson cap_conns "$CAPACITY_CONNECTIONS" \
  --argjson dsync_us "$dsync_us" --argjson commit_us "$commit_us" '
  (map({key: .label, value: .}) | from_entries) as $r
  | def r3: . * 1000 | round / 1000;
  def fig(x): {ok_rate: x.ok_rate, answered: x.answered, errors: x.errors, non_2xx: x.non_2xx,
               p50_ms: x.latency_ms.p50, p90_ms: x.latency_ms.p90, p99_ms: x.latency_ms.p99, max_ms: x.latency_ms.max,
               server_cpu_us_per_callback: (x.server_cpu_ms_per_callback * 1000 | round),
               db_cpu_us_per_callback: (x.db_cpu_ms_per_callback * 1000 | round),
               client_cpu_s: x.client_cpu_s, other_cpu_s: x.other_cpu_s, elapsed_s: x.elapsed_s}
              + (if x.db_batches then {db_batches: x.db_batches, db_batch_writes_mean: x.db_batch_writes_mean,
                                       db_batch_ms_mean: x.db_batch_ms_mean} else {} end)
              + (if x.durable then {all_recorded: x.durable.all_recorded, newmail_ok: x.durable.newmail_ok,
                                    unread_increments: x.durable.unread_increments} else {} end);
  def cpu_ratio(m; n): m.server_cpu_ms_per_callback / n.server_cpu_ms_per_callback | r3;
  ($r.a_mailpushd.ok_rate / $r.a_nginx.ok_rate | r3) as $ka
  | cpu_ratio($r.a_mailpushd; $r.a_nginx) as $cpu
  | (($r.a_mailpushd.server_cpu_ms_per_callback + $r.a_mailpushd.db_cpu_ms_per_callback)
     / $r.a_nginx.server_cpu_ms_per_callback | r3) as $cpu_db
  | ($r.b_mailpushd.ok_rate / $r.b_nginx.ok_rate | r3) as $nc
  | $r.c_mailpushd.latency_ms.p99 as $p99
  | ($rss_kib / 1024 | . * 10 | round / 10) as $rss
  | def heartbeat(m; n): {mailpushd: fig(m), reference: fig(n), cpu_ratio: cpu_ratio(m; n),
      db_us_per_heartbeat: (m.db_cpu_ms_per_callback * 1000 | . * 10 | round / 10),
      last_heard_written: m.durable.registrations_heard};
  heartbeat($r.h8_mailpushd; $r.h8_nginx) as $h8
  | heartbeat($r.h64_mailpushd; $r.h64_nginx) as $h64
  | ([$r.a_mailpushd, $r.b_mailpushd, $r.c_mailpushd, $r.d_mailpushd, $r.h8_mailpushd, $r.h64_mailpushd]
     | all(.durable.all_recorded)) as $durable
  | ([$r[] | .errors] | add) as $errors
  | {benchmark: "ews_listener", registrations: $n, cores: $cores, client_threads: $threads, connections: $conns,
     capacity_connections: $cap_conns, nginx: $nginx, load_registrations_s: $load_s,
     machine_busy_pct_before: $busy_before, other_cpu_s_during_runs: ([$r[] | .other_cpu_s] | add | . * 10 | round / 10),
     bind: (fig($r.bind) + {bound_ok: $r.bind.soap_ok}),
     heartbeat: {keepalive_8: $h8, keepalive_64: $h64},
     mailpushd: {keepalive: fig($r.a_mailpushd), newconn: fig($r.b_mailpushd), half_rate: fig($r.c_mailpushd),
                 capacity: fig($r.d_mailpushd), rss_mib: $rss,
                 rss_after_bind_mib: ($rss_bind_kib / 1024 | . * 10 | round / 10)},
     reference: {keepalive: fig($r.a_nginx), newconn: fig($r.b_nginx), half_rate: fig($r.c_nginx),
                 capacity: fig($r.d_nginx)},
     half_rate_target: $r.c_mailpushd.rate_target,
     durability_floor: {dsync_write_us: $dsync_us, autocommit_update_us: $commit_us,
       # The most any server that answers after a durable commit can reach with (a) connections:
       # each callback waits at least one commit plus what a round trip costs the reference.
       keepalive_ceiling_rate: ($conns / (($commit_us / 1e6) + ($conns / $r.a_nginx.ok_rate)) | floor),
       keepalive_ceiling_ratio: (($conns / (($commit_us / 1e6) + ($conns / $r.a_nginx.ok_rate))) / $r.a_nginx.ok_rate | r3),
       keepalive_ceiling_ratio_dsync: (($conns / (($dsync_us / 1e6) + ($conns / $r.a_nginx.ok_rate))) / $r.a_nginx.ok_rate | r3)},
     keepalive_ratio: $ka, cpu_per_callback_ratio: $cpu, cpu_per_callback_ratio_with_mariadb: $cpu_db,
     cpu_per_callback_ratio_half_rate: cpu_ratio($r.c_mailpushd; $r.c_nginx),
     capacity_ratio: ($r.d_mailpushd.ok_rate / $r.d_nginx.ok_rate | r3),
     newconn_ratio: $nc, p99_ms: $p99, rss_mib: $rss, every_ok_recorded: $durable, errors: $errors,
     goals_met: {keepalive_ratio: ($ka >= 0.5 and $durable), cpu_per_callback_ratio: ($cpu <= 3),
                 newconn_ratio: ($nc >= 0.8), p99_ms: ($p99 <= 20), rss_mib: ($rss <= 150),
                 heartbeat_cpu_ratio: ($h64.cpu_ratio <= 3), heartbeat_db_us: ($h64.db_us_per_heartbeat <= 5)}}' \
  "$tmp"/runs/{bind,h8_mailpushd,h8_nginx,h64_mailpushd,h64_nginx,a_mailpushd,a_nginx,b_mailpushd,b_nginx,c_mailpushd,c_nginx,d_mailpushd,d_nginx}.json \
  >"$tmp/result.json" || die "assembling the result"

jq -r '
  def row(name; m; n): "  \(name) mailpushd \(m.ok_rate|floor)/s p50 \(m.p50_ms) p99 \(m.p99_ms) ms, CPU \(m.server_cpu_us_per_callback) us (+\(m.db_cpu_us_per_callback) MariaDB), \(m.db_batch_writes_mean // 0) per commit of \(m.db_batch_ms_mean // 0) ms, errors \(m.errors) | nginx \(n.ok_rate|floor)/s p50 \(n.p50_ms) p99 \(n.p99_ms) ms, CPU \(n.server_cpu_us_per_callback) us, errors \(n.errors)";
  def goal(name; v; rule; ok): "  \(name) = \(v)  goal \(rule)  \(if ok then "met" else "MISSED" end)";
  "",
  "EWS listener benchmark: \(.registrations) registrations; \(.cores) cores shared by the load generator (\(.client_threads) thread), the server and MariaDB; reference \(.nginx) (1 worker)",
  "  machine \(.machine_busy_pct_before)% busy before the runs; other processes used \(.other_cpu_s_during_runs) CPU s during them",
  "  bind: \(.bind.bound_ok) first-sight StatusEvents (lookup + bind) answered OK at \(.bind.ok_rate|floor)/s",
  row("(h8) heartbeats, 8 conn:  "; .heartbeat.keepalive_8.mailpushd; .heartbeat.keepalive_8.reference),
  row("(h64) heartbeats, 64 conn:"; .heartbeat.keepalive_64.mailpushd; .heartbeat.keepalive_64.reference),
  "  heartbeats: last-heard times written \(.heartbeat.keepalive_8.last_heard_written) and \(.heartbeat.keepalive_64.last_heard_written) of \(.registrations); CPU ratio to nginx \(.heartbeat.keepalive_8.cpu_ratio) (8 conn), \(.heartbeat.keepalive_64.cpu_ratio) (64 conn); MariaDB \(.heartbeat.keepalive_8.db_us_per_heartbeat) and \(.heartbeat.keepalive_64.db_us_per_heartbeat) us per heartbeat",
  row("(a) keep-alive \(.connections) conn:     "; .mailpushd.keepalive; .reference.keepalive),
  row("(b) new TLS conn each:    "; .mailpushd.newconn; .reference.newconn),
  row("(c) keep-alive \(.half_rate_target|floor)/s:     "; .mailpushd.half_rate; .reference.half_rate),
  row("(d) keep-alive \(.capacity_connections) conn:    "; .mailpushd.capacity; .reference.capacity),
  "  every callback mailpushd answered OK is recorded in MariaDB: \(.every_ok_recorded) (NewMail answered OK = unread increments: \([.mailpushd.keepalive, .mailpushd.newconn, .mailpushd.half_rate, .mailpushd.capacity] | map("\(.newmail_ok)=\(.unread_increments)") | join(", ")))",
  "  mailpushd peak RSS \(.rss_mib) MiB (\(.mailpushd.rss_after_bind_mib) MiB after the bind phase)",
  "  durability floor: synchronous write \(.durability_floor.dsync_write_us) us, durable UPDATE \(.durability_floor.autocommit_update_us) us -> at most \(.durability_floor.keepalive_ceiling_rate)/s with \(.connections) connections for any server that answers after its commit (ratio \(.durability_floor.keepalive_ceiling_ratio); \(.durability_floor.keepalive_ceiling_ratio_dsync) from the disk alone)",
  goal("keepalive_ratio       "; .keepalive_ratio; ">= 0.5, all recorded"; .goals_met.keepalive_ratio),
  goal("cpu_per_callback_ratio"; .cpu_per_callback_ratio; "<= 3 (with MariaDB \(.cpu_per_callback_ratio_with_mariadb); at the same rate (c) \(.cpu_per_callback_ratio_half_rate))"; .goals_met.cpu_per_callback_ratio),
  goal("newconn_ratio         "; .newconn_ratio; ">= 0.8"; .goals_met.newconn_ratio),
  goal("p99_ms at half rate   "; .p99_ms; "<= 20"; .goals_met.p99_ms),
  goal("rss_mib               "; .rss_mib; "<= 150"; .goals_met.rss_mib),
  goal("heartbeat_cpu_ratio   "; .heartbeat.keepalive_64.cpu_ratio; "<= 3 (64 conn; 8 conn \(.heartbeat.keepalive_8.cpu_ratio))"; .goals_met.heartbeat_cpu_ratio),
  goal("heartbeat_db_us       "; .heartbeat.keepalive_64.db_us_per_heartbeat; "<= 5 (64 conn; 8 conn \(.heartbeat.keepalive_8.db_us_per_heartbeat))"; .goals_met.heartbeat_db_us),
  "  (d) capacity_ratio = \(.capacity_ratio) (no goal)",
  ""' "$tmp/result.json"
cat "$tmp/result.json"
