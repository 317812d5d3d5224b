#!/usr/bin/env bash
# The soak benchmark (issue 16): the dev region under steady load for a long time, with the
# events of a real region's life in the middle; it proves that no resource leaks and nothing
# acknowledged is lost. See bench/README.md ("Soak").
#
#   bench/soak.sh [--minutes N] [--build-dir DIR] [--skip-build] [--keep-tmp] [--mailboxes N]
#                 [--no-sighup] [--db-port N]
#
# Starts a private MariaDB (durable), apns-sim and mailpushd (release build by default; --build-dir
# build/dev --skip-build is what scripts/test.sh runs), onboards one customer through the portal,
# seeds --mailboxes mailboxes (10,000: 20,000 registrations) and measures the capacity briefly
# (closed loop, 64 connections). Then, for N minutes (30), bench/soak_load drives ~60 % of that
# capacity open loop: StatusEvent heartbeats (30 %) and badge callbacks, while
#   - registrations churn through the registration API all along (new, token moved, deleted);
#   - idle connections come in bursts at 42, 55 and 64 % (500 bare TCP + 200 TLS, held 20 s);
#   - the customer's push certificate is renewed through the portal at 40 %;
#   - MariaDB is restarted at 50 %;
#   - the listener's certificate is renewed at 60 %: a new pair from the same CA replaces the
#     files the region names, SIGHUP (the region turns the file watcher off, so that only the
#     signal reloads), and a new connection must be served the new serial
#     (--no-sighup skips it, for a build without the reload);
#   (--db-port N puts the private MariaDB on that port instead of a free one)
# and every 10 s a sample goes to samples.jsonl: mailpushd's RSS, open fds and threads,
# MariaDB's Prepared_stmt_count and Threads_connected, the outbox's depth and oldest age, the
# callbacks' p99 answer time over the interval and the badges apns-sim accepted.
#
# Pass rule (bench/soak_verdict.jq): after the warm-up (10 %, at least 20 s), each resource's median
# over the last third is at most its first third's + max(10 %, a small floor); samples during and
# 10 s after an idle burst do not count; delivery never stops outside the restart; every device
# last received the newest badge its mailbox had answered OK (churned registrations too);
# every "level":"error" line of mailpushd's log falls in the restart's window; every timeline
# event worked; the outbox drains. Progress on stderr, a summary, then ONE JSON line on stdout;
# exit 1 when the rule fails. Everything it starts is stopped on exit.
set -euo pipefail

readonly DATABASE=mailpush_soak
readonly CONNECTIONS=64
readonly STATUS_SHARE=0.3
readonly SAMPLE_S=10

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"

minutes=30
build_dir=""
skip_build=0
keep_tmp=0
mailboxes=10000
sighup=1
db_port=""
usage() { sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2 && shift ;;
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --skip-build) skip_build=1 ;;
    --keep-tmp) keep_tmp=1 ;;
    --mailboxes) mailboxes=$2 && shift ;;
    --no-sighup) sighup=0 ;;
    --db-port) db_port=$2 && shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "soak: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$minutes" =~ ^[0-9]+$ ]] && [ "$minutes" -ge 2 ] && [ "$minutes" -le 1440 ] ||
  { echo "soak: --minutes must be 2..1440" >&2; exit 2; }
[[ "$mailboxes" =~ ^[0-9]+$ ]] && [ "$mailboxes" -ge 100 ] && [ "$mailboxes" -le 1000000 ] ||
  { echo "soak: --mailboxes must be 100..1000000" >&2; exit 2; }

duration=$((minutes * 60))
BUDGET_SECONDS=$((duration + 600))
readonly BENCH_NAME=soak
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
# shellcheck source=bench/region_lib.sh
source "$root/bench/region_lib.sh"

# ---------------------------------------------------------------- cleanup

