#!/usr/bin/env bash
# Installs the Debian 12 packages mailpush builds, tests and runs with; safe to run again.
set -euo pipefail

# Only the versioned Boost 1.81 packages: the unversioned ones pull 1.74 and conflict.
packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates curl openssl procps
  libboost1.81-dev libboost-system1.81-dev
  libssl-dev libnghttp2-dev nghttp2-client libtinyxml2-dev nlohmann-json3-dev
  libmariadb-dev mariadb-server mariadb-client
  libgtest-dev libgmock-dev
  prometheus-cpp-dev libcli11-dev
  clang libclang-rt-14-dev clang-format
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
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
cleanup() { [ "$created_policy" = 1 ] && "${as_root[@]}" rm -f "$policy"; }
trap cleanup EXIT

"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
