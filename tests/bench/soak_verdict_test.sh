#!/usr/bin/env bash
# The soak benchmark's pass rule (bench/soak_verdict.jq) on made-up runs: a steady run passes;
# a growing resource, a lost badge, an error line outside the MariaDB restart, a stop in delivery
# and a failed timeline event each fail it; tiny values within the floor, idle bursts and the
# restart's own samples do not.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
failures=0

# samples FILTER: 180 s of samples every 10 s, steady unless FILTER (given .t_s) changes them.
samples() {
  jq -n -c "range(10; 181; 10) as \$t | {t_s: \$t, rss_kib: 100000, fds: 5, threads: 9, prepared_stmts: 40,
    db_connections: 5, outbox_queued: 12, outbox_oldest_s: 0.1, callback_p99_ms: 8, sim_accepted: (\$t * 100)}
    | $1"
}
events='[{"event":"portal_renewal","ok":true,"start_s":72,"end_s":73,"start_ms":1000072000,"end_ms":1000073000},
  {"event":"idle_burst","ok":true,"start_s":76,"end_s":94,"start_ms":1000076000,"end_ms":1000094000},
  {"event":"mariadb_restart","ok":true,"start_s":90,"end_s":97,"start_ms":1000090000,"end_ms":1000097000},
  {"event":"idle_burst","ok":true,"start_s":99,"end_s":117,"start_ms":1000099000,"end_ms":1000117000},
  {"event":"listener_renewal","ok":true,"start_s":108,"end_s":109,"start_ms":1000108000,"end_ms":1000109000},
  {"event":"idle_burst","ok":true,"start_s":115,"end_s":133,"start_ms":1000115000,"end_ms":1000133000}]'
load='{"status_share":0.3,"requests":1000,"ok":990,"sim_dropped":0,"check":{"lost_devices":0,"devices_checked":900,"unsent_badges":0}}'

# verdict NAME EXPECT(true|false) SAMPLE-FILTER [EVENTS] [LOAD] [ERRORS-JSONL] [WANT-IN-FAILED]
verdict() {
  local name=$1 want=$2
  samples "$3" >"$tmp/samples.jsonl"
  jq -c '.[]' <<<"${4:-$events}" >"$tmp/events.jsonl"
  echo "${5:-$load}" >"$tmp/load.json"
  printf '%s' "${6:-}" >"$tmp/errors.jsonl"
  : >"$tmp/churn.jsonl"
  local out
  out=$(jq -n -c --slurpfile samples "$tmp/samples.jsonl" --slurpfile events "$tmp/events.jsonl" \
    --slurpfile churn "$tmp/churn.jsonl" --slurpfile errors "$tmp/errors.jsonl" \
    --slurpfile load "$tmp/load.json" --slurpfile cap "$tmp/load.json" \
    --argjson minutes "${MINUTES:-3}" --argjson duration 180 --argjson warmup 20 --argjson mailboxes 100 \
    --argjson registrations 200 --argjson rate 100 --argjson capacity 170 --argjson churn_lost 0 \
    --argjson drained true --argjson sighup 1 --argjson cores 2 -f "$root/bench/soak_verdict.jq")
  if [ "$(jq .passed <<<"$out")" != "$want" ] || { [ -n "${7:-}" ] && ! jq -e --arg w "$7" 'any(.failed[]; startswith($w))' <<<"$out" >/dev/null; }; then
    echo "FAIL $name: wanted passed=$want ${7:+($7)}, got $(jq -c '{passed, failed, resources}' <<<"$out")"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

verdict "steady run passes" true '.'
verdict "prepared statements growing fail" false '.prepared_stmts = 40 + .t_s * 20' "" "" "" "prepared_stmts grew"
verdict "RSS growing 12 % fails" false '.rss_kib = (if .t_s >= 120 then 112000 else 100000 end)' "" "" "" "rss_kib grew"
verdict "RSS growing 8 % passes" true '.rss_kib = (if .t_s >= 120 then 108000 else 100000 end)'
# A small process (23 MiB) whose first third is still warming up: 6 MiB more passes a 3-minute run
# (floor 8 MiB), not a 10-minute one (floor 4 MiB).
verdict "3 min: RSS 23 -> 29 MiB passes (warm-up floor)" true '.rss_kib = (if .t_s >= 120 then 29000 else 23000 end)'
MINUTES=10 verdict "10 min: RSS 23 -> 29 MiB fails" false '.rss_kib = (if .t_s >= 120 then 29000 else 23000 end)' "" "" "" "rss_kib grew"
verdict "3 min: RSS 23 -> 33 MiB fails" false '.rss_kib = (if .t_s >= 120 then 33000 else 23000 end)' "" "" "" "rss_kib grew"
# Prepared statements still filling the connections' caches in a short run: +20 passes in 3 min,
# not in 10.
verdict "3 min: prepared statements 116 -> 136 pass (warm-up floor)" true '.prepared_stmts = (if .t_s >= 120 then 136 else 116 end)'
MINUTES=10 verdict "10 min: prepared statements 116 -> 136 fail" false '.prepared_stmts = (if .t_s >= 120 then 136 else 116 end)' "" "" "" "prepared_stmts grew"
verdict "5 fds then 6 pass (floor)" true '.fds = (if .t_s > 130 then 6 else 5 end)'
verdict "fds in an idle burst do not count" true '.fds = (if .t_s >= 115 and .t_s <= 143 then 705 else 5 end)'
verdict "fds kept after a burst fail" false '.fds = (if .t_s >= 115 then 705 else 5 end)' "" "" "" "fds grew"
verdict "RSS kept after the bursts fails" false '.rss_kib = (if .t_s >= 76 then 150000 else 100000 end)' "" "" "" "rss_kib grew"
verdict "one slow interval is not a trend" true '.callback_p99_ms = (if .t_s == 160 then 900 else 8 end)'
verdict "slow from the middle on fails" false '.callback_p99_ms = (if .t_s >= 100 then 90 else 8 end)' "" "" "" "callback_p99_ms grew"
verdict "the restart's samples do not count" true '.prepared_stmts = (if .t_s >= 88 and .t_s <= 127 then null else 40 end)'
verdict "a lost badge fails" false '.' "" '{"status_share":0.3,"sim_dropped":0,"check":{"lost_devices":1,"unsent_badges":0}}' "" "badges lost"
verdict "delivery stopping fails" false '.sim_accepted = (if .t_s >= 140 then 14000 else .t_s * 100 end)' "" "" "" "delivery stopped"
verdict "an error in the restart window passes" true '.' "" "" '{"level":"error","event":"db.lost","at_ms":1000095000}'
verdict "an error outside it fails" false '.' "" "" '{"level":"error","event":"db.prepare_failed","at_ms":1000150000}' "unexplained error lines"
verdict "a failed listener renewal fails" false '.' "$(jq -c 'map(if .event == "listener_renewal" then .ok = false else . end)' <<<"$events")" "" "" "listener_renewal failed"
verdict "a missing timeline event fails" false '.' "$(jq -c 'map(select(.event != "mariadb_restart"))' <<<"$events")" "" "" "timeline incomplete"

[ "$failures" = 0 ] || { echo "$failures case(s) failed"; exit 1; }
echo "all cases passed"