tmp=$(mktemp -d /tmp/mailpush-soak.XXXXXX)
mailpushd_pid=""
sim_pid=""
load_pid=""
db_started=0
background=() # churn loop and timeline events
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  touch "$tmp/churn.stop" "$tmp/drained"
  for pid in "${background[@]}"; do stop_process "$pid" TERM 50; done
  stop_process "$load_pid" TERM 50
  stop_region
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in jq curl openssl mariadb ss awk cmake sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/install-deps.sh installs the project's tools)"
done

# ---------------------------------------------------------------- build

[ -n "$build_dir" ] || build_dir="$root/build/release"
[ "$skip_build" = 1 ] || build_release_targets "$build_dir" mailpushd mailpushctl apns-sim soak_load
mailpushd="$build_dir/src/app/mailpushd"
mailpushctl="$build_dir/src/app/mailpushctl"
sim="$build_dir/tools/apns_sim/apns-sim"
load="$build_dir/bench/soak_load"
for b in "$mailpushd" "$mailpushctl" "$sim" "$load"; do
  [ -x "$b" ] || die "$b is missing: build it (cmake --build --preset dev or release) or drop --skip-build"
done

# ---------------------------------------------------------------- the region

sql_command=(mariadb --defaults-file="$tmp/db/my.cnf" --protocol=socket --user="$(id -un)" --batch
  --skip-column-names --connect-timeout=3 "$DATABASE")
