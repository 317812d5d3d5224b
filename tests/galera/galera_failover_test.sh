#!/usr/bin/env bash
# The Galera scale-out test (issue 8): a region on loopback — three MariaDB Galera nodes
# (scripts/galera.sh), two mailpushd instances behind HAProxy, apns-sim as APNs — under EWS
# callback load (bench/fanout_load, open loop, through the load balancer). Mid-load it kills
# (SIGKILL) the Galera node both instances write to and then one mailpushd, and brings the node
# back. It passes only when:
#   - both instances answered callbacks before the kill (the load was spread);
#   - nothing acknowledged was lost: every mailbox's newest callback answered OK reached each of
#     its devices in apns-sim (bench/fanout_check: lost_devices = 0, stray = 0);
#   - the survivor took over the dead instance's outbox (its dispatch.took_over log and
#     mailpush_outbox_taken_over_total > 0) and no row of the dead instance is left queued;
#   - the survivor moved to another node (db.failover in its log) and kept answering;
#   - the cluster healed: the node rejoined and every node reports wsrep_cluster_size = 3, Synced;
#   - the schema is Galera-safe (every table InnoDB with a primary key) and migrated on the cluster.
#
#   tests/galera/galera_failover_test.sh --mailpushd B --mailpushctl B --apns-sim B
#        --fanout-load B --fanout-check B [--rate 200] [--seconds 40] [--mailboxes 5000] [--keep-tmp]
#
# or, with the binaries of a build tree: tests/galera/galera_failover_test.sh --build-dir build/dev
# (bench targets from the same tree, or its tests/galera/galera_fanout_* copies). Prints progress
# on stderr and, last, one JSON line with the figures; exit 0 pass, 1 fail, 2 usage.
# Everything it starts is stopped on exit; each step is bounded in time.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
GL_NAME=galera-test
mailpushd="" mailpushctl="" sim="" load="" check=""
rate=200
seconds=40
mailboxes=5000
keep_tmp=0
build_dir=""

usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --mailpushd) mailpushd=$2 && shift ;;
    --mailpushctl) mailpushctl=$2 && shift ;;
    --apns-sim) sim=$2 && shift ;;
    --fanout-load) load=$2 && shift ;;
    --fanout-check) check=$2 && shift ;;
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --rate) rate=$2 && shift ;;
    --seconds) seconds=$2 && shift ;;
    --mailboxes) mailboxes=$2 && shift ;;
    --keep-tmp) keep_tmp=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "galera-test: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$build_dir" ]; then
  pick() { local f; for f in "$@"; do [ -x "$f" ] && { echo "$f"; return; }; done; echo "$1"; }
  mailpushd=${mailpushd:-$build_dir/src/app/mailpushd}
  mailpushctl=${mailpushctl:-$build_dir/src/app/mailpushctl}
  sim=${sim:-$build_dir/tools/apns_sim/apns-sim}
  load=${load:-$(pick "$build_dir/bench/fanout_load" "$build_dir/tests/galera/galera_fanout_load")}
  check=${check:-$(pick "$build_dir/bench/fanout_check" "$build_dir/tests/galera/galera_fanout_check")}
fi
[ -n "$mailpushd" ] && [ -n "$mailpushctl" ] && [ -n "$sim" ] && [ -n "$load" ] && [ -n "$check" ] ||
  { echo "galera-test: give the five binaries or --build-dir" >&2; usage >&2; exit 2; }
[[ "$rate" =~ ^[0-9]+$ ]] && [ "$rate" -ge 20 ] && [ "$rate" -le 5000 ] || { echo "galera-test: --rate 20..5000" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 30 ] && [ "$seconds" -le 300 ] || { echo "galera-test: --seconds 30..300" >&2; exit 2; }
[[ "$mailboxes" =~ ^[0-9]+$ ]] && [ "$mailboxes" -ge 100 ] && [ "$mailboxes" -le 200000 ] || { echo "galera-test: --mailboxes 100..200000" >&2; exit 2; }

tmp=$(mktemp -d /tmp/mailpush-galera.XXXXXX)
# shellcheck source=tests/galera/galera_lib.sh
source "$root/tests/galera/galera_lib.sh"

