#!/usr/bin/env bash
# Memory per idle listener connection (issue 16): mailpushd against a private nginx, both on
# loopback, in the same run. See bench/README.md.
#
#   bench/conn_memory.sh [--skip-build] [--build-dir DIR] [--connections N] [--keep-tmp]
#                        [--preload LIB]
#
# Builds mailpushd and mailpushctl with the release preset, starts a private MariaDB, migrates,
# starts mailpushd and a private nginx (1 worker, same certificate), then for each server:
#   bare: N TCP connections that send nothing, held, then closed;
#   tls:  N TLS connections, handshake done, no request, held, then closed;
# and reports the RSS each connection adds (held, 2 s after the last one opened) and the RSS still
# kept 10 s after they close, against the RSS before they were opened. Prints a summary and, last,
# one JSON line with the figures and goals_met. Progress goes to stderr. Everything it starts is
# stopped on exit; it never runs for more than 10 minutes. --skip-build uses the binaries already
# in the build folder; --keep-tmp keeps the temporary folder (logs); --preload LIB runs mailpushd
# with LD_PRELOAD=LIB (allocator experiments, e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2).
# CONN_MEMORY_REGION='{"log_level":"debug"}' merges JSON into the region file (experiments).
set -euo pipefail

readonly BUDGET_SECONDS=600
readonly SETTLE_SECONDS=2 KEPT_AFTER_SECONDS=10
readonly DATABASE=mailpush_bench
readonly GOAL_BARE_KIB=4 GOAL_TLS_KIB=24 GOAL_KEPT_MIB=5

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"

skip_build=0
keep_tmp=0
build_dir="$root/build/release"
connections=1000
preload=""

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --keep-tmp) keep_tmp=1 ;;
    --build-dir) build_dir=$(realpath -m -- "$2") && shift ;;
    --connections) connections=$2 && shift ;;
    --preload) preload=$(realpath -- "$2") && shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "conn_memory: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$connections" =~ ^[0-9]+$ ]] || [ "$connections" -lt 100 ] || [ "$connections" -gt 5000 ]; then
  echo "conn_memory: --connections must be 100 to 5000" >&2
  exit 2
fi

readonly BENCH_NAME=conn_memory
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

# Both servers and the client hold a descriptor per connection (the client two in TLS runs).
ulimit -n "$(ulimit -Hn)" || true
[ "$(ulimit -n)" -ge $((connections * 2 + 200)) ] ||
  die "the descriptor limit $(ulimit -n) is too low for $connections connections (raise ulimit -Hn)"

# ---------------------------------------------------------------- cleanup

tmp=$(mktemp -d /tmp/mailpush-conn-memory.XXXXXX)
mailpushd_pid=""
nginx_pid=""
client_pid=""
db_started=0
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_process "$client_pid" TERM 20
  stop_process "$mailpushd_pid" TERM 100
  stop_process "$nginx_pid" QUIT 50
  if [ "$db_started" = 1 ]; then
    timeout 90 bash scripts/mariadb.sh stop --datadir "$tmp/db" >/dev/null 2>&1 ||
      echo "conn_memory: could not stop the private MariaDB in $tmp/db" >&2
  fi
  if [ "$keep_tmp" = 1 ]; then
    echo "conn_memory: kept $tmp" >&2
  else
    rm -rf -- "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in jq curl openssl mariadb ss awk cmake python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/install-deps.sh installs the project's tools)"
done
ensure_nginx

[ "$skip_build" = 1 ] || build_release mailpushd mailpushctl
mailpushd="$build_dir/src/app/mailpushd"
mailpushctl="$build_dir/src/app/mailpushctl"
for b in "$mailpushd" "$mailpushctl"; do
  [ -x "$b" ] || die "$b is missing: build the release preset (or drop --skip-build)"
done

# ---------------------------------------------------------------- TLS, MariaDB, servers

tls="$tmp/tls"
say "development TLS files (certs/make-dev-certs.sh)"
timeout "$(allow 60)" bash certs/make-dev-certs.sh "$tls" >/dev/null 2>&1 || die "certs/make-dev-certs.sh"

bench_port db_port
say "starting a private MariaDB on 127.0.0.1:$db_port (datadir $tmp/db)"
db_started=1
timeout "$(allow 120)" bash scripts/mariadb.sh start --datadir "$tmp/db" --port "$db_port" --database "$DATABASE" \
  >"$tmp/mariadb-start.log" 2>&1 || { cat "$tmp/mariadb-start.log" >&2; die "scripts/mariadb.sh start"; }

