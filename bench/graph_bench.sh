#!/usr/bin/env bash
# The Graph listener benchmark (issue 20): Microsoft Graph change notifications through
# POST /graph/v1/notify/{secret} into badges at apns-sim, against EWS badge callbacks in the same
# run. See bench/README.md ("Graph listener").
#
#   bench/graph_bench.sh [--skip-build] [--build-dir DIR] [--quick] [--keep-tmp]
#                        [--mailboxes N] [--seconds S]
#
# Starts a private MariaDB (durable), apns-sim and mailpushd (release build), onboards one
# customer through the portal, loads the fan-out seed (N mailboxes, 10,000 by default, 1-3
# devices each) and makes every odd registration a Graph registration (source 'graph', a known
# clientState's hash, no subscription bound yet); the even ones stay EWS registrations bound to
# their subscription. Then, with bench/ews_load (64 keep-alive connections):
#   graph1000, graph5000: created notifications at 1,000 and 5,000 a second (open loop, S s each,
#     20 by default), each for a random Graph registration and a message id never sent before;
#   graph_capacity, ews_capacity: as fast as the connections go (closed loop, S/2 s each): Graph
#     notifications, then EWS NewMail callbacks (new ItemIds) for the EWS registrations.
# After each run it waits until every pending badge went to apns-sim and counts the CPU of
# mailpushd and MariaDB over both; then it checks that every accepted notification was counted
# (each +1 to its registration, nothing twice). Prints a summary and, last, one JSON line whose
# last key is goals_met:
#   - over_3s_at_5000 = 0: answers that took over 3 s from their send (Graph delays an endpoint
#     whose answers take over 3 s); past its capacity the relay answers 503 (Graph sends those
#     again) rather than late, and their number is reported; the latency from the due time, which
#     includes the load generator's own queue when 5,000/s is past the machine's capacity, is
#     reported beside it;
#   - cpu_ratio (Graph notification over EWS badge callback, mailpushd + MariaDB per request, at
#     capacity) <= 1.
# Everything it starts is stopped on exit; the whole run has a 10-minute budget. --quick: 5 s per
# run (a smoke test).
set -euo pipefail

BUDGET_SECONDS=600
readonly DATABASE=mailpush_graph
readonly CONNECTIONS=64
readonly CLIENT_STATE=graph-bench-client-state-0123456789

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"

skip_build=0
keep_tmp=0
build_dir=""
mailboxes=10000
seconds=20
usage() { sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --keep-tmp) keep_tmp=1 ;;
    --quick) seconds=5 ;;
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --mailboxes) mailboxes=$2 && shift ;;
    --seconds) seconds=$2 && shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "graph_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$mailboxes" =~ ^[0-9]+$ ]] && [ "$mailboxes" -ge 100 ] && [ "$mailboxes" -le 1000000 ] ||
  { echo "graph_bench: --mailboxes must be 100..1000000" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 2 ] && [ "$seconds" -le 60 ] ||
  { echo "graph_bench: --seconds must be 2..60" >&2; exit 2; }

readonly BENCH_NAME=graph
source "$root/bench/lib.sh"
source "$root/bench/region_lib.sh"

tmp=$(mktemp -d /tmp/mailpush-graph.XXXXXX)
stop_region_on_exit

[ -n "$build_dir" ] || build_dir="$root/build/release"
targets=(mailpushd mailpushctl apns-sim ews_load)
if [ "$skip_build" = 0 ]; then build_release_targets "$build_dir" "${targets[@]}"; fi
mailpushd="$build_dir/src/app/mailpushd"
mailpushctl="$build_dir/src/app/mailpushctl"
sim="$build_dir/tools/apns_sim/apns-sim"
load="$build_dir/bench/ews_load"
for b in "$mailpushd" "$mailpushctl" "$sim" "$load"; do
  [ -x "$b" ] || die "$b is missing: build the release preset (or drop --skip-build)"
done

