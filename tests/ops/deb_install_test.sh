#!/usr/bin/env bash
# Installs the mailpush .deb on this machine, checks what it installed (files, conffiles, the
# mailpush user, owners and modes, --version, the unit), starts the installed mailpushd the way
# the unit's ExecStart does (as user mailpush, here through setpriv: systemd need not be PID 1)
# against a private MariaDB and apns-sim on loopback, runs the main job once (a customer through
# the portal, a device registered, a callback, the badge at apns-sim), stops it with SIGTERM and
# purges the package. Not part of ctest: it needs root and changes the system (a package, a
# system user). Run:
#
#   bash scripts/package.sh                      # builds build/release/mailpush_<version>_amd64.deb
#   sudo bash tests/ops/deb_install_test.sh [path/to/mailpush.deb]
#
# It refuses to run when a package `mailpush` is already installed. apns-sim (not in the
# package) comes from build/release (or build/dev). Everything listens on 127.0.0.1 only.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deb=${1:-}
if [ -z "$deb" ]; then
  deb=$(ls -1t "$root"/build/release/mailpush_*.deb 2>/dev/null | head -n 1 || true)
fi

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
pass() { echo "ok: $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs a package)"
[ -n "$deb" ] && [ -f "$deb" ] || fail "no .deb given or in build/release: run bash scripts/package.sh"
if dpkg-query -W -f='${Status}' mailpush 2>/dev/null | grep -q 'installed'; then
  fail "a package mailpush is installed already; this test installs and purges its own"
fi
sim_bin=""
for b in "$root/build/release/tools/apns_sim/apns-sim" "$root/build/dev/tools/apns_sim/apns-sim"; do
  [ -x "$b" ] && sim_bin=$b && break
done
[ -n "$sim_bin" ] || fail "apns-sim not built (cmake --build --preset release --target apns-sim)"
for tool in setpriv curl jq openssl ss; do
  command -v "$tool" >/dev/null || fail "$tool is needed"
done

user_existed=0
getent passwd mailpush >/dev/null && user_existed=1
work=$(mktemp -d /tmp/mp-deb.XXXXXX)
chmod 0711 "$work" # the mailpush user reaches its files below, lists nothing
region_file=/etc/mailpush/regions/debtest.json
daemon_pid=""
sim_pid=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid"
  fi
  if [ -n "$sim_pid" ] && kill -0 "$sim_pid" 2>/dev/null; then
    kill -TERM "$sim_pid"
    wait "$sim_pid" 2>/dev/null
  fi
  [ -d "$work/db" ] && bash "$root/scripts/mariadb.sh" stop --datadir "$work/db" >/dev/null 2>&1
  rm -f "$region_file"
  if dpkg-query -W -f='${Status}' mailpush 2>/dev/null | grep -q installed; then
    echo "== dpkg --purge mailpush"
    dpkg --purge mailpush 2>&1 | sed 's/^/   /'
    if [ -e /usr/bin/mailpushd ] || [ -e /lib/systemd/system/mailpushd@.service ]; then
      echo "FAIL: files left after purge" >&2
      rc=1
    else
      echo "ok: purged: /usr/bin/mailpushd and the unit are gone"
    fi
  fi
  if [ "$user_existed" = 0 ] && getent passwd mailpush >/dev/null; then
    # Debian keeps system users on purge; this test put it there, so it takes it away again.
    deluser --quiet --system mailpush >/dev/null 2>&1 || userdel mailpush
    getent group mailpush >/dev/null && (delgroup --quiet --system mailpush >/dev/null 2>&1 || groupdel mailpush)
  fi
  if [ "$rc" -ne 0 ] && [ -f "$work/mailpushd.log" ]; then
    echo "--- last lines of mailpushd's log:" >&2
    tail -n 30 "$work/mailpushd.log" >&2
  fi
  rm -rf -- "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Ports: reserve_port (scripts/lib/ports.sh), held until this script exits.
# shellcheck source=scripts/lib/ports.sh
source "$root/scripts/lib/ports.sh"

as_mailpush() {
  setpriv --reuid=mailpush --regid=mailpush --init-groups --no-new-privs --inh-caps=-all \
    --bounding-set=-all -- "$@"
}

# ---------------------------------------------------------------- install and inspect
echo "== dpkg -i $(basename "$deb")"
dpkg -i "$deb" 2>&1 | sed 's/^/   /'
dpkg-query -W -f='${Status}' mailpush | grep -q 'install ok installed' || fail "not installed"
pass "installed $(dpkg-query -W -f='${Package} ${Version}' mailpush)"

for f in /usr/bin/mailpushd /usr/bin/mailpushctl /usr/sbin/mailpush-backup /usr/sbin/mailpush-restore; do
  [ -x "$f" ] || fail "$f missing or not executable"
done
for f in /lib/systemd/system/mailpushd@.service /etc/mailpush/regions/us-east-1.json \
  /etc/mailpush/regions/eu-west-1.json /etc/mailpush/regions/ap-southeast-1.json \
  /usr/share/mailpush/ops/runbook.md /usr/share/mailpush/ops/prometheus/alerts.yml \
  /usr/share/mailpush/ops/grafana/mailpush.json /usr/share/mailpush/ops/network/us-east-1.md \
  /usr/share/mailpush/ops/network/eu-west-1.md /usr/share/mailpush/ops/network/ap-southeast-1.md \
  /usr/share/mailpush/scripts/make-kek.sh /usr/share/mailpush/scripts/make-region-secret.sh; do
  [ -f "$f" ] || fail "$f missing"
done
pass "binaries, unit, region files, ops files and key scripts are in place"
if dpkg -L mailpush | grep -Eq 'apns|sim|bench|test'; then
  fail "the package holds test or simulator files: $(dpkg -L mailpush | grep -E 'apns|sim|bench|test')"
fi
pass "no apns-sim, tests or benchmarks in the package ($(dpkg -L mailpush | grep -vc '/$') paths)"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' mailpush | awk 'NF {print $1}' | sort | tr '\n' ' ')
[ "$conffiles" = "/etc/mailpush/regions/ap-southeast-1.json /etc/mailpush/regions/eu-west-1.json /etc/mailpush/regions/us-east-1.json " ] ||
  fail "conffiles are '$conffiles'"
pass "conffiles: $conffiles"
depends=$(dpkg-query -W -f='${Depends}' mailpush)
case "$depends" in *libmariadb3*libnghttp2*libssl3*) ;; *) fail "Depends lacks the shared libraries: $depends" ;; esac
pass "Depends (dpkg-shlibdeps): $depends"

