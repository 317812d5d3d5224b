#!/usr/bin/env bash
# Test certificates for APNs work: a fake "Apple" CA, an unrelated "wrong" CA, push certificates
# shaped like Apple's (PEM, modern and legacy .p12) and the apns-sim server certificate.
#
#   certs/make-apns-test-certs.sh OUTDIR
#
# OUTDIR (a build or tmp folder; never commit it) gets, all keys mode 0600, no key passphrase:
#   apple-ca.crt/.key     "mailpush test Apple CA" (ECDSA P-256, 10 years): trust anchor of the
#                         simulator's client check and of the simulator's server certificate
#   wrong-ca.crt/.key     "mailpush test wrong CA": signs mail-wrong-ca only
#   server.crt/.key       apns-sim server: ECDSA P-256, CN localhost, SAN DNS:localhost and
#                         IP:127.0.0.1, serverAuth, by apple-ca; .crt = leaf then CA
#   <name>.crt/.key       push certificate (RSA 2048 like Apple's) and its key, PEM
#   <name>.p12            PKCS#12 of cert + key, OpenSSL 3 default (AES-256-CBC, PBKDF2, SHA-256 MAC)
#   <name>-legacy.p12     the same with `-legacy` (RC2-40 certs, 3DES key, SHA-1 MAC), as macOS
#                         Keychain exports; reading it needs OpenSSL's legacy provider
#   <name>.p12.password, <name>-legacy.p12.password   generated password (one line, no newline)
#   manifest.json         what each <name> is: file names, topics, environments, validity, issuer
#
# Push certificate subject, as Apple issues them:
#   UID=<bundle id>, CN=Apple Push Services: <bundle id>, OU=<team id>, O=<name>, C=US
# Extensions: 1.2.840.113635.100.6.3.1 (development) and/or 1.2.840.113635.100.6.3.2 (production),
# each an ASN.1 NULL; 1.2.840.113635.100.6.3.6 (topics), a DER SEQUENCE alternating a topic
# UTF8String and a SEQUENCE holding one UTF8String naming its kind:
#   SEQUENCE { "com.example.mail", SEQUENCE { "app" },
#              "com.example.mail.voip", SEQUENCE { "voip" },
#              "com.example.mail.complication", SEQUENCE { "complication" } }
#
# <name>s: mail (com.example.mail, development + production, topics), mail-dev (development
# only), mail-prod (production only), mail-no-topics (no topics extension: UID only), other
# (com.example.other), mail-expired (ended 30 days ago), mail-not-yet-valid (starts in 10 years),
# mail-wrong-ca (signed by wrong-ca).
#
# Idempotent: when OUTDIR holds a complete set made by this version of the script and the CA,
# server and valid push certificates stay valid for 30 more days, nothing changes. Otherwise the
# whole set is made again (about a second). Prints file names and facts, never a key or password.
set -euo pipefail

readonly CA_DAYS=3650
readonly LEAF_DAYS=365
readonly MIN_SECONDS=$((30 * 86400))
readonly TEAM_ID="ABCDE12345"
readonly ORG="Example Corp"

usage() {
  echo "usage: certs/make-apns-test-certs.sh OUTDIR"
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
  -* | "")
    usage >&2
    exit 2
    ;;