make_region_files
start_private_mariadb
start_apns_sim 1000000
bench_port listener_port
region="$tmp/region.json"
dispatch_json='{"instance_id":"graph-bench","batch":1000,"poll_ms":100,"apns_connections":2,"ttl_s":3600,"lease_s":30,"max_attempts":12}'
write_region "$region" "$dispatch_json" 'del(.registration) | .log_level = "warn"
  | .limits.callbacks_per_second_per_customer = 0 | .limits.callbacks_per_second_per_registration = 0'
timeout "$(allow 60)" "$mailpushctl" --region "$region" migrate >"$tmp/migrate.log" 2>&1 ||
  { cat "$tmp/migrate.log" >&2; die "mailpushctl migrate"; }
start_mailpushd
onboard_customer

say "seeding $mailboxes mailboxes; odd registrations become Graph registrations"
seed_sql "$mailboxes" | sql || die "the seed"
echo "UPDATE registrations SET source = 'graph', subscription_id = NULL, status_frequency_minutes = 10080,
  client_state_hash = UNHEX(SHA2('$CLIENT_STATE', 256)) WHERE id % 2 = 1" | sql || die "the Graph registrations"
read -r graphs ewss < <(echo "SELECT SUM(source = 'graph'), SUM(source = 'ews') FROM registrations" | sql)
say "  $graphs Graph and $ewss EWS registrations"
# The EWS listener preloads only EWS registrations: restart so the cache holds this seed.
stop_mailpushd
start_mailpushd

# Bodies: path<TAB>base64(body), one a request, as ews_load reads them. Registration ids of the
# seed are 3 (m - 1) + s + 1; the first of each mailbox (s = 0) always exists.
python3 - "$tmp" "$mailboxes" "$CLIENT_STATE" "$seconds" <<'EOF'
import base64, json, random, sys
tmp, mailboxes, client_state, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rng = random.Random(20)
ids = [3 * m + 1 for m in range(mailboxes)]
graph_ids = [i for i in ids if i % 2 == 1]
ews_ids = [i for i in ids if i % 2 == 0]
def secret(i): return "fanout-bench-secret-%010d" % i
def graph_body(reg, n):
    message = "AAMkAGGraphBench%012d" % n
    item = {"subscriptionId": "7f105c7d-2dc5-4530-97cd-%012d" % reg,
            "subscriptionExpirationDateTime": "2026-12-12T18:23:45.9356913Z",
            "changeType": "created",
            "resource": "Users/622eaaff-0683-4862-9de4-f2ec83c2bd98/Messages/" + message,
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message",
                             "@odata.id": "Users/622eaaff-0683-4862-9de4-f2ec83c2bd98/Messages/" + message,
                             "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
                             "id": message},
            "clientState": client_state,
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95"}
    return json.dumps({"value": [item]})
T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
INBOX = "AAMkADk0ZTk4ZmQ3LWFhNmEtNDBlNi1hMmY2LTc4ZjQ3OGMxOTg0MwAuAAAAAAAOFnqiRe3ARZ3Lh8tPgjchAQBkHkP2vGfBS7HJnL0RmrAGAAAAAAEMAAA="
def ews_body(reg, n):
    return ('<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">'
            '<soap11:Header><t:RequestServerVersion xmlns:m="%s" Version="Exchange2010" xmlns:t="%s" /></soap11:Header>'
            '<soap11:Body><m:SendNotification xmlns:t="%s" xmlns:m="%s"><m:ResponseMessages>'
            '<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            '<m:Notification><t:SubscriptionId>fanout-sub-%d</t:SubscriptionId><t:PreviousWatermark>AQAAAEdyYXBo%020d</t:PreviousWatermark>'
            '<t:MoreEvents>false</t:MoreEvents><t:NewMailEvent><t:Watermark>AQAAAEdyYXBo%020d</t:Watermark>'
            '<t:TimeStamp>2026-12-07T10:00:00Z</t:TimeStamp><t:ItemId Id="AAMkADGraphBenchEws%020d" ChangeKey="CQAAABYAAAA=" />'
            '<t:ParentFolderId Id="%s" ChangeKey="AQAAAA==" /></t:NewMailEvent></m:Notification>'
            '</m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>'
            % (M, T, T, M, reg, 2 * n, 2 * n + 1, n, INBOX))