# The region as in dev (network threads = cores), with the private database and a free port.
bench_port listener_port
region="$tmp/region.json"
jq --argjson port "$listener_port" --arg cert "$tls/listener.crt" --arg key "$tls/listener.key" \
  --argjson dbport "$db_port" --arg db "$DATABASE" --arg pw "$tmp/db/mailpush.password" --arg ca "$tls/ca.crt" '
  .listener.port = $port | .listener.tls_cert = $cert | .listener.tls_key = $key
  | .database.host = "127.0.0.1" | .database.port = $dbport | del(.database.socket)
  | .database.name = $db | .database.password_file = $pw | .database.migrate_on_start = false
  | .apns.ca_file = $ca | del(.registration)
  | .limits.max_connections = 20000 | .limits.max_connections_per_address = 0
    | .limits.connections_per_second_per_address = 0 | .limits.unknown_secrets_per_second_per_address = 0 | .log_level = "warn" | del(.portal)
  | . * (env.CONN_MEMORY_REGION // "{}" | fromjson)' regions/dev.json >"$region"
say "migrating (mailpushctl migrate)"
timeout "$(allow 60)" "$mailpushctl" --region "$region" migrate >"$tmp/migrate.log" 2>&1 ||
  { cat "$tmp/migrate.log" >&2; die "mailpushctl migrate"; }

say "starting mailpushd on 127.0.0.1:$listener_port${preload:+ (LD_PRELOAD=$preload)}"
LD_PRELOAD="$preload" "$mailpushd" --region "$region" >"$tmp/mailpushd.log" 2>&1 </dev/null &
mailpushd_pid=$!
wait_https "https://localhost:$listener_port/readyz" "$(allow 30)" ||
  { tail -n 20 "$tmp/mailpushd.log" >&2; die "mailpushd did not become ready"; }

bench_port nginx_port
start_reference_nginx "$nginx_port" "return 200 'ok';"

# ---------------------------------------------------------------- measurement

rss_kib() { # summed VmRSS of the given pids
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + v))
  done
  echo "$total"
}
server_pids() { if [ "$1" = mailpushd ]; then echo "$mailpushd_pid"; else nginx_pids; fi; }
server_port() { if [ "$1" = mailpushd ]; then echo "$listener_port"; else echo "$nginx_port"; fi; }

# Warm-up: a few TLS connections with a request each, so one-time set-up (OpenSSL's tables, the
# session cache, first allocations of each thread) is not counted per connection.
warm_up() {
  local port
  port=$(server_port "$1")
  for _ in $(seq 1 20); do
    curl -sS --max-time 5 --cacert "$tls/ca.crt" -o /dev/null "https://localhost:$port/healthz" 2>/dev/null || true
  done
}

# measure SERVER KIND(bare|tls): opens the connections, holds them, closes them; leaves
# $tmp/runs/SERVER-KIND.json with RSS before, held and kept (KiB).
measure() {
  local server=$1 kind=$2 pids before held kept line tls_args=()
  read -r -a pids <<<"$(server_pids "$server")"
  [ "$kind" = bare ] || tls_args=(--tls --ca "$tls/ca.crt")
  kill -0 "${pids[@]}" 2>/dev/null || die "$server is not running"
  before=$(rss_kib "${pids[@]}")
  coproc CLIENT { exec python3 "$root/bench/conn_hold.py" --port "$(server_port "$server")" \
    --count "$connections" "${tls_args[@]}" 2>>"$tmp/client.log"; }
  # shellcheck disable=SC2153 # CLIENT_PID is set by coproc
  client_pid=$CLIENT_PID
  read -r -t "$(allow 120)" -u "${CLIENT[0]}" line || { cat "$tmp/client.log" >&2; die "$server $kind: the client did not open its connections"; }
  [ "$line" = "open $connections" ] || die "$server $kind: the client said '$line'"
  sleep "$SETTLE_SECONDS"
  held=$(rss_kib "${pids[@]}")
  echo close >&"${CLIENT[1]}"
  read -r -t 30 -u "${CLIENT[0]}" line || die "$server $kind: the client did not close its connections"
  wait "$client_pid" 2>/dev/null || true
  client_pid=""
  sleep "$KEPT_AFTER_SECONDS"
  kept=$(rss_kib "${pids[@]}")
  jq -n -c --arg s "$server" --arg k "$kind" --argjson n "$connections" --argjson b "$before" \
    --argjson h "$held" --argjson kept "$kept" \
    '{server: $s, kind: $k, connections: $n, rss_before_kib: $b, rss_held_kib: $h, rss_kept_kib: $kept,
      kib_per_connection: (($h - $b) / $n * 100 | round / 100),
      kept_mib: (($kept - $b) / 1024 * 100 | round / 100)}' >"$tmp/runs/$server-$kind.json"
  say "$(jq -r '"\(.server) \(.kind): RSS \(.rss_before_kib) KiB before, \(.rss_held_kib) held = \(.kib_per_connection) KiB per connection; \(.rss_kept_kib) KiB '"$KEPT_AFTER_SECONDS"' s after closing = \(.kept_mib) MiB kept"' "$tmp/runs/$server-$kind.json")"
}