sql() { timeout 10 "${sql_command[@]}"; }
kib() { awk -v k="^$2:" '$0 ~ k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
num() { [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && echo "$1" || echo null; } # a number or null
now_ms() { date +%s%3N; }
elapsed() { echo $((($(now_ms) - t0_ms) / 1000)); }
# event NAME OK DETAIL-JSON START_MS: one line of the timeline (events.jsonl).
event() {
  jq -n -c --arg name "$1" --argjson ok "$2" --argjson detail "$3" --argjson s "$4" --argjson e "$(now_ms)" \
    --argjson t0 "$t0_ms" '{event: $name, ok: $ok, start_s: (($s - $t0) / 1000), end_s: (($e - $t0) / 1000),
      start_ms: $s, end_ms: $e} + $detail' >>"$tmp/events.jsonl"
}

make_region_files
timeout "$(allow 30)" bash scripts/make-region-secret.sh "$tmp/keys/region-secret" >/dev/null ||
  die "scripts/make-region-secret.sh"
[ -n "$db_port" ] || bench_port db_port
say "starting a private MariaDB on 127.0.0.1:$db_port"
db_started=1
db_start() {
  timeout "$(allow 120)" bash scripts/mariadb.sh start --datadir "$tmp/db" --port "$db_port" --database "$DATABASE" \
    >>"$tmp/mariadb-start.log" 2>&1
}
db_start || { cat "$tmp/mariadb-start.log" >&2; die "scripts/mariadb.sh start"; }
start_apns_sim 300000 # soak_load reads its records every second
bench_port listener_port
region="$tmp/region.json"
write_region "$region" '{"instance_id":"soak","batch":1000,"poll_ms":100,"apns_connections":2,"ttl_s":3600,"lease_s":30,"max_attempts":12}' \
  '.registration.secret_file = ($tmp + "/keys/region-secret") | .registration.per_customer_per_minute = 6000
   | .portal.credential_refresh_s = 5 | .log_level = "warn"
   | .listener.tls_poll_interval_ms = 0'
timeout "$(allow 60)" "$mailpushctl" --region "$region" migrate >"$tmp/migrate.log" 2>&1 ||
  { cat "$tmp/migrate.log" >&2; die "mailpushctl migrate"; }
say "starting mailpushd on 127.0.0.1:$listener_port; one customer through the portal (mail.p12)"
start_mailpushd
onboard_customer
seed_sql "$mailboxes" | timeout "$(allow 120)" "${sql_command[@]}" || die "seeding $mailboxes mailboxes"
seed_check "$mailboxes"
say "  seeded $mailboxes mailboxes with $devices devices and registrations"

load_common=(--port "$listener_port" --ca "$tls/ca.crt")
drain() { # seconds: until no queued row is left
  local until=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$until" ]; do
    [ "$(echo "SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL" | sql 2>/dev/null)" = 0 ] && return 0
    sleep 0.5
  done
  return 1
}
# The dispatcher starts after the first credential refresh: one badge shows it is up.
say "first notification (credential loaded, APNs connection open)"
[ "$("$load" "${load_common[@]}" --callback "$(printf 'fanout-bench-secret-%010d' 1)" \
  --subscription fanout-sub-1 --badge 1000000)" = OK ] || die "the probe callback was not answered OK"
until_probe=$((SECONDS + 60))
until [ "$(sim_get /stats | jq .accepted)" -ge 1 ]; do
  [ "$SECONDS" -lt "$until_probe" ] || die "no notification reached apns-sim: $(tail -n 5 "$tmp/mailpushd-1.log")"
  sleep 0.2
done

# ---------------------------------------------------------------- capacity

capacity_s=$((minutes >= 10 ? 10 : 5))
say "capacity: as fast as $CONNECTIONS connections go, ${capacity_s}s (closed loop)"
timeout "$(allow $((capacity_s + 60)))" "$load" "${load_common[@]}" --mailboxes "$mailboxes" \
  --connections "$CONNECTIONS" --rate 0 --duration "$capacity_s" --status-share "$STATUS_SHARE" --seed 7 \
  >"$tmp/capacity.json" 2>"$tmp/capacity.err" || { cat "$tmp/capacity.err" >&2; die "capacity run"; }
capacity=$(jq .ok_rate "$tmp/capacity.json")
rate=$(jq -n --argjson c "$capacity" '[$c * 0.6, 10] | max | . * 10 | round / 10')
drain "$(allow 120)" || die "the outbox did not drain after the capacity run"
say "  capacity $capacity callbacks/s answered OK; the soak drives $rate/s (60 %)"

# ---------------------------------------------------------------- timeline events

# Registrations churn through the API: new, new, token moved, deleted, one every 2 s; each change
# is followed by a callback, and the badge it acknowledged is what that token must last receive
# (churn.tsv: token, badge; the last line of a token counts). Moves and deletes present the
# registration's capability (Authorization: Bearer), as the app does.
churn_loop() {
  set +e
  local n=0 op=0 labels=() tokens=() secrets=() badges=() base="https://localhost:$listener_port/v1/registrations"
  # api METHOD URL [capability] [body]: prints the reply's first line, then the HTTP status.
  api() {
    local args=(-sS --max-time 10 --cacert "$tls/ca.crt" -X "$1" -w '\n%{http_code}')
    [ -n "${3:-}" ] && args+=(-H "Authorization: Bearer $3")
    [ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
    curl "${args[@]}" "$2"
  }
  register() { # mailbox token: prints "status change capability"
    local out
    out=$(api POST "$base" "" "$(jq -n -c --arg c "$customer_public" --arg k "$registration_key" --arg m "$1" \
      --arg t "$2" '{customer_id: $c, registration_key: $k, mailbox: $m, device_token: $t, environment: "production"}')")
    jq -r --arg s "$(tail -n 1 <<<"$out")" '"\($s) \(.change // .error) \(.capability // "-")"' \
      <<<"$(head -n 1 <<<"$out")" 2>/dev/null || echo "$(tail -n 1 <<<"$out") unreadable -"
  }
  callback() { "$load" "${load_common[@]}" --callback "$1" --subscription "soak-churn-sub-$2" --badge "$3" 2>/dev/null; }
  note() { printf '{"t_s":%s,"op":"%s","ok":%s,"detail":"%s"}\n' "$(elapsed)" "$1" "$2" "$3" >>"$tmp/churn.jsonl"; }
  while [ ! -e "$tmp/churn.stop" ]; do
    local kind=new token status change secret answer out
    case $((op % 4)) in 2) [ ${#labels[@]} -gt 0 ] && kind=moved ;; 3) [ ${#labels[@]} -gt 0 ] && kind=deleted ;; esac
    op=$((op + 1))
    case $kind in
      new)
        n=$((n + 1))
        token=$(printf 'soak-churn-%s-%s' "$n" "$RANDOM" | sha256sum | cut -c1-64)
        read -r status change secret <<<"$(register "soak-churn-$n@example.test" "$token")"
        if [ "$status" != 201 ]; then note new false "register answered $status $change"; sleep 2; continue; fi
        answer=$(callback "$secret" "$n" 0)
        [ "$answer" = OK ] && answer=$(callback "$secret" "$n" 1)
        if [ "$answer" = OK ]; then
          printf '%s\t1\n' "$token" >>"$tmp/churn.tsv"
          labels+=("$n") tokens+=("$token") secrets+=("$secret") badges+=(1)
          note new true "churn registration $n"
        else note new false "churn registration $n: callback answered $answer"; fi
        ;;
      moved)
        token=$(printf 'soak-churn-moved-%s-%s' "$op" "$RANDOM" | sha256sum | cut -c1-64)
        out=$(api PATCH "$base/self" "${secrets[0]}" "$(jq -n -c --arg t "$token" '{device_token: $t, environment: "production"}')")
        status=$(tail -n 1 <<<"$out")
        change=$(head -n 1 <<<"$out" | jq -r '.change // .error' 2>/dev/null)
        if [ "$status" != 200 ] || [ "$change" != moved ]; then
          note moved false "churn registration ${labels[0]}: answered $status $change"
        else
          answer=$(callback "${secrets[0]}" "${labels[0]}" $((badges[0] + 1)))
          if [ "$answer" = OK ]; then
            printf '%s\t%s\n' "$token" $((badges[0] + 1)) >>"$tmp/churn.tsv"
            labels+=("${labels[0]}") tokens+=("$token") secrets+=("${secrets[0]}") badges+=($((badges[0] + 1)))
            note moved true "churn registration ${labels[0]}"
          else note moved false "churn registration ${labels[0]}: callback answered $answer"; fi
        fi
        labels=("${labels[@]:1}") tokens=("${tokens[@]:1}") secrets=("${secrets[@]:1}") badges=("${badges[@]:1}")
        ;;
      deleted)
        status=$(api DELETE "$base/self" "${secrets[0]}" | tail -n 1)
        answer=$(callback "${secrets[0]}" "${labels[0]}" $((badges[0] + 1)))
        if [ "$status" = 200 ] && [ "$answer" = Unsubscribe ]; then note deleted true "churn registration ${labels[0]}"
        else note deleted false "churn registration ${labels[0]}: DELETE answered $status, the callback after it $answer"; fi
        labels=("${labels[@]:1}") tokens=("${tokens[@]:1}") secrets=("${secrets[@]:1}") badges=("${badges[@]:1}")
        ;;
    esac
    sleep 2
  done
}

