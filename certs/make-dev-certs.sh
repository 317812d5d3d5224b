#!/usr/bin/env bash
# Development TLS for the `dev` region: a throwaway CA and a listener certificate for localhost.
#
#   certs/make-dev-certs.sh [OUTDIR]      (default: <repo>/var/dev/tls, which git ignores)
#
# OUTDIR gets ca.key + ca.crt (ECDSA P-256, CN "mailpush dev CA", 10 years) and
# listener.key + listener.crt (ECDSA P-256, CN localhost, SAN DNS:localhost, IP:127.0.0.1,
# IP:::1, serverAuth, 825 days; the .crt holds the leaf then the CA). Keys are mode 0600 and
# have no passphrase. Private keys made here are for development only: never commit them.
# Idempotent: when everything is present, verifies and stays valid for 30 more days, nothing
# changes. A bad or missing listener is reissued from the existing CA; a bad or missing CA
# means everything is made again (clients then need the new ca.crt).
set -euo pipefail

readonly CA_DAYS=3650
readonly LEAF_DAYS=825
readonly MIN_SECONDS=$((30 * 86400))

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd -- "$script_dir/.." && pwd -P)

usage() {
  echo "usage: certs/make-dev-certs.sh [OUTDIR]   (default: <repo>/var/dev/tls)"
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
  -*)
    echo "certs: unknown option '$1'" >&2
    usage >&2
    exit 2
    ;;
esac
if [ $# -gt 1 ]; then
  echo "certs: too many arguments" >&2
  usage >&2
  exit 2
fi

command -v openssl >/dev/null 2>&1 || {
  echo "certs: openssl not found; run scripts/install-deps.sh" >&2
  exit 1
}

out=$(realpath -m -- "${1:-$repo/var/dev/tls}")
mkdir -p -- "$out"
cd -- "$out"

# One run at a time per OUTDIR.
exec 9>>"$out/.lock"
flock -w 60 9 || {
  echo "certs: another run holds $out/.lock" >&2
  exit 1
}

# ---------------------------------------------------------------- checks

same_key() { # key cert: the certificate (its first one) carries the key's public half
  local a b
  a=$(openssl pkey -in "$1" -pubout 2>/dev/null) || return 1
  b=$(openssl x509 -in "$2" -noout -pubkey 2>/dev/null) || return 1
  [ -n "$a" ] && [ "$a" = "$b" ]
}

ca_ok() {
  [ -s ca.key ] && [ -s ca.crt ] || return 1
  same_key ca.key ca.crt || return 1
  openssl x509 -in ca.crt -noout -checkend "$MIN_SECONDS" >/dev/null 2>&1 || return 1
  openssl x509 -in ca.crt -noout -ext basicConstraints 2>/dev/null | grep -q 'CA:TRUE'
}

listener_ok() {
  [ -s listener.key ] && [ -s listener.crt ] || return 1
  same_key listener.key listener.crt || return 1
  openssl verify -CAfile ca.crt -purpose sslserver -verify_hostname localhost \
    listener.crt >/dev/null 2>&1 || return 1
  openssl x509 -in listener.crt -noout -checkend "$MIN_SECONDS" >/dev/null 2>&1 || return 1
  # The file must hold the chain: leaf, then this CA.
  [ "$(grep -c -- '-----BEGIN CERTIFICATE-----' listener.crt)" -eq 2 ] || return 1
  [ "$(sed -n '/-----END CERTIFICATE-----/,$p' listener.crt | sed 1d | openssl x509 -noout -fingerprint -sha256 2>/dev/null)" = \
    "$(openssl x509 -in ca.crt -noout -fingerprint -sha256)" ]
}

make_ca=0
make_leaf=0
if ! ca_ok; then
  make_ca=1
  make_leaf=1
elif ! listener_ok; then
  make_leaf=1
fi

if [ "$make_leaf" = 0 ]; then
  echo "certs: dev TLS up to date in $out"
  exit 0
fi

# ---------------------------------------------------------------- issue

tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
umask 077

cat >"$tmp/openssl.cnf" <<'EOF'
[ req ]
distinguished_name = dn
prompt = no
utf8 = yes

[ dn ]

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_listener ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF

serial() { echo "0x$(openssl rand -hex 16)"; }
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ "$make_ca" = 1 ]; then
  ec_key "$tmp/ca.key"
  openssl req -new -x509 -config "$tmp/openssl.cnf" -extensions v3_ca -key "$tmp/ca.key" \
    -subj "/CN=mailpush dev CA" -days "$CA_DAYS" -sha256 -set_serial "$(serial)" \
    -out "$tmp/ca.crt"
  ca_key="$tmp/ca.key"
  ca_crt="$tmp/ca.crt"
else
  ca_key="$out/ca.key"
  ca_crt="$out/ca.crt"
fi

ec_key "$tmp/listener.key"
openssl req -new -config "$tmp/openssl.cnf" -key "$tmp/listener.key" -subj "/CN=localhost" \
  -out "$tmp/listener.csr"
openssl x509 -req -in "$tmp/listener.csr" -CA "$ca_crt" -CAkey "$ca_key" -set_serial "$(serial)" \
  -days "$LEAF_DAYS" -sha256 -extfile "$tmp/openssl.cnf" -extensions v3_listener \
  -out "$tmp/leaf.crt" 2>/dev/null
cat "$tmp/leaf.crt" "$ca_crt" >"$tmp/listener.crt"
openssl verify -CAfile "$ca_crt" -purpose sslserver -verify_hostname localhost "$tmp/leaf.crt" >/dev/null

chmod 600 "$tmp"/*.key
chmod 644 "$tmp"/*.crt

# Keys before certificates, CA before listener, each by rename.
if [ "$make_ca" = 1 ]; then
  mv -f -- "$tmp/ca.key" "$out/ca.key"
  mv -f -- "$tmp/ca.crt" "$out/ca.crt"
fi
mv -f -- "$tmp/listener.key" "$out/listener.key"
mv -f -- "$tmp/listener.crt" "$out/listener.crt"

enddate() { openssl x509 -in "$1" -noout -enddate | sed 's/^notAfter=//'; }
if [ "$make_ca" = 1 ]; then
  echo "certs: made dev CA $out/ca.crt + ca.key (CN mailpush dev CA, ECDSA P-256, until $(enddate "$out/ca.crt"))"
fi
echo "certs: made $out/listener.crt + listener.key (CN localhost, SAN DNS:localhost IP:127.0.0.1 IP:::1, serverAuth, until $(enddate "$out/listener.crt"); leaf + CA chain)"

case "$out/" in
  "$repo"/*)
    if command -v git >/dev/null 2>&1 && git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 &&
      ! git -C "$repo" check-ignore -q -- "$out/ca.key"; then
      echo "certs: warning: $out is inside the repository and not git-ignored; never commit the keys" >&2
    fi
    ;;
esac
