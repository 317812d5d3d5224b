#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: packages, the test MariaDB server, a build
# per preset and ctest (the dev preset then a 3-minute soak, bench/soak.sh), then the parser
# fuzzers (built by the asan preset) for a bounded time.
# Usage: scripts/test.sh [--preset dev|asan|fuzz]... (default: dev, asan, fuzz; fuzz needs the
# asan build and builds it when asked alone). While the dev tests run, the asan preset builds at
# the lowest priority.
# Each fuzz target runs for its own time (below; where its coverage still grows), two at a time;
# MAILPUSH_FUZZ_SECONDS, when set, gives every target that many seconds instead.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

presets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) presets+=("$2"); shift 2 ;;
    --preset=*) presets+=("${1#--preset=}"); shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#presets[@]} -gt 0 ] || presets=(dev asan fuzz)

bash scripts/install-deps.sh

# The suite's own MariaDB: a private server in var/test, stopped again when the suite ends.
db_dir="$root/var/test/mariadb"
db_port="${MAILPUSH_TEST_DB_PORT:-3308}"
# A low max_prepared_stmt_count: a statement leak fails the suite instead of a region in production.
bash scripts/mariadb.sh start --datadir "$db_dir" --port "$db_port" --max-prepared-stmt-count 256
trap 'bash scripts/mariadb.sh stop --datadir "$db_dir" --port "$db_port" || true' EXIT
export MAILPUSH_TEST_DB_HOST=127.0.0.1
export MAILPUSH_TEST_DB_PORT="$db_port"
export MAILPUSH_TEST_DB_USER=mailpush
export MAILPUSH_TEST_DB_PASSWORD_FILE="$db_dir/mailpush.password"

# fuzz NAME SECONDS MAX_LEN [libFuzzer options] -- SEEDS...: runs build/asan/fuzz/fuzz_NAME for
# the bounded time on a corpus in the build tree that starts from the seeds and grows across runs;
# its output goes to build/asan/fuzz/NAME.log (the last lines are printed when it ends).
fuzz() {
  local name=$1 seconds=${MAILPUSH_FUZZ_SECONDS:-$2} max_len=$3 options=()
  shift 3
  while [ "$1" != -- ]; do options+=("$1"); shift; done
  shift
  local corpus="$root/build/asan/fuzz/corpus_$name" log="$root/build/asan/fuzz/$name.log" rc=0
  mkdir -p "$corpus"
  cp "$@" "$corpus/"
  (cd build/asan/fuzz && "./fuzz_$name" "${options[@]}" -max_len="$max_len" -timeout=5 \
     -max_total_time="$seconds" -print_final_stats=1 "$corpus" >"$log" 2>&1) || rc=$?
  echo "-- fuzz_$name, ${seconds}s, exit $rc"
  tail -n 6 "$log"
  return "$rc"
}
# Two lanes, one per core, of about the same length. The times follow where coverage still grew
# at the end of 60-second runs: the parsers of text and frames keep finding inputs, the PROXY
# header (819 inputs in 14 million runs) and PKCS #12 (OpenSSL-bound, ~100 inputs) level off.
fuzz_all() {
  local a=0 b=0
  ( fuzz ews_parser 60 16384 -dict="$root/fuzz/ews_parser.dict" -- tests/data/ews/*.xml fuzz/seeds/ews/* &&
    fuzz multipart 45 16384 -- fuzz/seeds/multipart/* &&
    fuzz proxy_header 20 1024 -- fuzz/seeds/proxy_header/* &&
    fuzz graph_parser 30 16384 -dict="$root/fuzz/graph_parser.dict" -- tests/data/graph/*.json ) &
  local lane_a=$!
  ( fuzz apns_h2 60 8192 -- fuzz/seeds/apns_h2/* &&
    fuzz registration 45 4096 -- fuzz/seeds/registration/* &&
    fuzz p12_inspect 30 8192 -- fuzz/seeds/p12/* ) &
  local lane_b=$!
  wait "$lane_a" || a=$?
  wait "$lane_b" || b=$?
  # libFuzzer exits non-zero on the first crash, leak or timeout, with the input saved.
  [ "$a" = 0 ] && [ "$b" = 0 ]
}

# The tests of one preset leave a core idle most of the time (they wait on sockets, servers and
# timers), so the next preset builds meanwhile at the lowest priority, and goes on beside the soak.
# (mariadbd and the soak's daemons run in sessions of their own, and with the kernel's autogroup
# scheduling nice 19 does not keep the build out of their way: the soak measures a lower capacity
# beside it and drives 60 % of that. Its rule is about growth, loss and errors, not the rate.)
build_log() { echo "$root/build/$1.build.log"; }
background_build=""
start_background_build() {
  local preset=$1
  cmake --preset "$preset" >/dev/null
  (nice -n 19 cmake --build --preset "$preset" >"$(build_log "$preset")" 2>&1) &
  background_build="$preset:$!"
}
# finish_build PRESET: waits for PRESET's background build, or builds it now.
finish_build() {
  local preset=$1
  if [ "${background_build%%:*}" = "$preset" ]; then
    local pid=${background_build#*:} rc=0
    background_build=""
    wait "$pid" || rc=$?
    tail -n 3 "$(build_log "$preset")"
    if [ "$rc" != 0 ]; then
      echo "== preset $preset: build failed (exit $rc); the end of $(build_log "$preset"):" >&2
      tail -n 60 "$(build_log "$preset")" >&2
      return "$rc"
    fi
  else
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset"
  fi
}
# On the way out, a build still running in the background is stopped too.
trap 'kill ${background_build#*:} 2>/dev/null || true; bash scripts/mariadb.sh stop --datadir "$db_dir" --port "$db_port" || true' EXIT

suite_start=$(date +%s)
stage() { echo "== $1 in $(( $(date +%s) - $2 )) s (at $(( $(date +%s) - suite_start )) s)"; }
for i in "${!presets[@]}"; do
  preset=${presets[$i]}
  next=${presets[$((i + 1))]:-}
  start=$(date +%s)
  if [ "$preset" = fuzz ]; then
    # The fuzz targets are part of the asan build.
    echo "== fuzz: the parsers, from the asan build"
    case " ${presets[*]} " in
      *" asan "*) ;;
      *) finish_build asan; stage "preset asan: build" "$start" ;;
    esac
    fuzz_all
    stage "fuzz" "$start"
    continue
  fi
  echo "== preset $preset: configure, build, test"
  finish_build "$preset"
  stage "preset $preset: build" "$start"
  if [ -n "$next" ] && [ "$next" != fuzz ]; then start_background_build "$next"; fi
  tests_start=$(date +%s)
  ctest --preset "$preset"
  stage "preset $preset: tests" "$tests_start"
  if [ "$preset" = dev ]; then
    # The 3-minute soak on the dev build (bench/soak.sh: leaks, loss, unexplained errors; its
    # own private MariaDB, apns-sim and mailpushd; about 4 minutes in all), with the next
    # preset's build beside it.
    echo "-- soak, 3 minutes (bench/soak.sh)"
    soak_start=$(date +%s)
    bash bench/soak.sh --minutes 3 --build-dir build/dev --skip-build
    stage "soak" "$soak_start"
    if [ -n "$next" ] && [ "$next" != fuzz ]; then
      finish_build "$next"
      stage "preset $next: build (beside the tests and the soak)" "$tests_start"
    fi
  fi
  echo "== preset $preset: passed in $(( $(date +%s) - start )) s"
done
echo "== all passed in $(( $(date +%s) - suite_start )) s"