# Idle connections: bare TCP and TLS, held, closed (soak_load --idle-*).
idle_burst() { # hold-seconds
  local s out
  s=$(now_ms)
  out=$("$load" "${load_common[@]}" --idle-tcp 500 --idle-tls 200 --hold "$1" 2>&1) || true
  event idle_burst "$(jq -e '.failed == 0' <<<"$out" >/dev/null 2>&1 && echo true || echo false)" \
    "$(jq -c '{tcp_open, tls_open, failed, tcp_closed_by_server}' <<<"$out" 2>/dev/null || echo '{}')" "$s"
}

# The customer's push certificate renewed through the portal (the same certificate, legacy .p12).
renew_push_certificate() {
  local s status
  s=$(now_ms)
  status=$(curl -sS --max-time 30 --cacert "$tls/ca.crt" -H @"$tmp/keys/admin-header" -o "$tmp/renewal.json" \
    -F "password=<$certs/mail-legacy.p12.password" -F "certificate=@$certs/mail-legacy.p12;type=application/x-pkcs12" \
    -w '%{http_code}' "https://localhost:$listener_port/portal/v1/customers/$customer_public/certificate") || true
  event portal_renewal "$([ "$status" = 200 ] && echo true || echo false)" "{\"status\":\"$status\"}" "$s"
}

