#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: packages, the test MariaDB server, a build
# per preset and ctest (the dev preset then a 3-minute soak, bench/soak.sh), then the parser
# fuzzers for a bounded time.
# Usage: scripts/test.sh [--preset dev|asan|fuzz]... (default: dev, asan, fuzz).
# MAILPUSH_FUZZ_SECONDS (default 60) bounds each fuzz target's run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

presets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) presets+=("$2"); shift 2 ;;
    --preset=*) presets+=("${1#--preset=}"); shift ;;
    -h|--help) sed -n '2,3p' "$0"; exit 0 ;;
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

fuzz_seconds="${MAILPUSH_FUZZ_SECONDS:-60}"
# fuzz NAME MAX_LEN [libFuzzer options] -- SEEDS...: runs build/fuzz/fuzz/fuzz_NAME for the
# bounded time on a corpus in the build tree that starts from the seeds and grows across runs.
fuzz() {
  local name=$1 max_len=$2 options=()
  shift 2
  while [ "$1" != -- ]; do options+=("$1"); shift; done
  shift
  local corpus="$root/build/fuzz/corpus_$name"
  mkdir -p "$corpus"
  cp "$@" "$corpus/"
  echo "-- fuzz_$name for ${fuzz_seconds}s"
  (cd build/fuzz && "./fuzz/fuzz_$name" "${options[@]}" -max_len="$max_len" -timeout=5 \
     -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" 2>&1 | tail -n 15)
}

for preset in "${presets[@]}"; do
  echo "== preset $preset: configure, build, test"
  start=$(date +%s)
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  if [ "$preset" = fuzz ]; then
    # libFuzzer exits non-zero on the first crash, leak or timeout, with the input saved.
    fuzz ews_parser 16384 -dict="$root/fuzz/ews_parser.dict" -- tests/data/ews/*.xml fuzz/seeds/ews/*
    fuzz apns_h2 8192 -- fuzz/seeds/apns_h2/*
    fuzz p12_inspect 8192 -- fuzz/seeds/p12/*
    fuzz multipart 16384 -- fuzz/seeds/multipart/*
    fuzz registration 4096 -- fuzz/seeds/registration/*
    fuzz proxy_header 1024 -- fuzz/seeds/proxy_header/*
  else
    ctest --preset "$preset"
  fi
  if [ "$preset" = dev ]; then
    # The 3-minute soak on the dev build (bench/soak.sh: leaks, loss, unexplained errors; its
    # own private MariaDB, apns-sim and mailpushd; about 4 minutes in all).
    echo "-- soak, 3 minutes (bench/soak.sh)"
    bash bench/soak.sh --minutes 3 --build-dir build/dev --skip-build
  fi
  echo "== preset $preset: passed in $(( $(date +%s) - start )) s"
done