esac
if [ $# -ne 1 ]; then
  usage >&2
  exit 2
fi

command -v openssl >/dev/null 2>&1 || {
  echo "apns-certs: openssl not found" >&2
  exit 1
}

script="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/$(basename -- "${BASH_SOURCE[0]}")"
version=$(sha256sum "$script" | cut -c1-16)

out=$(realpath -m -- "$1")
mkdir -p -- "$out"
cd -- "$out"

exec 9>>"$out/.lock"
flock -w 60 9 || {
  echo "apns-certs: another run holds $out/.lock" >&2
  exit 1
}

# name|bundle id|environments (dev,prod)|topics ext (yes/no)|issuer (apple/wrong)|validity
readonly PUSH_CERTS=(
  "mail|com.example.mail|dev,prod|yes|apple|valid"
  "mail-dev|com.example.mail|dev|yes|apple|valid"
  "mail-prod|com.example.mail|prod|yes|apple|valid"
  "mail-no-topics|com.example.mail|dev,prod|no|apple|valid"
  "other|com.example.other|dev,prod|yes|apple|valid"
  "mail-expired|com.example.mail|dev,prod|yes|apple|expired"
  "mail-not-yet-valid|com.example.mail|dev,prod|yes|apple|not-yet-valid"
  "mail-wrong-ca|com.example.mail|dev,prod|yes|wrong|valid"
)

# ---------------------------------------------------------------- up to date?

valid_for_a_while() { openssl x509 -in "$1" -noout -checkend "$MIN_SECONDS" >/dev/null 2>&1; }

up_to_date() {
  [ "$(cat .complete 2>/dev/null)" = "$version" ] || return 1
  local f
  for f in apple-ca.crt apple-ca.key wrong-ca.crt wrong-ca.key server.crt server.key manifest.json; do
    [ -s "$f" ] || return 1
  done
  valid_for_a_while apple-ca.crt && valid_for_a_while wrong-ca.crt && valid_for_a_while server.crt ||
    return 1
  local entry name validity
  for entry in "${PUSH_CERTS[@]}"; do
    IFS='|' read -r name _ _ _ _ validity <<<"$entry"
    for f in "$name.crt" "$name.key" "$name.p12" "$name-legacy.p12" "$name.p12.password" \
      "$name-legacy.p12.password"; do
      [ -s "$f" ] || return 1
    done
    if [ "$validity" = valid ]; then valid_for_a_while "$name.crt" || return 1; fi
  done
}

if up_to_date; then
  echo "apns-certs: up to date in $out"
  exit 0
fi

# ---------------------------------------------------------------- issue

tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
umask 077
rm -f .complete

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

# `openssl ca` is used for leaves because only it can set past or future validity dates.
[ ca_apple ]
database = $ENV::CA_DIR/apple.index
serial = $ENV::CA_DIR/apple.serial
new_certs_dir = $ENV::CA_DIR
certificate = $ENV::CA_DIR/apple-ca.crt
private_key = $ENV::CA_DIR/apple-ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none

[ ca_wrong ]
database = $ENV::CA_DIR/wrong.index
serial = $ENV::CA_DIR/wrong.serial
new_certs_dir = $ENV::CA_DIR
certificate = $ENV::CA_DIR/wrong-ca.crt
private_key = $ENV::CA_DIR/wrong-ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none

[ policy_any ]
commonName = supplied
EOF

export CA_DIR="$tmp"
serial_hex() { openssl rand -hex 16 | tr 'a-f' 'A-F'; }
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }
stamp() { date -u -d "$1" +%Y%m%d%H%M%SZ; }

make_ca() { # name CN
  ec_key "$tmp/$1.key"
  openssl req -new -x509 -config "$tmp/openssl.cnf" -extensions v3_ca -key "$tmp/$1.key" \
    -subj "/CN=$2/O=mailpush tests" -days "$CA_DAYS" -sha256 -set_serial "0x$(serial_hex)" \
    -out "$tmp/$1.crt"
}
make_ca apple-ca "mailpush test Apple CA"
make_ca wrong-ca "mailpush test wrong CA"
for ca in apple wrong; do
  : >"$tmp/$ca.index"
  serial_hex >"$tmp/$ca.serial"
done

sign() { # ca(apple|wrong) extensions csr out startdate enddate
  openssl ca -batch -config "$tmp/openssl.cnf" -name "ca_$1" -extfile "$tmp/ext.cnf" \
    -extensions "$2" -in "$3" -out "$4" -notext -preserveDN -startdate "$5" -enddate "$6" \
    >/dev/null 2>"$tmp/ca.log" || {
    cat "$tmp/ca.log" >&2
    exit 1
  }
}

: >"$tmp/ext.cnf"
cat >>"$tmp/ext.cnf" <<'EOF'
[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF

# The simulator's server certificate.
ec_key "$tmp/server.key"
openssl req -new -config "$tmp/openssl.cnf" -key "$tmp/server.key" -subj "/CN=localhost" \
  -out "$tmp/server.csr"
sign apple v3_server "$tmp/server.csr" "$tmp/server.leaf" "$(stamp '-1 day')" \
  "$(stamp "+$LEAF_DAYS days")"
cat "$tmp/server.leaf" "$tmp/apple-ca.crt" >"$tmp/server.crt"

manifest_entries=()
sign_later=()
for entry in "${PUSH_CERTS[@]}"; do
  IFS='|' read -r name bundle envs topics issuer validity <<<"$entry"
  section="push_${name//-/_}"
  {
    echo "[ $section ]"
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = clientAuth"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid, issuer"
    case ",$envs," in *,dev,*) echo "1.2.840.113635.100.6.3.1 = ASN1:NULL" ;; esac
    case ",$envs," in *,prod,*) echo "1.2.840.113635.100.6.3.2 = ASN1:NULL" ;; esac
    if [ "$topics" = yes ]; then
      echo "1.2.840.113635.100.6.3.6 = ASN1:SEQUENCE:${section}_topics"
      echo "[ ${section}_topics ]"
      echo "t1 = UTF8String:$bundle"
      echo "k1 = SEQUENCE:kind_app"
      echo "t2 = UTF8String:$bundle.voip"
      echo "k2 = SEQUENCE:kind_voip"
      echo "t3 = UTF8String:$bundle.complication"
      echo "k3 = SEQUENCE:kind_complication"
    fi
  } >>"$tmp/ext.cnf"

  case "$validity" in
    valid) from=$(stamp '-1 day') until=$(stamp "+$LEAF_DAYS days") ;;
    expired) from=$(stamp '-400 days') until=$(stamp '-30 days') ;;
    not-yet-valid) from=$(stamp '+3650 days') until=$(stamp '+4015 days') ;;
  esac

  rsa_key "$tmp/$name.key"
  openssl req -new -config "$tmp/openssl.cnf" -key "$tmp/$name.key" \
    -subj "/UID=$bundle/CN=Apple Push Services: $bundle/OU=$TEAM_ID/O=$ORG/C=US" -out "$tmp/$name.csr"
  sign_later+=("$issuer|$section|$name|$from|$until")

  env_json=$(echo "$envs" | sed 's/dev/"development"/; s/prod/"production"/')
  if [ "$topics" = yes ]; then
    topics_json="\"$bundle\", \"$bundle.voip\", \"$bundle.complication\""
  else
    topics_json="\"$bundle\""
  fi
  manifest_entries+=("    \"$name\": {\"bundle_id\": \"$bundle\", \"topics\": [$topics_json], \"environments\": [$env_json], \"topics_extension\": $([ "$topics" = yes ] && echo true || echo false), \"issuer\": \"$issuer-ca\", \"validity\": \"$validity\", \"not_before\": \"$from\", \"not_after\": \"$until\", \"cert\": \"$name.crt\", \"key\": \"$name.key\", \"p12\": \"$name.p12\", \"p12_legacy\": \"$name-legacy.p12\"}")