restart_mariadb() {
  local s ok=true
  s=$(now_ms)
  timeout 120 bash scripts/mariadb.sh stop --datadir "$tmp/db" --port "$db_port" >>"$tmp/mariadb-restart.log" 2>&1 || ok=false
  db_start || ok=false
  event mariadb_restart "$ok" '{}' "$s"
}

# A new listener pair from the same CA (certs/make-dev-certs.sh reissues a missing listener), moved
# over the files the region names, then SIGHUP; a new connection must be served the new serial.
renew_listener_certificate() {
  local s renew="$tmp/tls-renew" new served=""
  s=$(now_ms)
  mkdir -p "$renew"
  cp "$tls/ca.crt" "$tls/ca.key" "$renew/"
  bash certs/make-dev-certs.sh "$renew" >"$tmp/tls-renew.log" 2>&1 || { event listener_renewal false '{"step":"make-dev-certs"}' "$s"; return; }
  new=$(openssl x509 -noout -serial -in "$renew/listener.crt")
  cp "$renew/listener.key" "$tls/listener.key.new" && mv "$tls/listener.key.new" "$tls/listener.key"
  cp "$renew/listener.crt" "$tls/listener.crt.new" && mv "$tls/listener.crt.new" "$tls/listener.crt"
  kill -HUP "$mailpushd_pid"
  for _ in $(seq 1 50); do
    served=$(openssl s_client -connect "127.0.0.1:$listener_port" -servername localhost </dev/null 2>/dev/null |
      openssl x509 -noout -serial 2>/dev/null) || true
    [ "$served" = "$new" ] && break
    sleep 0.2
  done
  event listener_renewal "$([ "$served" = "$new" ] && echo true || echo false)" \
    "$(jq -n -c --arg n "$new" --arg s "$served" --argjson alive "$(kill -0 "$mailpushd_pid" 2>/dev/null && echo true || echo false)" \
      '{new_serial: $n, served_serial: $s, mailpushd_alive: $alive}')" "$s"
}

# ---------------------------------------------------------------- samples

# One JSON line: mailpushd's RSS, fds and threads, MariaDB's prepared statements and connections
# (null while it is down), the outbox, and the load's latest interval.
sample() {
  local pid=$mailpushd_pid rss fds threads db="" accepted iv
  rss=$(kib "$pid" VmRSS); threads=$(kib "$pid" Threads)
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  db=$(echo "SELECT MAX(IF(variable_name = 'PREPARED_STMT_COUNT', variable_value, NULL)),
               MAX(IF(variable_name = 'THREADS_CONNECTED', variable_value, NULL))
             FROM information_schema.global_status WHERE variable_name IN ('PREPARED_STMT_COUNT', 'THREADS_CONNECTED');
             SELECT COUNT(*), COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(badge_queued_at), UTC_TIMESTAMP(6)) / 1000000, 0)
             FROM registrations WHERE badge_owner IS NOT NULL" | sql 2>/dev/null | tr '\n\t' '  ') || db=""
  accepted=$(sim_get /stats 2>/dev/null | jq .accepted) || accepted=null
  iv=$(tail -n 1 "$tmp/intervals.jsonl" 2>/dev/null)
  jq -e . <<<"$iv" >/dev/null 2>&1 || iv='{}' # none yet, or a line still being written
  read -r prepared connected queued oldest <<<"$db"
  jq -n -c --argjson t "$(elapsed)" --argjson rss "$(num "$rss")" --argjson fds "$fds" --argjson th "$(num "$threads")" \
    --argjson p "$(num "$prepared")" --argjson c "$(num "$connected")" --argjson q "$(num "$queued")" \
    --argjson o "$(num "$oldest")" --argjson a "$(num "$accepted")" --argjson iv "$iv" \
    '{t_s: $t, rss_kib: $rss, fds: $fds, threads: $th, prepared_stmts: $p, db_connections: $c,
      outbox_queued: $q, outbox_oldest_s: $o, sim_accepted: $a, callback_p99_ms: $iv.p99_ms,
      callbacks_ok_per_s: $iv.ok_rate, interval_t_s: $iv.t_s}' >>"$tmp/samples.jsonl"
}