IFS=: read -r _ _ uid gid _ home shell < <(getent passwd mailpush) || fail "no user mailpush"
[ "$uid" -lt 1000 ] || fail "mailpush is uid $uid, not a system user"
[ "$(getent group "$gid" | cut -d: -f1)" = mailpush ] || fail "mailpush's group is not mailpush"
[ "$home" = /var/lib/mailpush ] || fail "home is $home"
case "$shell" in */nologin | */false) ;; *) fail "mailpush has a login shell: $shell" ;; esac
pass "system user mailpush (uid $uid, home $home, shell $shell)"
check_mode() { # PATH OWNER:GROUP MODE
  local got
  got=$(stat -c '%U:%G %a' "$1")
  [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
}
check_mode /var/lib/mailpush mailpush:mailpush 750
check_mode /etc/mailpush root:mailpush 750
check_mode /etc/mailpush/regions root:mailpush 750
check_mode /etc/mailpush/tls root:mailpush 750
pass "owners and modes: /var/lib/mailpush mailpush:mailpush 0750, /etc/mailpush{,/regions,/tls} root:mailpush 0750"

want_commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
for bin in mailpushd mailpushctl; do
  line=$(as_mailpush /usr/bin/$bin --version)
  echo "   $ $bin --version  ->  $line"
  [[ "$line" =~ ^$bin\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ [0-9a-f]{12}\)$ ]] || fail "$bin --version: '$line'"
  [[ "$line" == *"$want_commit"* ]] || echo "   note: built at another commit than HEAD ($want_commit)"
done
pass "--version names version and commit"

if command -v systemd-analyze >/dev/null; then
  cp /lib/systemd/system/mailpushd@.service "$work/mailpushd@us-east-1.service"
  systemd-analyze verify "$work/mailpushd@us-east-1.service" || fail "systemd-analyze verify"
  pass "systemd-analyze verify mailpushd@us-east-1.service: clean;" \
    "$(systemd-analyze security --offline=true "$work/mailpushd@us-east-1.service" 2>/dev/null | tail -n 1 | sed 's/^→ //')"
fi

# A shipped region without its key files: refused before start with the reason (exit 78).
set +e
check=$(as_mailpush /usr/bin/mailpushd --region /etc/mailpush/regions/eu-west-1.json --check-config 2>&1)
rc=$?
set -e
[ "$rc" = 78 ] || fail "--check-config of eu-west-1 without its files exited $rc: $check"
echo "$check" | grep -q 'tls_cert' || fail "--check-config does not name the missing TLS file: $check"
problems=$(echo "$check" | grep -o 'eu-west-1.json: [a-z_.]*: cannot read [^ :]*' || true)
pass "--check-config of eu-west-1 on a bare host: exit 78, $(echo "$problems" | grep -c .) missing files named, e.g. '$(echo "$problems" | head -n 1)'"