done

cat >>"$tmp/ext.cnf" <<'EOF'
[ kind_app ]
k = UTF8String:app
[ kind_voip ]
k = UTF8String:voip
[ kind_complication ]
k = UTF8String:complication
EOF

for job in "${sign_later[@]}"; do
  IFS='|' read -r issuer section name from until <<<"$job"
  sign "$issuer" "$section" "$tmp/$name.csr" "$tmp/$name.crt" "$from" "$until"
  for p12 in "$name" "$name-legacy"; do
    # A printable password of 24 characters; `file:` reads the first line.
    printf '%s' "$(openssl rand -base64 18)" >"$tmp/$p12.p12.password"
    legacy=()
    [ "$p12" = "$name-legacy" ] && legacy=(-legacy)
    openssl pkcs12 -export "${legacy[@]}" -inkey "$tmp/$name.key" -in "$tmp/$name.crt" \
      -name "Apple Push Services: $name" -passout "file:$tmp/$p12.p12.password" \
      -out "$tmp/$p12.p12"
    openssl pkcs12 "${legacy[@]}" -in "$tmp/$p12.p12" -passin "file:$tmp/$p12.p12.password" \
      -noout
  done
done

{
  echo "{"
  echo "  \"ca\": \"apple-ca.crt\", \"wrong_ca\": \"wrong-ca.crt\", \"server_cert\": \"server.crt\", \"server_key\": \"server.key\","
  echo "  \"team_id\": \"$TEAM_ID\","
  echo "  \"push\": {"
  last=$((${#manifest_entries[@]} - 1))
  for i in "${!manifest_entries[@]}"; do
    if [ "$i" -lt "$last" ]; then echo "${manifest_entries[$i]},"; else echo "${manifest_entries[$i]}"; fi
  done
  echo "  }"
  echo "}"
} >"$tmp/manifest.json"

openssl verify -CAfile "$tmp/apple-ca.crt" -purpose sslserver -verify_hostname localhost \
  "$tmp/server.leaf" >/dev/null
openssl verify -CAfile "$tmp/apple-ca.crt" -purpose sslclient "$tmp/mail.crt" >/dev/null

chmod 600 "$tmp"/*.key "$tmp"/*.p12 "$tmp"/*.password
chmod 644 "$tmp"/*.crt "$tmp/manifest.json"

for f in apple-ca wrong-ca server; do
  mv -f -- "$tmp/$f.key" "$out/$f.key"
  mv -f -- "$tmp/$f.crt" "$out/$f.crt"
done
for entry in "${PUSH_CERTS[@]}"; do
  IFS='|' read -r name _ <<<"$entry"
  for f in "$name.key" "$name.crt" "$name.p12" "$name-legacy.p12" "$name.p12.password" \
    "$name-legacy.p12.password"; do
    mv -f -- "$tmp/$f" "$out/$f"
  done
done
mv -f -- "$tmp/manifest.json" "$out/manifest.json"
echo "$version" >"$out/.complete"

echo "apns-certs: made test Apple CA, wrong CA, server (localhost) and ${#PUSH_CERTS[@]} push certificates in $out (see manifest.json)"