mkdir -p "$tmp/runs"
for server in mailpushd nginx; do
  warm_up "$server"
  for kind in bare tls; do
    say "$server $kind: $connections idle connections"
    measure "$server" "$kind"
  done
done
kill -0 "$mailpushd_pid" 2>/dev/null || { tail -n 20 "$tmp/mailpushd.log" >&2; die "mailpushd died"; }
[ ! -s "$tmp/mailpushd.log" ] || { say "mailpushd log (warnings and errors), last lines:"; tail -n 5 "$tmp/mailpushd.log" >&2; }

# ---------------------------------------------------------------- report

jq -s -c --arg nginx "$(nginx_version)" --argjson cores "$(nproc)" --argjson gb "$GOAL_BARE_KIB" \
  --argjson gt "$GOAL_TLS_KIB" --argjson gk "$GOAL_KEPT_MIB" --argjson after "$KEPT_AFTER_SECONDS" \
  --arg preload "$preload" '
  (map({key: "\(.server)_\(.kind)", value: .}) | from_entries) as $r
  | def fig(x): {kib_per_connection: x.kib_per_connection, kept_mib: x.kept_mib,
                 rss_before_kib: x.rss_before_kib, rss_held_kib: x.rss_held_kib, rss_kept_kib: x.rss_kept_kib};
  {benchmark: "conn_memory", connections: $r.mailpushd_bare.connections, cores: $cores, nginx: $nginx,
   preload: (if $preload == "" then null else $preload end),
   kept_after_s: $after,
   mailpushd: {bare: fig($r.mailpushd_bare), tls: fig($r.mailpushd_tls)},
   reference: {bare: fig($r.nginx_bare), tls: fig($r.nginx_tls)},
   goals: {bare_kib: $gb, tls_kib: $gt, kept_mib: $gk},
   goals_met: {bare_kib: ($r.mailpushd_bare.kib_per_connection <= $gb),
               tls_kib: ($r.mailpushd_tls.kib_per_connection <= $gt),
               kept_mib: ([$r.mailpushd_bare.kept_mib, $r.mailpushd_tls.kept_mib] | max <= $gk)}}' \
  "$tmp"/runs/{mailpushd-bare,mailpushd-tls,nginx-bare,nginx-tls}.json >"$tmp/result.json" ||
  die "assembling the result"

jq -r '
  def row(name; m; n): "  \(name) mailpushd \(m.kib_per_connection) KiB each, \(m.kept_mib) MiB kept | nginx \(n.kib_per_connection) KiB each, \(n.kept_mib) MiB kept";
  def goal(name; v; rule; ok): "  \(name) = \(v)  goal \(rule)  \(if ok then "met" else "MISSED" end)";
  "",
  "Idle connection memory: \(.connections) connections each kind, loopback, \(.cores) cores; reference \(.nginx) (1 worker); kept = RSS \(.kept_after_s) s after closing - RSS before opening",
  row("bare TCP (nothing sent):"; .mailpushd.bare; .reference.bare),
  row("TLS (handshake, idle): "; .mailpushd.tls; .reference.tls),
  goal("bare KiB per connection"; .mailpushd.bare.kib_per_connection; "<= \(.goals.bare_kib)"; .goals_met.bare_kib),
  goal("TLS KiB per connection "; .mailpushd.tls.kib_per_connection; "<= \(.goals.tls_kib)"; .goals_met.tls_kib),
  goal("MiB kept after closing "; ([.mailpushd.bare.kept_mib, .mailpushd.tls.kept_mib] | max); "<= \(.goals.kept_mib)"; .goals_met.kept_mib),
  ""' "$tmp/result.json"
cat "$tmp/result.json"
