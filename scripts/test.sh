#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: packages, the test MariaDB server, a build
# per preset and ctest. Usage: scripts/test.sh [--preset dev|asan]... (default: dev, then asan).
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
[ ${#presets[@]} -gt 0 ] || presets=(dev asan)

bash scripts/install-deps.sh

# The suite's own MariaDB: a private server in var/test, stopped again when the suite ends.
db_dir="$root/var/test/mariadb"
db_port="${MAILPUSH_TEST_DB_PORT:-3308}"
bash scripts/mariadb.sh start --datadir "$db_dir" --port "$db_port"
trap 'bash scripts/mariadb.sh stop --datadir "$db_dir" --port "$db_port" || true' EXIT
export MAILPUSH_TEST_DB_HOST=127.0.0.1
export MAILPUSH_TEST_DB_PORT="$db_port"
export MAILPUSH_TEST_DB_USER=mailpush
export MAILPUSH_TEST_DB_PASSWORD_FILE="$db_dir/mailpush.password"

for preset in "${presets[@]}"; do
  echo "== preset $preset: configure, build, test"
  start=$(date +%s)
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset"
  echo "== preset $preset: passed in $(( $(date +%s) - start )) s"
done
