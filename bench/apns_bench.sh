#!/usr/bin/env bash
# The APNs client benchmark (issue 5): ApnsConnectionPool (bench/apns_load) against apns-sim on
# loopback, with h2load sending the same requests to the same simulator as the ceiling, and
# 1,000 customers with one idle connection each. See bench/README.md.
#
#   bench/apns_bench.sh [--skip-build] [--build-dir DIR] [--requests N] [--customers M]
#                       [--rounds R] [--keep-tmp] [--quick]
#
# Throughput: apns-sim without client certificates (h2load cannot present one), SETTINGS_MAX_
# CONCURRENT_STREAMS 100; h2load -c 2 -m 100 -t 1 and the pool with 2 connections and 200 sends
# in flight, N (200,000) notifications each, R (2) rounds alternating h2load and the pool; the
# best round of each counts. Idle: apns-sim requiring client certificates of the test CA; M
# (1,000) customers, each its own EC P-256 certificate made in memory, one connection each.
# Prints a summary and, last, one JSON line. Progress on stderr. Everything it starts is stopped
# on exit; it never runs for more than 5 minutes (each step's time limit comes out of that).
# --quick: 20,000 notifications, 100 customers, 1 round (a smoke test, not figures to report).
set -euo pipefail

readonly BUDGET_SECONDS=300
readonly CONNECTIONS=2 STREAMS=100
readonly TOPIC=com.example.mail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"

skip_build=0
keep_tmp=0
build_dir="$root/build/release"
requests=200000
customers=1000
rounds=2

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --keep-tmp) keep_tmp=1 ;;
    --quick) requests=20000 customers=100 rounds=1 ;;
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --requests) requests=$2 && shift ;;
    --customers) customers=$2 && shift ;;
    --rounds) rounds=$2 && shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "apns_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$requests" =~ ^[0-9]+$ ]] && [ "$requests" -ge 1000 ] && [ "$requests" -le 2000000 ] ||
  { echo "apns_bench: --requests must be 1000..2000000" >&2; exit 2; }
[[ "$customers" =~ ^[0-9]+$ ]] && [ "$customers" -ge 1 ] && [ "$customers" -le 5000 ] ||
  { echo "apns_bench: --customers must be 1..5000" >&2; exit 2; }
[[ "$rounds" =~ ^[1-5]$ ]] || { echo "apns_bench: --rounds must be 1..5" >&2; exit 2; }
for tool in h2load jq curl openssl; do
  command -v "$tool" >/dev/null || { echo "apns_bench: $tool not found (h2load: apt-get install nghttp2-client)" >&2; exit 1; }
done

readonly BENCH_NAME=apns-bench
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

tmp=$(mktemp -d /tmp/mailpush-apns-bench.XXXXXX)
sim_pid=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_process "$sim_pid" TERM 50
  if [ "$keep_tmp" = 1 ] || [ "$rc" != 0 ]; then say "kept $tmp"; else rm -rf -- "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

# ---------------------------------------------------------------- build

if [ "$skip_build" = 0 ]; then
  say "building apns-sim and apns_load (release) in $build_dir"
  timeout "$(allow 240)" cmake --preset release -B "$build_dir" >"$tmp/cmake.log" 2>&1 ||
    die "cmake configure failed (see $tmp/cmake.log)"
  timeout "$(allow 240)" cmake --build "$build_dir" --target apns-sim apns_load >>"$tmp/cmake.log" 2>&1 ||
    die "build failed (see $tmp/cmake.log)"
fi
sim="$build_dir/tools/apns_sim/apns-sim"
load="$build_dir/bench/apns_load"
[ -x "$sim" ] && [ -x "$load" ] || die "missing $sim or $load (drop --skip-build?)"

say "test certificates"
timeout "$(allow 60)" certs/make-apns-test-certs.sh "$tmp/certs" >"$tmp/certs.log" 2>&1 ||
  die "make-apns-test-certs.sh failed"
certs="$tmp/certs"

# ---------------------------------------------------------------- machine state

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy0=$(machine_busy); total0=$(awk '/^cpu /{s=0; for(i=2;i<=NF;i++) s+=$i; print s}' /proc/stat)
sleep 2
busy1=$(machine_busy); total1=$(awk '/^cpu /{s=0; for(i=2;i<=NF;i++) s+=$i; print s}' /proc/stat)
busy_before_pct=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) 'BEGIN{printf "%.0f", t ? 100*b/t : 0}')
say "machine before the runs: load average $load_before, ${busy_before_pct}% busy over 2 s"