# ---------------------------------------------------------------- the soak

warmup=$((duration / 10 > 20 ? duration / 10 : 20))
hold=$((duration / 12 < 20 ? duration / 12 : 20))
at() { echo $((duration * $1 / 100)); }
# The events fall in the middle third (the first third is the steady state before them, the last
# third shows what they left behind).
timeline=("$(at 40) renew_push_certificate" "$(at 42) idle_burst $hold" "$(at 50) restart_mariadb"
  "$(at 55) idle_burst $hold" "$(at 64) idle_burst $hold")
[ "$sighup" = 0 ] || timeline+=("$(at 60) renew_listener_certificate")
say "soak: ${minutes} min at $rate callbacks/s ($STATUS_SHARE heartbeats), $mailboxes mailboxes; warm-up ${warmup}s;" \
  "idle bursts at 42/55/64 % (${hold}s), portal renewal 40 %, MariaDB restart 50 %$([ "$sighup" = 0 ] || echo ', listener SIGHUP 60 %')"
t0_ms=$(now_ms)
"$load" "${load_common[@]}" --mailboxes "$mailboxes" --connections "$CONNECTIONS" --rate "$rate" \
  --duration "$duration" --status-share "$STATUS_SHARE" --seed 11 --interval "$SAMPLE_S" \
  --intervals "$tmp/intervals.jsonl" --control-port "$sim_control" --until-file "$tmp/drained" \
  --drain-timeout 300 --other-tokens "$tmp/other-tokens.tsv" >"$tmp/load.json" 2>"$tmp/load.err" &
load_pid=$!
churn_loop &
background+=($!)
next_sample=$((SAMPLE_S + 1))
while [ "$(elapsed)" -lt "$duration" ]; do
  t=$(elapsed)
  for i in "${!timeline[@]}"; do
    read -r when what arg <<<"${timeline[$i]}"
    [ "$t" -ge "$when" ] || continue
    say "  ${t}s: $what"
    $what ${arg:+"$arg"} &
    background+=($!)
    unset "timeline[$i]"
  done
  if [ "$t" -ge "$next_sample" ]; then
    sample
    say "  $(tail -n 1 "$tmp/samples.jsonl" | jq -r '"\(.t_s)s: RSS \(.rss_kib / 1024 | floor) MiB, fds \(.fds), threads \(.threads), prepared \(.prepared_stmts), db conns \(.db_connections), outbox \(.outbox_queued) (\(.outbox_oldest_s) s), p99 \(.callback_p99_ms) ms, \(.callbacks_ok_per_s) OK/s"')"
    next_sample=$((next_sample + SAMPLE_S))
  fi
  kill -0 "$mailpushd_pid" 2>/dev/null || die "mailpushd exited: $(tail -n 5 "$tmp/mailpushd-1.log")"
  kill -0 "$load_pid" 2>/dev/null || die "soak_load exited early: $(tail -n 5 "$tmp/load.err")"
  sleep 1
done
touch "$tmp/churn.stop"
for pid in "${background[@]}"; do wait "$pid" 2>/dev/null || true; done
say "sending done; waiting for the outbox to drain"
drained=true
drain "$(allow 240)" || drained=false
touch "$tmp/drained"
wait "$load_pid" || die "soak_load failed: $(tail -n 5 "$tmp/load.err")"
load_pid=""

