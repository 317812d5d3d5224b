#!/usr/bin/env bash
# Builds the release preset and the Debian package `mailpush` (cmake/Packaging.cmake), and prints
# the .deb's path on the last line. tests/ops/deb_install_test.sh installs and starts it.
#   bash scripts/package.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "package: note: the working tree has uncommitted changes; the package's commit" \
       "($(git rev-parse --short=12 HEAD)) does not describe them" >&2
fi

cmake --preset release >/dev/null
cmake --build --preset release
cd build/release
rm -f mailpush_*.deb
cpack -G DEB >cpack.log 2>&1 || { cat cpack.log >&2; echo "package: cpack failed" >&2; exit 1; }
deb=$(ls -1 "$PWD"/mailpush_*.deb)
[ -f "$deb" ] || { echo "package: no .deb produced (see build/release/cpack.log)" >&2; exit 1; }
echo "package: $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version), Depends: $(dpkg-deb -f "$deb" Depends)" >&2
echo "$deb"