start_sim() { # log-name args...
  local name=$1; shift
  "$sim" --cert "$certs/server.crt" --key "$certs/server.key" --log-level warn "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.log" &
  sim_pid=$!
  for _ in $(seq 1 100); do
    grep -q '"ready":true' "$tmp/$name.out" 2>/dev/null && break
    kill -0 "$sim_pid" 2>/dev/null || die "apns-sim exited: $(tail -3 "$tmp/$name.log")"
    sleep 0.1
  done
  grep -q '"ready":true' "$tmp/$name.out" || die "apns-sim not ready"
  sim_port=$(jq -r .h2_port "$tmp/$name.out")
}
stop_sim() {
  kill -TERM "$sim_pid" 2>/dev/null
  wait "$sim_pid" 2>/dev/null || true
  sim_pid=""
}

# ---------------------------------------------------------------- throughput

start_sim sim-throughput --no-client-cert --max-concurrent-streams "$STREAMS" --max-recorded 10000
say "apns-sim (no client certificate, MAX_CONCURRENT_STREAMS $STREAMS) on port $sim_port"
printf '{"aps":{"badge":7}}' >"$tmp/payload.json"
token=$(printf 'c0ffee%058d' 1)

run_h2load() { # round
  local out="$tmp/h2load-$1"
  local s0 b0 b1 s1
  s0=$(ticks "$sim_pid"); b0=$(machine_busy)
  timeout "$(allow 120)" /usr/bin/time -f '%U %S' -o "$out.time" \
    h2load -n "$requests" -c "$CONNECTIONS" -m "$STREAMS" -t 1 \
    -H "apns-topic: $TOPIC" -H 'apns-push-type: alert' -H 'apns-priority: 10' \
    -H 'apns-expiration: 0' -d "$tmp/payload.json" --log-file="$out.requests" \
    "https://127.0.0.1:$sim_port/3/device/$token" >"$out.txt" 2>&1 || die "h2load failed: $(tail -3 "$out.txt")"
  s1=$(ticks "$sim_pid"); b1=$(machine_busy)
  local rate ok client_cpu sim_cpu other
  rate=$(awk '/^finished in/{gsub(",",""); print $4}' "$out.txt")
  ok=$(awk '/^status codes:/{print $3}' "$out.txt")
  client_cpu=$(awk '{printf "%.2f", $1 + $2}' "$out.time")
  sim_cpu=$(ticks_to_s $((s1 - s0)))
  other=$(awk -v b="$(ticks_to_s $((b1 - b0)))" -v s="$sim_cpu" -v c="$client_cpu" 'BEGIN{o=b-s-c; printf "%.2f", o<0?0:o}')
  # Per-request durations (µs, third column) -> p50/p99 in ms.
  read -r p50 p99 < <(cut -f3 "$out.requests" | sort -n | awk '{a[NR]=$1} END{printf "%.2f %.2f\n", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}')
  jq -nc --argjson rate "$rate" --argjson ok "${ok:-0}" --argjson cpu "$client_cpu" \
    --argjson sim "$sim_cpu" --argjson other "$other" --argjson p50 "$p50" --argjson p99 "$p99" \
    --argjson n "$requests" \
    '{rate:($rate|round), ok_2xx:$ok, p50_ms:$p50, p99_ms:$p99, client_cpu_s:$cpu,
      cpu_s_per_100k:(($cpu*100000/$n*1000|round)/1000), sim_cpu_s:$sim, other_cpu_s:$other}' >"$out.json"
  say "h2load round $1: $(cat "$out.json")"
}

run_pool() { # round
  local out="$tmp/pool-$1"
  local s0 b0 b1 s1
  s0=$(ticks "$sim_pid"); b0=$(machine_busy)
  timeout "$(allow 150)" "$load" throughput --port "$sim_port" --ca "$certs/apple-ca.crt" \
    --cert "$certs/mail.crt" --key "$certs/mail.key" --requests "$requests" \
    --connections "$CONNECTIONS" --concurrency $((CONNECTIONS * STREAMS)) --timeout 120 \
    >"$out.raw" 2>"$out.log" || die "apns_load throughput failed: $(tail -3 "$out.log")"
  s1=$(ticks "$sim_pid"); b1=$(machine_busy)
  local sim_cpu
  sim_cpu=$(ticks_to_s $((s1 - s0)))
  tail -1 "$out.raw" | jq -c --argjson sim "$sim_cpu" --argjson busy "$(ticks_to_s $((b1 - b0)))" \
    'def r: (. * 1000 | round) / 1000;
     {rate:(.rate|round), delivered, outcomes, p50_ms:(.p50_ms|r), p90_ms:(.p90_ms|r),
      p99_ms:(.p99_ms|r), max_ms:(.max_ms|r), client_cpu_s:(.client_cpu_s|r),
      cpu_s_per_100k:(.cpu_s_per_100k|r), sim_cpu_s:$sim,
      other_cpu_s:([($busy - $sim - .client_cpu_s), 0] | max | r)}' >"$out.json"
  say "pool round $1: $(cat "$out.json")"
}

