#!/usr/bin/env bash
# Creates a region key file with one fresh active KEK, or adds a new active KEK for rotation.
#
#   scripts/make-kek.sh FILE [ID]         create FILE (refuses to overwrite one)
#   scripts/make-kek.sh --add FILE [ID]   add a key to FILE and make it the active one
#
# The file holds lines `kek <id> <base64 of 32 random bytes> [active]` (src/keys/key_ring.hpp)
# and is mode 0600. No key is ever printed. After --add, re-wrap every credential
# (mailpushctl) before removing an old key line: rows wrapped by a missing key cannot be opened.
set -euo pipefail

prog=make-kek
usage() {
  echo "usage: $0 FILE [ID]        create a key file with one active key" >&2
  echo "       $0 --add FILE [ID]  add a new active key to an existing key file" >&2
  exit 2
}
die() {
  echo "$prog: $*" >&2
  exit 1
}

add=0
if [ "${1:-}" = "--add" ]; then
  add=1
  shift
fi
[ $# -ge 1 ] && [ $# -le 2 ] || usage
file=$1
command -v openssl >/dev/null || die "openssl is needed for random bytes; install it"
id=${2:-kek-$(date -u +%Y%m%d)-$(openssl rand -hex 2)}
[[ $id =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "the key id must be 1 to 64 characters of A-Z a-z 0-9 . _ -"

# Every file made from here on is readable by its owner only, before any key is written to it
# (mktemp makes 0600 files too; the umask also covers anything a later edit adds).
umask 077
dir=$(dirname -- "$file")
[ -d "$dir" ] || die "folder $dir does not exist"
tmp=$(mktemp "$dir/.make-kek.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT

# Writes one key line to stdout. The key passes through a local variable of this shell only:
# printf is a builtin, so it is never in a process's arguments or environment.
key_line() {
  local key
  printf 'kek %s ' "$id"
  key=$(openssl rand -base64 32) || die "openssl rand failed"
  [ ${#key} -eq 44 ] || die "openssl rand did not give 32 bytes of base64"
  printf '%s active\n' "$key"
  key=
}

if [ $add -eq 0 ]; then
  [ ! -e "$file" ] && [ ! -L "$file" ] ||
    die "$file exists; it is not overwritten (to rotate, run: $0 --add $file)"
  {
    echo "# mailpush region key file: keep it secret (mode 0600) and backed up."
    echo "# Lines: kek <id> <base64 of 32 random bytes> [active]; see scripts/make-kek.sh."
    key_line
  } >"$tmp"
  # A hard link never replaces an existing file, so a file that appeared meanwhile is kept.
  ln -- "$tmp" "$file" 2>/dev/null || die "$file exists; it is not overwritten"
  echo "$prog: created $file with active key $id (mode 0600)"
else
  [ -f "$file" ] || die "$file is not an existing key file (to create one, run: $0 $file)"
  [ -r "$file" ] || die "cannot read $file"
  awk -v id="$id" '{ sub(/#.*/, "") } $1 == "kek" && $2 == id { found = 1 } END { exit !found }' \
    "$file" && die "key id $id is already in $file; choose another id"
  # Every old line is kept (rows still wrapped by those keys must open) without its 'active'.
  awk '
    /^[ \t]*kek[ \t]/ {
      code = $0; comment = ""
      if ((i = index($0, "#")) > 0) { code = substr($0, 1, i - 1); comment = " " substr($0, i) }
      n = split(code, w, /[ \t]+/)
      m = 0
      for (j = 1; j <= n; j++) if (w[j] != "") v[++m] = w[j]
      if (v[m] == "active") m--
      out = v[1]
      for (j = 2; j <= m; j++) out = out " " v[j]
      print out comment
      next
    }
    { print }
  ' "$file" >"$tmp"
  key_line >>"$tmp"
  # The daemon's user must keep owning the file when root rotates it.
  if [ "$(id -u)" -eq 0 ]; then chown --reference="$file" -- "$tmp"; fi
  mv -f -- "$tmp" "$file"
  echo "$prog: added key $id to $file and made it the active key (mode 0600)"
  echo "$prog: re-wrap every credential before removing an old key line"
fi
