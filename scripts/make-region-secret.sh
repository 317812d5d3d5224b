#!/usr/bin/env bash
# Creates a region secret file for the registration API (registration.secret_file).
#
#   scripts/make-region-secret.sh FILE     create FILE (refuses to overwrite one)
#
# The file holds one line `region-secret <base64 of 32 random bytes>` (src/keys/region_secret.hpp)
# and is mode 0600. The secret keys the HMAC of mailbox addresses and every registration's
# listener URL: it is never rotated (a new one gives every mailbox a new HMAC and every app a new
# URL), so back it up with the region's key file. Nothing secret is ever printed.
set -euo pipefail

prog=make-region-secret
die() {
  echo "$prog: $*" >&2
  exit 1
}
[ $# -eq 1 ] || {
  echo "usage: $0 FILE" >&2
  exit 2
}
file=$1
command -v openssl >/dev/null || die "openssl is needed for random bytes; install it"

# Every file made from here on is readable by its owner only, before the secret is written.
umask 077
dir=$(dirname -- "$file")
[ -d "$dir" ] || die "folder $dir does not exist"
[ ! -e "$file" ] && [ ! -L "$file" ] || die "$file exists; it is not overwritten"
tmp=$(mktemp "$dir/.make-region-secret.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT

{
  echo "# mailpush region secret (registration API): keep it secret (mode 0600) and backed up."
  echo "# One line: region-secret <base64 of 32 random bytes>; see scripts/make-region-secret.sh."
  # printf is a builtin: the secret is never in a process's arguments or environment.
  secret=$(openssl rand -base64 32) || die "openssl rand failed"
  [ ${#secret} -eq 44 ] || die "openssl rand did not give 32 bytes of base64"
  printf 'region-secret %s\n' "$secret"
  secret=
} >"$tmp"
# A hard link never replaces an existing file, so a file that appeared meanwhile is kept.
ln -- "$tmp" "$file" 2>/dev/null || die "$file exists; it is not overwritten"
echo "$prog: created $file (mode 0600)"