for r in $(seq 1 "$rounds"); do
  run_h2load "$r"
  run_pool "$r"
done
stop_sim
best() { jq -s -c 'max_by(.rate)' "$@"; }
h2load_best=$(best "$tmp"/h2load-*.json)
pool_best=$(best "$tmp"/pool-*.json)

# ---------------------------------------------------------------- idle connections

start_sim sim-idle --client-ca "$certs/apple-ca.crt"
say "apns-sim (client certificates required) on port $sim_port; $customers customers"
timeout "$(allow 150)" "$load" idle --port "$sim_port" --ca "$certs/apple-ca.crt" \
  --ca-key "$certs/apple-ca.key" --customers "$customers" --parallel 50 --timeout 120 \
  >"$tmp/idle.raw" 2>"$tmp/idle.log" || die "apns_load idle failed: $(tail -3 "$tmp/idle.log")"
idle=$(tail -1 "$tmp/idle.raw" | jq -c 'def r: (. * 10 | round) / 10;
  {customers, connected, open_after, open_s:(.open_s*1000|round/1000),
   connections_per_s:(.connections_per_s|round), client_cpu_s:(.client_cpu_s|r), rss_before_kib,
   rss_after_kib, kib_per_connection:(.kib_per_connection|r),
   heap_kib_per_connection:(.heap_kib_per_connection|r), credentials_s:(.credentials_s|r)}')
say "idle: $idle"
stop_sim

# ---------------------------------------------------------------- report

result=$(jq -nc --argjson h "$h2load_best" --argjson p "$pool_best" --argjson i "$idle" \
  --argjson n "$requests" --argjson rounds "$rounds" --arg load "$load_before" \
  --argjson busy "$busy_before_pct" --argjson c "$CONNECTIONS" --argjson m "$STREAMS" \
  '{bench:"apns", requests:$n, rounds:$rounds, connections:$c, streams_per_connection:$m,
    load_before:$load, busy_before_pct:$busy, pool:$p, h2load:$h,
    ratio:(($p.rate / $h.rate) * 1000 | round / 1000), idle:$i,
    goals_met:{rate_ge_0_8_ceiling:(($p.rate / $h.rate) >= 0.8),
               idle_kib_le_100:($i.kib_per_connection <= 100),
               all_delivered:($p.delivered == $n), all_connected:($i.connected == $i.customers)}}')

{
  echo "APNs client benchmark: $requests notifications, $CONNECTIONS connections x $STREAMS streams, best of $rounds round(s)"
  echo "machine before: load average $load_before, ${busy_before_pct}% busy"
  jq -r '"  pool   : \(.pool.rate|floor)/s  p50 \(.pool.p50_ms) ms  p99 \(.pool.p99_ms) ms  client CPU \(.pool.cpu_s_per_100k) s/100k  (sim \(.pool.sim_cpu_s) s, other \(.pool.other_cpu_s) s)",
         "  h2load : \(.h2load.rate|floor)/s  p50 \(.h2load.p50_ms) ms  p99 \(.h2load.p99_ms) ms  client CPU \(.h2load.cpu_s_per_100k) s/100k  (sim \(.h2load.sim_cpu_s) s, other \(.h2load.other_cpu_s) s)",
         "  ratio  : \(.ratio)  (goal >= 0.8: \(.goals_met.rate_ge_0_8_ceiling))",
         "  idle   : \(.idle.connected)/\(.idle.customers) customers connected in \(.idle.open_s*100|round/100) s, \(.idle.kib_per_connection) KiB RSS per idle connection (\(.idle.heap_kib_per_connection) KiB allocated) (goal <= 100: \(.goals_met.idle_kib_le_100))"' <<<"$result"
  echo "$result"
}
