#!/usr/bin/env bash
# The scale-out benchmark (issue 8): one mailpushd against two, on a 3-node Galera cluster, behind
# HAProxy. See docs/scale-out.md.
#
#   bench/scaleout_bench.sh [--build-dir DIR] [--skip-build] [--mailboxes N] [--rate R]
#                           [--seconds S] [--keep-tmp]
#
# Starts the region of tests/galera/galera_lib.sh — scripts/galera.sh's 3 nodes (durable:
# innodb_flush_log_at_trx_commit=1 on each), apns-sim as APNs, mailpushd instances, HAProxy —
# seeds N mailboxes (20,000) with 1-3 devices each, and for 1 and then 2 instances behind the load
# balancer runs bench/fanout_load through it:
#   rate      R callbacks/s (1,000), open loop, 64 keep-alive connections, S seconds (15): answer
#             and delivery latency (fanout_check against apns-sim), CPU per 1,000 callbacks of
#             mailpushd, the Galera nodes, HAProxy and apns-sim;
#   capacity  as fast as 64 connections go, S seconds: callbacks answered OK per second.
# Then the same with one instance on a single plain MariaDB server (scripts/mariadb.sh, same
# durability and data): the cluster's own cost. After each run the outbox drains and every
# acknowledged badge must have reached apns-sim (lost = 0). Prints a summary, the 2-vs-1 ratios and, last, ONE JSON line. Progress on stderr.
# Everything it starts is stopped on exit; the runs have a 15-minute budget. The build (release
# preset targets mailpushd mailpushctl apns-sim fanout_load fanout_check) is not in the budget.
set -euo pipefail

BUDGET_SECONDS=900
readonly CONNECTIONS=64

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"
GL_NAME=scaleout

build_dir="$root/build/release"
skip_build=0
keep_tmp=0
mailboxes=20000
rate=1000
seconds=15
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --skip-build) skip_build=1 ;;
    --mailboxes) mailboxes=$2 && shift ;;
    --rate) rate=$2 && shift ;;
    --seconds) seconds=$2 && shift ;;
    --keep-tmp) keep_tmp=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "scaleout_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$mailboxes" =~ ^[0-9]+$ ]] && [ "$mailboxes" -ge 1000 ] && [ "$mailboxes" -le 500000 ] ||
  { echo "scaleout_bench: --mailboxes 1000..500000" >&2; exit 2; }
[[ "$rate" =~ ^[0-9]+$ ]] && [ "$rate" -ge 10 ] && [ "$rate" -le 20000 ] || { echo "scaleout_bench: --rate 10..20000" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 5 ] && [ "$seconds" -le 120 ] || { echo "scaleout_bench: --seconds 5..120" >&2; exit 2; }

mailpushd="$build_dir/src/app/mailpushd"
mailpushctl="$build_dir/src/app/mailpushctl"
sim="$build_dir/tools/apns_sim/apns-sim"
load="$build_dir/bench/fanout_load"
check="$build_dir/bench/fanout_check"

tmp=$(mktemp -d /tmp/mailpush-scaleout.XXXXXX)
# shellcheck source=tests/galera/galera_lib.sh
source "$root/tests/galera/galera_lib.sh"
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  gl_cleanup
  if [ "$keep_tmp" = 1 ]; then echo "scaleout_bench: kept $tmp" >&2; else rm -rf -- "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$skip_build" = 0 ]; then
  gl_say "building ${build_dir#"$root"/} (mailpushd mailpushctl apns-sim fanout_load fanout_check)"
  if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    timeout 120 cmake --preset release -B "$build_dir" >"$tmp/configure.log" 2>&1 ||
      { tail -n 30 "$tmp/configure.log" >&2; gl_die "cmake --preset release -B $build_dir"; }
  fi
  timeout 1800 cmake --build "$build_dir" --target mailpushd mailpushctl apns-sim fanout_load fanout_check \
    >"$tmp/build.log" 2>&1 || { grep -m 20 -A 5 error "$tmp/build.log" >&2; gl_die "build"; }