def write(name, count, pick, path, body, start):
    with open("%s/%s.tsv" % (tmp, name), "w") as f:
        for k in range(count):
            reg = pick()
            f.write("%s%s\t%s\n" % (path, secret(reg), base64.b64encode(body(reg, start + k).encode()).decode()))
# Enough distinct requests for each run; ews_load sends each line once (then stops).
n = 5000 * seconds + 20000
write("graph1000", 1000 * seconds + 1000, lambda: rng.choice(graph_ids), "/graph/v1/notify/", graph_body, 0)
write("graph5000", n, lambda: rng.choice(graph_ids), "/graph/v1/notify/", graph_body, 10_000_000)
write("graph_capacity", 400000, lambda: rng.choice(graph_ids), "/graph/v1/notify/", graph_body, 20_000_000)
write("ews_capacity", 400000, lambda: rng.choice(ews_ids), "/ews/v1/notify/", ews_body, 30_000_000)
EOF

drain() { # limit-seconds
  local until=$((SECONDS + $1)) queued
  while [ "$SECONDS" -lt "$until" ]; do
    queued=$(echo "SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL" | sql)
    [ "$queued" != 0 ] || return 0
    sleep 0.1
  done
  say "  WARNING: $queued badges still pending after $1 s"
  return 1
}