# ---------------------------------------------------------------- a region to start
echo "== a private MariaDB, apns-sim and the region's files"
reserve_port db_port || fail "no free port"
bash "$root/scripts/mariadb.sh" start --datadir "$work/db" --port "$db_port" --database mailpush_debtest >/dev/null
etc="$work/etc"
install -d -o root -g mailpush -m 0750 "$etc" "$etc/tls"
install -o mailpush -g mailpush -m 0400 "$work/db/mailpush.password" "$etc/db-password"
bash "$root/certs/make-dev-certs.sh" "$work/tls" >/dev/null
install -o root -g mailpush -m 0640 "$work/tls/listener.crt" "$etc/tls/listener.crt"
install -o mailpush -g mailpush -m 0600 "$work/tls/listener.key" "$etc/tls/listener.key"
bash "$root/certs/make-apns-test-certs.sh" "$work/apns-certs" >/dev/null
install -o root -g mailpush -m 0640 "$work/apns-certs/apple-ca.crt" "$etc/apple-push-ca.pem"
# The key files with the package's own scripts, then owned by mailpush alone.
/usr/share/mailpush/scripts/make-kek.sh "$etc/kek" >/dev/null
/usr/share/mailpush/scripts/make-region-secret.sh "$etc/region-secret" >/dev/null
chown mailpush:mailpush "$etc/kek" "$etc/region-secret"
chmod 0600 "$etc/kek" "$etc/region-secret"
(umask 077 && printf 'adm_%s' "$(openssl rand -hex 24)" >"$work/admin-token")
printf '%s\n' "$(openssl dgst -sha384 -r <"$work/admin-token" | cut -d' ' -f1)" >"$etc/portal-admin-tokens.sha384"
chown root:mailpush "$etc/portal-admin-tokens.sha384" && chmod 0640 "$etc/portal-admin-tokens.sha384"

reserve_port sim_port || fail "no free port"
reserve_port sim_control || fail "no free port"
setsid "$sim_bin" --cert "$work/apns-certs/server.crt" --key "$work/apns-certs/server.key" \
  --client-ca "$work/apns-certs/apple-ca.crt" --port "$sim_port" --control-port "$sim_control" \
  >"$work/apns-sim.ready" 2>"$work/apns-sim.log" </dev/null &
sim_pid=$!
for _ in $(seq 1 50); do grep -q '"ready":true' "$work/apns-sim.ready" 2>/dev/null && break; sleep 0.1; done
grep -q '"ready":true' "$work/apns-sim.ready" || fail "apns-sim did not start: $(tail -n 3 "$work/apns-sim.log")"

reserve_port port || fail "no free port"
jq --arg etc "$etc" --argjson port "$port" --argjson sim "$sim_port" --argjson db "$db_port" '
  .listener.port = $port | .listener.tls_cert = "\($etc)/tls/listener.crt" |
  .listener.tls_key = "\($etc)/tls/listener.key" |
  .apns.production.port = $sim | .apns.sandbox.port = $sim | .apns.ca_file = "\($etc)/apple-push-ca.pem" |
  .database.port = $db | del(.database.socket) | .database.name = "mailpush_debtest" |
  .database.password_file = "\($etc)/db-password" | .database.migrate_on_start = false |
  .portal.kek_file = "\($etc)/kek" | .portal.admin_token_file = "\($etc)/portal-admin-tokens.sha384" |
  .portal.trust_anchors = "\($etc)/apple-push-ca.pem" | .registration.secret_file = "\($etc)/region-secret"
  ' "$root/regions/dev.json" >"$region_file"
chmod 0644 "$region_file"
pass "region file $region_file: listener 127.0.0.1:$port, MariaDB 127.0.0.1:$db_port, apns-sim 127.0.0.1:$sim_port"

as_mailpush /usr/bin/mailpushd --region "$region_file" --check-config >/dev/null || fail "--check-config of $region_file"
as_mailpush /usr/bin/mailpushctl --region "$region_file" migrate | sed 's/^/   /'
pass "mailpushctl migrate as user mailpush"

# ---------------------------------------------------------------- start as the unit would
echo "== mailpushd --region $region_file, as user mailpush (the unit's ExecStart)"
: >"$work/mailpushd.log"
setsid setpriv --reuid=mailpush --regid=mailpush --init-groups --no-new-privs --inh-caps=-all \
  --bounding-set=-all -- /usr/bin/mailpushd --region "$region_file" \
  >>"$work/mailpushd.log" 2>&1 </dev/null &
daemon_pid=$!
base="https://localhost:$port"
curl_tls=(--cacert "$work/tls/ca.crt" -sS --max-time 10)
ready=""
for _ in $(seq 1 150); do
  ready=$(curl "${curl_tls[@]}" -f "$base/readyz" 2>/dev/null) && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "mailpushd exited"
  sleep 0.1