# ---------------------------------------------------------------- verdict

# Churned tokens: the badge each last acknowledged against what apns-sim last delivered to it.
churn_lost=$(awk -F'\t' 'NR == FNR { got[$1] = $2; next } { want[$1] = $2 }
  END { n = 0; for (t in want) if (!(t in got) || got[t] + 0 < want[t] + 0) n++; print n }' \
  "$tmp/other-tokens.tsv" <(cat "$tmp/churn.tsv" 2>/dev/null))
# Error lines of mailpushd's log, with their time in ms since the epoch.
jq -c -R 'fromjson? | select(.level == "error")
  | . + {at_ms: ((.ts | sub("\\.(?<f>[0-9]{3})[0-9]*Z$"; "Z") | fromdateiso8601) * 1000)}' \
  "$tmp"/mailpushd-*.log >"$tmp/errors.jsonl" || true
jq -n -c --slurpfile samples "$tmp/samples.jsonl" --slurpfile events "$tmp/events.jsonl" \
  --slurpfile churn <(cat "$tmp/churn.jsonl" 2>/dev/null) --slurpfile errors "$tmp/errors.jsonl" \
  --slurpfile load "$tmp/load.json" --slurpfile cap "$tmp/capacity.json" \
  --argjson minutes "$minutes" --argjson duration "$duration" --argjson warmup "$warmup" \
  --argjson mailboxes "$mailboxes" --argjson registrations "$devices" --argjson rate "$rate" \
  --argjson capacity "$capacity" --argjson churn_lost "$churn_lost" --argjson drained "$drained" \
  --argjson sighup "$sighup" --argjson cores "$(nproc)" \
  -f bench/soak_verdict.jq >"$tmp/result.json" || die "the verdict (bench/soak_verdict.jq)"
[ "$keep_tmp" = 0 ] || cp "$tmp/result.json" "$tmp/result.keep.json"

jq -r '
  "",
  "Soak: \(.minutes) min on \(.cores) cores; \(.mailboxes) mailboxes (\(.registrations) registrations); capacity \(.capacity_per_s)/s, driven at \(.rate_per_s)/s (\(.status_share * 100 | round) % heartbeats)",
  "  callbacks: \(.load.requests) sent, \(.load.ok) OK (\(.load.badges_ok) badges, \(.load.heartbeats_ok) heartbeats), \(.load.http_errors) HTTP errors, \(.load.errors) without answer; p99 \(.load.p99_ms) ms",
  "  resources (median of the first third after the warm-up -> the last third; limit = first + max(10 %, floor)):",
  (.resources | to_entries[] | "    \(.key | . + " " * (18 - length)) \(.value.first) -> \(.value.last)  limit \(.value.limit)  \(if .value.ok then "ok" else "GREW" end)"),
  "  timeline: \([.events[] | "\(.event) at \(.start_s | floor)s \(if .ok then "ok" else "FAILED" end)"] | join(", "))",
  "  delivery stopped in \(.delivery_stopped_samples | length) samples outside the restart; outbox drained: \(.drained)",
  "  lost: \(.lost_devices) seeded devices, \(.churn.lost) churned tokens (churn: \(.churn.ok) changes ok, \(.churn.failed) failed); apns-sim records missed: \(.sim_dropped)",
  "  error lines: \(.errors.total), \(.errors.explained) in the MariaDB restart window, \(.errors.unexplained | length) unexplained",
  (.errors.unexplained[:10][] | "    UNEXPLAINED: \(.)"),
  "  failed: \(.failed | join(", ") | if . == "" then "nothing" else . end)",
  "  passed = \(.passed)",
  ""' "$tmp/result.json" >&2
jq -c 'del(.events[].start_ms, .events[].end_ms)' "$tmp/result.json"
[ "$(jq .passed "$tmp/result.json")" = true ] || exit 1