background_pids=()
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local p
  for p in "${background_pids[@]}"; do gl_stop_process "$p" TERM 50; done
  gl_cleanup
  # A sanitizer build (the asan preset) reports into the daemons' logs, at the latest on exit.
  local reports
  reports=$(grep -l -E 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$tmp"/mailpushd-*.log \
    "$tmp"/apns-sim.log 2>/dev/null || true)
  if [ -n "$reports" ]; then
    for f in $reports; do
      echo "--- sanitizer report in $(basename "$f")" >&2
      grep -m 1 -A 30 -E 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$f" >&2
    done
    [ "$rc" != 0 ] || rc=1
  fi
  if [ "$keep_tmp" = 1 ] || { [ "$rc" != 0 ] && [ -n "${MAILPUSH_KEEP_FAILED:-}" ]; }; then
    echo "galera-test: kept $tmp" >&2
  else
    if [ "$rc" != 0 ]; then
      # What explains a failure, before the folder goes.
      for f in "$tmp"/mailpushd-*.log; do
        [ -f "$f" ] || continue
        echo "--- $(basename "$f") (warnings and errors, last 15)" >&2
        grep -v '"level":"info"' "$f" | tail -n 15 >&2
      done
    fi
    rm -rf -- "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

gl_check_tools
readonly LEASE_S=6

gl_say "TLS files, APNs test certificates, KEK, admin token"
gl_make_keys
gl_say "starting a 3-node Galera cluster (scripts/galera.sh)"
cluster_t0=$SECONDS
gl_cluster_start
gl_say "  cluster up in $((SECONDS - cluster_t0)) s: SQL on $gl_hosts"

gl_start_sim
gl_reserve_port l1
gl_reserve_port l2
dispatch="{\"lease_s\": $LEASE_S}"
gl_region 1 "$l1" "$dispatch"
gl_region 2 "$l2" "$dispatch"
gl_say "migrating the cluster (mailpushctl migrate through the failover list)"
gl_migrate
gl_check_schema
gl_say "  $gl_tables tables, every one InnoDB with a primary key"

gl_say "starting mailpushd 1 (127.0.0.1:$l1) and 2 (127.0.0.1:$l2), onboarding a customer (mail.p12)"
gl_start_instance 1
gl_start_instance 2
gl_onboard
gl_say "  customer $customer_public; seeding $mailboxes mailboxes"
gl_seed "$mailboxes"
gl_say "  $mailboxes mailboxes, $gl_devices devices"
gl_reserve_port lb
gl_haproxy "$lb" 1 2
gl_say "HAProxy on 127.0.0.1:$lb in front of both (round robin, TCP connect checks)"
gl_probe

# ---------------------------------------------------------------- the load and the faults

events="$tmp/events.tsv"
gl_say "load: $rate callbacks/s for ${seconds}s through HAProxy, 32 connections"
timeout $((seconds + 120)) "$load" --port "$lb" --ca "$tls/ca.crt" --mode events --mailboxes "$mailboxes" \
  --connections 32 --rate "$rate" --duration "$seconds" --seed 8 --badge-base 1 --timeout 20 \
  --events "$events" --label galera >"$tmp/load.json" 2>"$tmp/load.err" &
load_pid=$!
background_pids+=("$load_pid")
load_t0=$SECONDS
at() { # wait until second $1 of the load
  while [ $((SECONDS - load_t0)) -lt "$1" ]; do
    kill -0 "$load_pid" 2>/dev/null || gl_die "the load ended early: $(tail -n 3 "$tmp/load.err")"
    sleep 0.2
  done
}

kill_node_at=$((seconds / 5))
kill_instance_at=$((seconds * 2 / 5))
restart_node_at=$((seconds * 3 / 5))

at "$kill_node_at"
gl_say "  t=$((SECONDS - load_t0))s: SIGKILL Galera node 1 (both instances are connected to it)"
gl_galera kill-node 1 >"$tmp/kill-node.log" 2>&1 || gl_die "kill-node 1: $(cat "$tmp/kill-node.log")"

at $((kill_instance_at - 2))
# Both instances must have served callbacks (HAProxy spread the load), counted before the kill.
served1=$(gl_metric_sum 1 'mailpush_ews_callbacks_total{result="ok"')
served2=$(gl_metric_sum 2 'mailpush_ews_callbacks_total{result="ok"')
gl_say "  callbacks so far: mailpushd 1 $served1, mailpushd 2 $served2"
# APNs slows down (3 s per answer) so that instance 2 dies with notifications in flight: rows it
# committed and sent but whose answers it never wrote, which only a take-over delivers. The kill
# waits (10 s at most) until it holds some.
gl_sim_post /faults '{"latency_ms": 3000}'
at "$kill_instance_at"
queued2=0
until_queued=$((SECONDS + 10))
while :; do
  queued2=$(echo "SELECT COUNT(*) FROM registrations WHERE badge_owner = 'galera-2'" | gl_sql || echo 0)
  [ "${queued2:-0}" -lt 20 ] && [ "$SECONDS" -lt "$until_queued" ] || break
  sleep 0.2
done
gl_say "  t=$((SECONDS - load_t0))s: SIGKILL mailpushd 2 ($queued2 of its outbox rows queued)"
kill -KILL "${gl_instance_pids[2]}"
wait "${gl_instance_pids[2]}" 2>/dev/null || true
gl_instance_pids[2]=""
sleep 1
gl_sim_post /faults '{"latency_ms": 0}'

at "$restart_node_at"
gl_say "  t=$((SECONDS - load_t0))s: restarting Galera node 1 (it rejoins by IST while the load runs)"
restart_t0=$SECONDS
gl_galera restart-node 1 >"$tmp/restart-node.log" 2>&1 &
restart_pid=$!
background_pids+=("$restart_pid")

wait "$load_pid" || { cat "$tmp/load.err" >&2; gl_die "fanout_load failed"; }
gl_say "  load done: $(jq -r '"\(.requests) requests, \(.soap_ok) answered OK, \(.non_2xx | tojson) other statuses, \(.errors) without an answer"' "$tmp/load.json")"
wait "$restart_pid" || { cat "$tmp/restart-node.log" >&2; gl_die "restart-node 1"; }
node_back_s=$((SECONDS - restart_t0))
gl_say "  node 1 Synced again $node_back_s s after its restart"

# ---------------------------------------------------------------- checks

gl_say "waiting for the outbox to drain (the survivor takes over instance 2's rows after the ${LEASE_S}s lease)"
drain_t0=$SECONDS
drained=true
gl_drain 120 || drained=false
drain_s=$((SECONDS - drain_t0))
left_of_dead=$(echo "SELECT COUNT(*) FROM registrations WHERE badge_owner = 'galera-2'" | gl_sql)
dead_letters=$(echo "SELECT COUNT(*) FROM outbox WHERE state = 'dead'" | gl_sql)
taken_metric=$(gl_metric_sum 1 'mailpush_outbox_taken_over_total')
took_over_logged=$(cat "$tmp"/mailpushd-1.*.log | grep -c '"event":"dispatch.took_over"' || true)
took_rows=$(cat "$tmp"/mailpushd-1.*.log | grep '"event":"dispatch.took_over"' | jq -s '[.[].rows] | add // 0' 2>/dev/null || echo 0)
failovers=$(cat "$tmp"/mailpushd-1.*.log | grep -c '"event":"db.failover"' || true)
still_alive=true
kill -0 "${gl_instance_pids[1]}" 2>/dev/null || still_alive=false

gl_say "matching what apns-sim accepted with what was acknowledged (fanout_check)"
timeout 120 "$check" --events "$events" --control-port "$sim_control" >"$tmp/check.json" 2>"$tmp/check.err" ||
  { cat "$tmp/check.err" >&2; gl_die "fanout_check"; }

gl_say "cluster after the heal"
sizes=""
synced=0
for n in 1 2 3; do
  s=$(gl_cluster_size "$n")
  sizes+="${sizes:+,}${s:-none}"
  st=$(echo "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'" | gl_sql_node "$n" 2>/dev/null | cut -f2)
  [ "$st" != Synced ] || synced=$((synced + 1))
done
gl_galera status >&2 || true

result=$(jq -c -n --slurpfile l "$tmp/load.json" --slurpfile c "$tmp/check.json" \
  --argjson served1 "$served1" --argjson served2 "$served2" --arg queued2 "$queued2" \
  --argjson left "$left_of_dead" --argjson dead "$dead_letters" --argjson taken "${taken_metric:-0}" \
  --argjson took_logged "$took_over_logged" --argjson took_rows "${took_rows:-0}" \
  --argjson failovers "$failovers" --argjson drained "$drained" --argjson drain_s "$drain_s" \
  --arg sizes "$sizes" --argjson synced "$synced" --argjson node_back_s "$node_back_s" \
  --argjson alive "$still_alive" --argjson wall "$((SECONDS - gl_t0))" --argjson rate "$rate" \
  --argjson secs "$seconds" --argjson mailboxes "$mailboxes" --argjson devices "$gl_devices" '
  $l[0] as $l | $c[0] as $c
  | {test: "galera_failover", rate: $rate, seconds: $secs, mailboxes: $mailboxes, devices: $devices,
     requests: $l.requests, acknowledged: $l.soap_ok, answers_503: ($l.non_2xx["503"] // 0),
     other_statuses: $l.non_2xx, no_answer: $l.errors, error_kinds: $l.error_kinds,
     callbacks_before_kill: {instance1: $served1, instance2: $served2},
     sim_accepted: $c.sim_accepted, notifications_delivered: $c.notifications_delivered,
     lost_devices: $c.lost_devices, lost_mailboxes: $c.lost_mailboxes, stray: $c.stray,
     duplicates: $c.duplicates, delivered_not_ok: $c.delivered_not_ok,
     latency_ms: $c.latency_ms,
     takeover: {dead_instance_queued_at_kill: $queued2, rows_taken_over: $took_rows,
                taken_over_metric: $taken, took_over_logged: $took_logged,
                dead_instance_rows_left_queued: $left},
     survivor_db_failovers: $failovers, survivor_alive: $alive,
     outbox_drained: $drained, drain_s: $drain_s, dead_letters: $dead,
     cluster_size_after_heal: ($sizes | split(",")), nodes_synced: $synced,
     node_rejoin_s: $node_back_s, wall_s: $wall}')

# ---------------------------------------------------------------- verdict

failures=()
v() { jq -r "$1" <<<"$result"; }
[ "$(v .acknowledged)" -gt 0 ] || failures+=("no callback was acknowledged")
[ "$served1" -gt 0 ] && [ "$served2" -gt 0 ] || failures+=("the load was not spread: instance 1 $served1, instance 2 $served2 callbacks")
[ "$(v .lost_devices)" = 0 ] || failures+=("$(v .lost_devices) devices never got their mailbox's newest acknowledged badge")
[ "$(v .stray)" = 0 ] || failures+=("$(v .stray) notifications apns-sim accepted match no callback")
[ "$drained" = true ] || failures+=("the outbox did not drain")
[ "$left_of_dead" = 0 ] || failures+=("$left_of_dead rows of the killed instance are still queued")
[ "$took_over_logged" -gt 0 ] && [ "${taken_metric:-0}" -gt 0 ] || failures+=("the survivor never took over the killed instance's outbox (dispatch.took_over: $took_over_logged, metric: ${taken_metric:-0})")
[ "$failovers" -gt 0 ] || failures+=("the survivor's connections never moved to another Galera node (no db.failover)")
[ "$still_alive" = true ] || failures+=("the surviving mailpushd exited")
[ "$dead_letters" = 0 ] || failures+=("$dead_letters notifications were dead-lettered")
[ "$sizes" = "3,3,3" ] && [ "$synced" = 3 ] || failures+=("the cluster did not heal: wsrep_cluster_size $sizes, $synced nodes Synced")

gl_say "acknowledged $(v .acknowledged) of $(v .requests) callbacks ($(v .answers_503) x 503, $(v .no_answer) without an answer); apns-sim accepted $(v .sim_accepted); lost $(v .lost_devices), stray $(v .stray), duplicates $(v .duplicates)"
gl_say "take-over: $took_rows rows of mailpushd 2 moved to mailpushd 1 (metric $taken_metric), $left_of_dead left queued; survivor failovers $failovers; drained in $drain_s s"
gl_say "cluster: wsrep_cluster_size $sizes, $synced of 3 Synced (node 1 back in $node_back_s s); wall time $((SECONDS - gl_t0)) s"
gl_say "HAProxy: $(grep -E 'is (DOWN|UP)|no server available' "$tmp/haproxy.log" | sed 's/^.*\(Server [^ ]*\) is \([A-Z]*\).*$/\1 \2/' | tr '\n' ';' | head -c 400)"
echo "$result"
if [ ${#failures[@]} -gt 0 ]; then
  for f in "${failures[@]}"; do gl_say "FAIL: $f"; done
  exit 1
fi
gl_say "PASS"