mkdir -p "$tmp/runs"
# run NAME RATE SECONDS [--graph]: one ews_load run, its drain, the CPU of mailpushd and MariaDB
# around both; leaves $tmp/runs/NAME.json.
run() {
  local name=$1 rate=$2 secs=$3 kind=$4 mp0 db0 mp1 db1 t0 t1
  local graph_flag=()
  [ "$kind" = graph ] && graph_flag=(--graph)
  mp0=$(ticks "$mailpushd_pid"); db0=$(ticks "$(db_pid)"); t0=$(date +%s%N)
  timeout "$(allow $((secs + 60)))" "$load" --port "$listener_port" --ca "$tls/ca.crt" \
    --connections "$CONNECTIONS" --mode keepalive --rate "$rate" --duration "$secs" \
    --bodies "$tmp/$name.tsv" --label "$name" "${graph_flag[@]}" >"$tmp/runs/$name.raw" \
    2>"$tmp/runs/$name.err" || { cat "$tmp/runs/$name.err" >&2; die "ews_load $name"; }
  local drained=true
  drain "$(allow 120)" || drained=false
  mp1=$(ticks "$mailpushd_pid"); db1=$(ticks "$(db_pid)"); t1=$(date +%s%N)
  tail -n 1 "$tmp/runs/$name.raw" | jq -c --arg kind "$kind" --argjson tck "$clk_tck" \
    --argjson mp "$((mp1 - mp0))" --argjson db "$((db1 - db0))" --argjson drained "$drained" '
    {name: .label, kind: $kind, accepted: .soap_ok, answered, errors, non_2xx,
     answers_503: (.non_2xx["503"] // 0),
     rate: .ok_rate, p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99, max_ms: .latency_ms.max,
     over_3s, over_10s, answer_p99_ms: .answer_ms.p99, answer_max_ms: .answer_ms.max,
     answer_over_3s, drained: $drained,
     mailpushd_us: (if .soap_ok > 0 then ($mp / $tck * 1e6 / .soap_ok | round) else null end),
     mariadb_us: (if .soap_ok > 0 then ($db / $tck * 1e6 / .soap_ok | round) else null end)}
    | .cpu_us = (if .mailpushd_us then .mailpushd_us + .mariadb_us else null end)' \
    >"$tmp/runs/$name.json" || die "ews_load $name printed no JSON"
  say "$(jq -r '"\(.name): \(.accepted) accepted of \(.answered) (503 \(.answers_503), errors \(.errors), other \(.non_2xx)) = \(.rate)/s, p50 \(.p50_ms) p99 \(.p99_ms) max \(.max_ms) ms, over 3 s \(.over_3s); answered (from the send) p99 \(.answer_p99_ms) max \(.answer_max_ms) ms, over 3 s \(.answer_over_3s); CPU per request mailpushd \(.mailpushd_us) + MariaDB \(.mariadb_us) us"' "$tmp/runs/$name.json")"
}

say "first notification (credential loaded, APNs connection open)"
sleep 2
run graph1000 1000 "$seconds" graph
run graph5000 5000 "$seconds" graph
run graph_capacity 0 $((seconds / 2)) graph
run ews_capacity 0 $((seconds / 2)) ews

# Every accepted request counted once: each Graph notification is a new message (+1), each EWS
# NewMail a new item (+1).
graph_accepted=$(jq -s 'map(select(.kind == "graph") | .accepted) | add' "$tmp"/runs/*.json)
ews_accepted=$(jq -s 'map(select(.kind == "ews") | .accepted) | add' "$tmp"/runs/*.json)
read -r graph_counted ews_counted < <(echo "SELECT SUM(IF(source = 'graph', unread_count, 0)),
  SUM(IF(source = 'ews', unread_count, 0)) FROM registrations" | sql)
sent=$(sim_get /stats | jq '.accepted // 0')
say "counted: Graph $graph_counted of $graph_accepted accepted, EWS $ews_counted of $ews_accepted; apns-sim accepted $sent badges"

jq -s --argjson gc "$graph_counted" --argjson ga "$graph_accepted" --argjson ec "$ews_counted" \
  --argjson ea "$ews_accepted" --argjson mailboxes "$mailboxes" --argjson sent "$sent" '
  (map({(.name): .}) | add) as $r
  | {benchmark: "graph", mailboxes: $mailboxes, connections: 64, runs: $r,
     badges_sent: $sent,
     every_accepted_counted_once: ($gc == $ga and $ec == $ea),
     over_3s_at_5000: $r.graph5000.answer_over_3s,
     over_3s_at_5000_with_client_queue: $r.graph5000.over_3s,
     answers_503_at_5000: $r.graph5000.answers_503,
     cpu_ratio: (if $r.ews_capacity.cpu_us then ($r.graph_capacity.cpu_us / $r.ews_capacity.cpu_us * 100 | round / 100) else null end)}
  | .goals_met = (.every_accepted_counted_once and .over_3s_at_5000 == 0 and (.cpu_ratio // 99) <= 1)' \
  "$tmp"/runs/*.json >"$tmp/result.json"

echo
echo "Graph listener benchmark: $mailboxes mailboxes ($graphs Graph, $ewss EWS registrations), 64 keep-alive connections, 2 cores shared with the load generator and apns-sim"
for n in graph1000 graph5000 graph_capacity ews_capacity; do
  jq -r --arg n "$n" '.runs[$n] | "  \(.name | . + "               " | .[0:15]) \(.rate)/s accepted \(.accepted), 503 \(.answers_503), p50 \(.p50_ms) p99 \(.p99_ms) max \(.max_ms) ms (from the send: p99 \(.answer_p99_ms), over 3 s \(.answer_over_3s)), CPU per request \(.mailpushd_us) + \(.mariadb_us) = \(.cpu_us) us"' "$tmp/result.json"
done
jq -r '"  every accepted notification counted once: \(.every_accepted_counted_once)\n  over_3s_at_5000 = \(.over_3s_at_5000)  goal 0 (answers over 3 s from their send; 503s \(.answers_503_at_5000); over 3 s from the due time \(.over_3s_at_5000_with_client_queue))  \(if .over_3s_at_5000 == 0 then "met" else "MISSED" end)\n  cpu_ratio       = \(.cpu_ratio)  goal <= 1 (Graph notification / EWS badge callback at capacity)  \(if (.cpu_ratio // 99) <= 1 then "met" else "MISSED" end)"' "$tmp/result.json"
echo
cat "$tmp/result.json"
