#!/usr/bin/env bash
# Installs the Debian 12 packages mailpush builds, tests and runs with; safe to run again.
set -euo pipefail

# Only the versioned Boost 1.81 packages: the unversioned ones pull 1.74 and conflict.
packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates curl jq openssl procps
  libboost1.81-dev libboost-system1.81-dev
  libssl-dev libnghttp2-dev nghttp2-client libtinyxml2-dev nlohmann-json3-dev
  libmariadb-dev mariadb-server mariadb-client mariadb-backup
  galera-4 socat haproxy
  libgtest-dev libgmock-dev
  prometheus-cpp-dev libcli11-dev
  clang libclang-rt-14-dev clang-format
  chromium nodejs
)
# npm: Debian's package, unless the installed Node.js (e.g. NodeSource's) already brings npm.
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

# The browser test's npm packages (tests/browser/package-lock.json, exact versions) into
# tests/browser/node_modules; npm ci only when what is there differs from the lock file.
install_browser_test_packages() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
    node -e 'const a = require(process.argv[1]).packages, b = require(process.argv[2]).packages;
      for (const k of Object.keys(a)) if (k && (!b[k] || b[k].version !== a[k].version)) process.exit(1);' \
      "$dir/package-lock.json" "$dir/node_modules/.package-lock.json" 2>/dev/null; then
    echo "install-deps: browser test packages present"
    return
  fi
  echo "install-deps: npm ci in tests/browser"
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  install_browser_test_packages
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo -n)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The project runs its own private MariaDB; keep the packaged system service from starting.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then "${as_root[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_browser_test_packages
echo "install-deps: done"