done
[ -n "$ready" ] || fail "mailpushd not ready in 15 s"
echo "   GET /readyz -> $ready"
echo "   GET /healthz -> $(curl "${curl_tls[@]}" -f "$base/healthz")"
[ "$(ps -o user= -p "$(pgrep -P "$daemon_pid" -x mailpushd || echo "$daemon_pid")")" = mailpush ] ||
  [ "$(ps -o user= -p "$daemon_pid")" = mailpush ] || fail "mailpushd does not run as mailpush"
pass "mailpushd runs as user mailpush and is ready"
build_info=$(curl "${curl_tls[@]}" -f "$base/metrics" | grep '^mailpush_build_info')
echo "   $build_info"

# ---------------------------------------------------------------- the main job, once
created=$(curl "${curl_tls[@]}" -X POST "$base/portal/v1/customers" \
  -H "Authorization: Bearer $(cat "$work/admin-token")" \
  -F "certificate=@$work/apns-certs/mail.p12;type=application/x-pkcs12" \
  -F "password=<$work/apns-certs/mail.p12.password" \
  -F "app_id=com.example.mail" -F "region=dev" -F "display_name=deb install test")
customer=$(jq -er .customer_id <<<"$created") || fail "portal: $created"
key=$(jq -er .registration_key <<<"$created")
token=$(printf 'c3%.0s' $(seq 32))
reply=$(curl "${curl_tls[@]}" -X POST "$base/v1/registrations" -H 'Content-Type: application/json' \
  --data-binary "$(jq -n --arg c "$customer" --arg k "$key" --arg t "$token" \
    '{customer_id:$c, registration_key:$k, mailbox:"carol@example.com", device_token:$t, environment:"production"}')")
url=$(jq -er .listener_url <<<"$reply") || fail "registration: $reply"
pass "customer $customer through the portal, a device registered through /v1/registrations"
soap() {
  cat <<EOX
<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
<soap:Body><m:SendNotification><m:ResponseMessages>
<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>
<m:Notification><t:SubscriptionId>deb-sub-1</t:SubscriptionId><t:PreviousWatermark>AQAAAA==</t:PreviousWatermark>
<t:MoreEvents>false</t:MoreEvents>$1</m:Notification></m:SendNotificationResponseMessage>
</m:ResponseMessages></m:SendNotification></soap:Body></soap:Envelope>
EOX
}
post() {
  soap "$1" | curl "${curl_tls[@]}" -X POST "$url" -H 'Content-Type: text/xml; charset=utf-8' \
    -H 'SOAPAction: "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification"' \
    --data-binary @-
}
since=$(($(curl -sS --max-time 5 "http://127.0.0.1:$sim_control/stats" | jq -r .next_seq) - 1))
post '<t:StatusEvent><t:Watermark>AQAAAB==</t:Watermark></t:StatusEvent>' | grep -q '>OK<' || fail "StatusEvent not OK"
post "<t:ModifiedEvent><t:Watermark>AQAAAC==</t:Watermark><t:TimeStamp>$(date -u +%FT%TZ)</t:TimeStamp><t:FolderId Id=\"AAMkInbox\" ChangeKey=\"AQAAAA==\"/><t:ParentFolderId Id=\"AAMkRoot\" ChangeKey=\"AQAAAA==\"/><t:UnreadCount>7</t:UnreadCount></t:ModifiedEvent>" |
  grep -q '>OK<' || fail "ModifiedEvent not OK"
badge=""
for _ in $(seq 1 100); do
  badge=$(curl -sS --max-time 5 "http://127.0.0.1:$sim_control/accepted?since=$since" |
    jq -r --arg t "$token" '[.records[] | select(.token == $t) | .payload | fromjson | .aps.badge] | last // empty')
  [ "$badge" = 7 ] && break
  sleep 0.1
done
[ "$badge" = 7 ] || fail "apns-sim did not get badge 7 (got '${badge:-nothing}')"
pass "callbacks answered OK; apns-sim received {\"aps\":{\"badge\":7}} for the device"

as_mailpush /usr/bin/mailpushctl --region "$region_file" status | sed 's/^/   /' ||
  fail "mailpushctl status as mailpush"

# ---------------------------------------------------------------- stop as the unit would
echo "== SIGTERM (the unit's KillSignal; TimeoutStopSec=30s)"
started=$SECONDS
kill -TERM "$daemon_pid"
set +e
wait "$daemon_pid"
rc=$?
set -e
daemon_pid=""
[ "$rc" = 0 ] || fail "mailpushd exited $rc after SIGTERM"
grep -q '"daemon.stopped"' "$work/mailpushd.log" || fail "no daemon.stopped in the log"
pass "mailpushd stopped in $((SECONDS - started)) s with exit 0"
if grep -qF -- "$(cat "$etc/db-password")" "$work/mailpushd.log"; then
  fail "the database password is in mailpushd's log"
fi
pass "no database password in the log"
echo "PASS: deb_install (purge follows)"