fi
gl_check_tools
deadline=$((SECONDS + BUDGET_SECONDS))
allow() {
  local left=$((deadline - SECONDS))
  [ "$left" -gt 5 ] || gl_die "the ${BUDGET_SECONDS}s budget is spent"
  [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}

clk_tck=$(getconf CLK_TCK)
ticks() { # utime+stime of the given pids
  local total=0 t pid
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
node_pids() {
  local n
  if [ -n "${GL_SINGLE_DIR:-}" ]; then cat "$GL_SINGLE_DIR/mariadbd.pid" 2>/dev/null || true; return; fi
  for n in 1 2 3; do cat "$tmp/galera/node$n/mariadbd.pid" 2>/dev/null || true; done
}
db_kind=galera

# ---------------------------------------------------------------- the region

gl_say "TLS files, APNs test certificates, KEK, admin token"
gl_make_keys
gl_say "starting a 3-node Galera cluster (scripts/galera.sh)"
gl_cluster_start
gl_start_sim
gl_reserve_port l1
gl_reserve_port l2
gl_region 1 "$l1"
gl_region 2 "$l2"
gl_migrate
gl_check_schema
gl_start_instance 1
gl_start_instance 2
gl_onboard
gl_say "seeding $mailboxes mailboxes"
gl_seed "$mailboxes"
gl_say "  $mailboxes mailboxes, $gl_devices devices on the cluster ($gl_hosts)"
gl_reserve_port lb

# Both instances' registration caches filled from the database before anything is measured.
wait_preloaded() {
  local n=$1 until=$((SECONDS + $(allow 120)))
  while [ "$SECONDS" -lt "$until" ]; do
    gl_metrics "$n" | grep -q '^mailpush_registration_cache_preload_seconds ' && return 0
    sleep 0.5
  done
  gl_die "mailpushd $n did not preload its registration cache"
}
wait_preloaded 1
wait_preloaded 2

badge_base=1
# run INSTANCES NAME RATE: one fanout_load run through HAProxy, drained and checked.
run() {
  local k=$1 name=$2 r=$3 out="$tmp/run-$db_kind-$1-$2" i pids=() mp0 mp1 db0 db1 hp0 hp1 sim0 sim1 b0 b1 t0 t1
  for ((i = 1; i <= k; i++)); do pids+=("${gl_instance_pids[$i]}"); done
  local np=() n0=() n1=() p
  mapfile -t np < <(node_pids)
  for p in "${np[@]}"; do n0+=("$(ticks "$p")"); done
  mp0=$(ticks "${pids[@]}"); db0=$(ticks $(node_pids)); hp0=$(ticks "$gl_haproxy_pid"); sim0=$(ticks "$gl_sim_pid")
  b0=$(machine_busy)
  local served0=() served=()
  for ((i = 1; i <= k; i++)); do served0[$i]=$(gl_metric_sum "$i" 'mailpush_ews_callbacks_total{result="ok"'); done
  t0=$(date +%s%N)
  local rate_args=(--rate "$r")
  [ "$r" != 0 ] || rate_args=(--rate 0 --max-events 300000)
  timeout "$(allow $((seconds + 60)))" "$load" --port "$lb" --ca "$tls/ca.crt" --mode events \
    --mailboxes "$mailboxes" --connections "$CONNECTIONS" "${rate_args[@]}" --duration "$seconds" \
    --seed $((k * 100 + r)) --badge-base "$badge_base" --events "$out.events" --label "$k-$name" \
    >"$out.load" 2>"$out.err" || { cat "$out.err" >&2; gl_die "fanout_load $k $name"; }
  local drained=true
  gl_drain "$(allow 120)" || drained=false
  t1=$(date +%s%N)
  for i in "${!np[@]}"; do n1+=("$(($(ticks "${np[$i]}") - n0[i]))"); done
  mp1=$(ticks "${pids[@]}"); db1=$(ticks $(node_pids)); hp1=$(ticks "$gl_haproxy_pid"); sim1=$(ticks "$gl_sim_pid")
  b1=$(machine_busy)
  for ((i = 1; i <= k; i++)); do
    served+=($(($(gl_metric_sum "$i" 'mailpush_ews_callbacks_total{result="ok"') - served0[i])))
  done
  timeout "$(allow 120)" "$check" --events "$out.events" --control-port "$sim_control" >"$out.check" 2>"$out.check.err" ||
    { cat "$out.check.err" >&2; gl_die "fanout_check $k $name"; }
  gl_sim_post /reset '{}'
  badge_base=$((badge_base + $(jq -r .events_written "$out.load")))
  jq -c -n --slurpfile l "$out.load" --slurpfile c "$out.check" --argjson k "$k" --arg name "$name" \
    --argjson rate "$r" --arg dbkind "$db_kind" --argjson tck "$clk_tck" --argjson mp "$((mp1 - mp0))" --argjson db "$((db1 - db0))" \
    --argjson hp "$((hp1 - hp0))" --argjson simt "$((sim1 - sim0))" --argjson busy "$((b1 - b0))" \
    --argjson wall_ms "$(((t1 - t0) / 1000000))" --argjson drained "$drained" \
    --argjson served "$(printf '%s\n' "${served[@]}" | jq -s -c .)" \
    --argjson nodes "$(printf '%s\n' "${n1[@]}" | jq -s -c .)" '
    def r(d): . * d | round / d;
    $l[0] as $l | $c[0] as $c | ($l.soap_ok) as $ok
    | {database: $dbkind, instances: $k, run: $name, rate_target: $rate, seconds: $l.elapsed_s,
       ok: $ok, ok_per_s: ($l.ok_rate | r(10)), ok_by_instance: $served, answers_503: ($l.non_2xx["503"] // 0), errors: $l.errors,
       answer_ms: $l.answer_ms, delivery_ms: $c.latency_ms,
       lost_devices: $c.lost_devices, stray: $c.stray, duplicates: $c.duplicates, drained: $drained,
       cpu_s: {mailpushd: ($mp / $tck | r(100)), database: ($db / $tck | r(100)),
               database_by_node: ($nodes | map(. / $tck | r(100))),
               haproxy: ($hp / $tck | r(100)), apns_sim: ($simt / $tck | r(100)),
               machine: ($busy / $tck | r(100)), client: $l.client_cpu_s},
       cpu_ms_per_callback: (if $ok > 0 then {mailpushd: ($mp / $tck * 1000 / $ok | r(1000)),
               database: ($db / $tck * 1000 / $ok | r(1000)),
               database_by_node: ($nodes | map(. / $tck * 1000 / $ok | r(1000))),
               machine: ($busy / $tck * 1000 / $ok | r(1000))} else null end),
       wall_s: ($wall_ms / 1000)}' >"$out.json" || gl_die "assembling $k $name"
  gl_say "  $(jq -r '"\(.database): \(.instances) instance(s), \(.run): \(.ok_per_s)/s OK (by instance \(.ok_by_instance | map(tostring) | join(" + ")); \(.answers_503) x 503, \(.errors) errors); answer p50 \(.answer_ms.p50) p99 \(.answer_ms.p99) ms; delivery p50 \(.delivery_ms.p50) p99 \(.delivery_ms.p99) ms; CPU ms/callback: mailpushd \(.cpu_ms_per_callback.mailpushd), database \(.cpu_ms_per_callback.database), machine \(.cpu_ms_per_callback.machine); lost \(.lost_devices)"' "$out.json")"
}

b0=$(machine_busy); sleep 2; b1=$(machine_busy)
busy_before_pct=$(((b1 - b0) * 100 / (2 * clk_tck * $(nproc))))
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
gl_say "machine ${busy_before_pct}% busy before the runs (load average $load_before)"
for k in 1 2; do
  if [ "$k" = 1 ]; then gl_haproxy "$lb" 1; else gl_haproxy "$lb" 1 2; fi
  gl_say "$k instance(s) behind HAProxy"
  gl_probe
  run "$k" "rate$rate" "$rate"
  run "$k" capacity 0
done

# The baseline: one instance on ONE plain MariaDB server (same durability, same data), so that
# the cluster's own cost is measured in the same run.
gl_say "baseline: one instance on a single MariaDB server"
gl_stop_instance 1
gl_stop_instance 2
gl_galera stop >"$tmp/galera-stop.log" 2>&1 || gl_die "stopping the cluster: $(tail -n 5 "$tmp/galera-stop.log")"
gl_cluster_started=0
db_kind=single
gl_single_start
gl_region 1 "$l1"
gl_migrate
gl_start_instance 1
gl_onboard
gl_seed "$mailboxes"
wait_preloaded 1
gl_haproxy "$lb" 1
gl_probe
run 1 "rate$rate" "$rate"
run 1 capacity 0

# ---------------------------------------------------------------- report

jq -s -c --argjson cores "$(nproc)" --argjson busy "$busy_before_pct" --arg loadavg "$load_before" --argjson mailboxes "$mailboxes" --argjson devices "$gl_devices" \
  --argjson rate "$rate" --argjson secs "$seconds" --arg mariadb "$(echo 'SELECT @@version' | gl_sql)" '
  def r(d): . * d | round / d;
  def get(k; n): [.[] | select(.database == "galera" and .instances == k and .run == n)][0];
  def single(n): [.[] | select(.database == "single" and .run == n)][0];
  get(1; "rate\($rate)") as $r1 | get(2; "rate\($rate)") as $r2
  | get(1; "capacity") as $c1 | get(2; "capacity") as $c2
  | {benchmark: "scaleout", cores: $cores, machine_busy_pct_before: $busy, load_before: $loadavg, mariadb: $mariadb, galera_nodes: 3, mailboxes: $mailboxes,
     devices: $devices, connections: 64, seconds: $secs, runs: .,
     capacity_per_s: {one: $c1.ok_per_s, two: $c2.ok_per_s},
     capacity_ratio: (if $c1.ok_per_s > 0 then ($c2.ok_per_s / $c1.ok_per_s | r(100)) else null end),
     at_rate: {rate: $rate,
       answer_p99_ms: {one: $r1.answer_ms.p99, two: $r2.answer_ms.p99},
       delivery_p99_ms: {one: $r1.delivery_ms.p99, two: $r2.delivery_ms.p99},
       machine_cpu_ms_per_callback: {one: $r1.cpu_ms_per_callback.machine, two: $r2.cpu_ms_per_callback.machine},
       machine_cpu_ratio: (if $r1.cpu_ms_per_callback.machine > 0
         then ($r2.cpu_ms_per_callback.machine / $r1.cpu_ms_per_callback.machine | r(100)) else null end)},
     single_server: {capacity_per_s: single("capacity").ok_per_s,
       machine_cpu_ms_per_callback: single("rate\($rate)").cpu_ms_per_callback.machine,
       database_cpu_ms_per_callback: single("rate\($rate)").cpu_ms_per_callback.database,
       answer_p99_ms: single("rate\($rate)").answer_ms.p99},
     galera_vs_single: {capacity_ratio: (if (single("capacity").ok_per_s // 0) > 0
         then ($c1.ok_per_s / single("capacity").ok_per_s | r(100)) else null end),
       database_cpu_ratio: (if (single("rate\($rate)").cpu_ms_per_callback.database // 0) > 0
         then ($r1.cpu_ms_per_callback.database / single("rate\($rate)").cpu_ms_per_callback.database | r(100)) else null end)},
     lost_devices: ([.[].lost_devices] | add), stray: ([.[].stray] | add),
     no_loss: (([.[].lost_devices] | add) == 0 and ([.[].stray] | add) == 0)}' "$tmp"/run-*.json >"$tmp/result.json" ||
  gl_die "assembling the result"

jq -r '
  "",
  "Scale-out benchmark: \(.cores) cores shared by everything (\(.machine_busy_pct_before)% busy before, load \(.load_before)); Galera \(.galera_nodes) nodes (MariaDB \(.mariadb)); \(.mailboxes) mailboxes, \(.devices) devices; HAProxy; \(.connections) keep-alive connections",
  (.runs | sort_by(.database, .instances, .run)[] | "  \(.database) \(.instances) instance(s) \(.run | . + " " * (12 - length)) \(.ok_per_s)/s OK; answer p50 \(.answer_ms.p50) p99 \(.answer_ms.p99) ms; delivery p50 \(.delivery_ms.p50) p99 \(.delivery_ms.p99) ms; CPU s: mailpushd \(.cpu_s.mailpushd), database \(.cpu_s.database) (by node \(.cpu_s.database_by_node | map(tostring) | join(" + "))), HAProxy \(.cpu_s.haproxy), apns-sim \(.cpu_s.apns_sim), client \(.cpu_s.client), machine \(.cpu_s.machine); lost \(.lost_devices)"),
  "  capacity: 1 instance \(.capacity_per_s.one)/s, 2 instances \(.capacity_per_s.two)/s: ratio \(.capacity_ratio)",
  "  at \(.at_rate.rate)/s: machine CPU per callback \(.at_rate.machine_cpu_ms_per_callback.one) ms vs \(.at_rate.machine_cpu_ms_per_callback.two) ms (ratio \(.at_rate.machine_cpu_ratio)); answer p99 \(.at_rate.answer_p99_ms.one) vs \(.at_rate.answer_p99_ms.two) ms",
  "  single MariaDB server, 1 instance: capacity \(.single_server.capacity_per_s)/s; at \(.at_rate.rate)/s machine CPU \(.single_server.machine_cpu_ms_per_callback) ms, database CPU \(.single_server.database_cpu_ms_per_callback) ms per callback; answer p99 \(.single_server.answer_p99_ms) ms",
  "  Galera vs single server (1 instance): capacity ratio \(.galera_vs_single.capacity_ratio), database CPU per callback ratio \(.galera_vs_single.database_cpu_ratio)",
  "  lost \(.lost_devices), stray \(.stray): no_loss = \(.no_loss)",
  ""' "$tmp/result.json" >&2
cat "$tmp/result.json"
[ "$(jq -r .no_loss "$tmp/result.json")" = true ] || gl_die "acknowledged badges were lost"
