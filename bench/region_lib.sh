# shellcheck shell=bash
# A private region for the benchmarks that run mailpushd end to end (fanout_bench.sh, soak.sh):
# building, ports, TLS files and keys, apns-sim, a customer onboarded through the portal, and
# the fan-out seed (the layout of bench/fanout_common.hpp). Source it after bench/lib.sh, with
# $root, $tmp (the run's directory) and $DATABASE set (bench_port and wait_https are lib.sh's); the
# functions use these and set the variables their comments name.

# build_release_targets BUILD_DIR TARGET...: configures the release preset into BUILD_DIR and
# builds the targets (logs in $tmp); the budget starts again afterwards.
build_release_targets() {
  local dir=$1
  shift
  say "building the release preset ($*) in $dir"
  local configure=(cmake --preset release)
  [ "$dir" = "$root/build/release" ] || configure+=(-B "$dir")
  timeout "$(allow 60)" "${configure[@]}" >"$tmp/cmake-configure.log" 2>&1 ||
    { tail -n 30 "$tmp/cmake-configure.log" >&2; die "${configure[*]}"; }
  timeout "$(allow 600)" cmake --build "$dir" --target "$@" >"$tmp/cmake-build.log" 2>&1 ||
    { grep -m 20 -A 5 'error' "$tmp/cmake-build.log" >&2; die "build"; }
  # The budget is for the benchmark itself, not for compiling.
  deadline=$((SECONDS + BUDGET_SECONDS))
}

# stop_region: stops what start_mailpushd, start_apns_sim, start_graph_sim and the private MariaDB in $tmp/db
# ($db_started=1) run, then removes $tmp (kept when $keep_tmp=1). For the benchmarks' EXIT trap.
stop_region() {
  stop_process "$mailpushd_pid" TERM 150
  stop_process "$sim_pid" TERM 50
  stop_process "${graph_sim_pid:-}" TERM 50
  if [ "${db_started:-0}" = 1 ]; then
    timeout 90 bash scripts/mariadb.sh stop --datadir "$tmp/db" >/dev/null 2>&1 ||
      echo "$BENCH_NAME: could not stop the private MariaDB in $tmp/db" >&2
  fi
  if [ "${keep_tmp:-0}" = 1 ]; then echo "$BENCH_NAME: kept $tmp" >&2; else rm -rf -- "$tmp"; fi
}

# stop_region_on_exit: the run's region is stopped however the script ends (stop_region), with
# the script's exit status kept; INT exits 130 and TERM 143. Call it once $tmp exists.
stop_region_on_exit() {
  mailpushd_pid="" sim_pid="" graph_sim_pid="" db_started=0
  trap region_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
region_exit() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_region
  exit "$rc"
}

# start_private_mariadb: a private durable MariaDB in $tmp/db on a reserved loopback port
# ($db_port) with the database $DATABASE (scripts/mariadb.sh); defines sql (SQL on stdin ->
# tab-separated rows), its command line sql_command, and db_pid.
start_private_mariadb() {
  bench_port db_port
  say "starting a private MariaDB on 127.0.0.1:$db_port (durable: innodb_flush_log_at_trx_commit=1)"
  db_started=1
  timeout "$(allow 120)" bash scripts/mariadb.sh start --datadir "$tmp/db" --port "$db_port" \
    --database "$DATABASE" >"$tmp/mariadb-start.log" 2>&1 ||
    { cat "$tmp/mariadb-start.log" >&2; die "scripts/mariadb.sh start"; }
  sql_command=(mariadb --defaults-file="$tmp/db/my.cnf" --protocol=socket --user="$(id -un)" --batch
    --skip-column-names --connect-timeout=5 "$DATABASE")
}
sql() { "${sql_command[@]}"; }
db_pid() { cat "$tmp/db/mariadbd.pid"; }

# TLS files of the listener ($tls: certs/make-dev-certs.sh), the APNs test certificates ($certs),
# the portal's KEK and admin token ($tmp/keys/kek, admin-tokens, admin-header).
make_region_files() {
  tls="$tmp/tls"
  certs="$tmp/apns-certs"
  say "TLS files (certs/make-dev-certs.sh) and APNs test certificates (certs/make-apns-test-certs.sh)"
  timeout "$(allow 60)" bash certs/make-dev-certs.sh "$tls" >/dev/null 2>&1 || die "certs/make-dev-certs.sh"
  timeout "$(allow 60)" bash certs/make-apns-test-certs.sh "$certs" >/dev/null 2>&1 || die "certs/make-apns-test-certs.sh"
  mkdir -p "$tmp/keys"
  timeout "$(allow 30)" bash scripts/make-kek.sh "$tmp/keys/kek" bench1 >/dev/null || die "scripts/make-kek.sh"
  (
    umask 077
    admin_token="adm_$(openssl rand -hex 24)"
    printf '%s' "$admin_token" | openssl dgst -sha384 -r | cut -d' ' -f1 >"$tmp/keys/admin-tokens"
    printf 'Authorization: Bearer %s\n' "$admin_token" >"$tmp/keys/admin-header"
  )
}

# wait_ready NAME PID OUT: up to 10 s for a simulator's ready line in OUT; dies with the end of
# $tmp/NAME.log when it exits or never gets ready.
wait_ready() {
  for _ in $(seq 1 100); do
    grep -q '"ready":true' "$3" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$1 exited: $(tail -3 "$tmp/$1.log")"
    sleep 0.1
  done
  die "$1 not ready"
}

# start_apns_sim MAX_RECORDED: apns-sim (production, client certificates of the test CA
# required); sets sim_pid, sim_port, sim_control.
start_apns_sim() {
  local out="$tmp/apns-sim.out"
  say "starting apns-sim (production, client certificates of the test CA required)"
  "$sim" --cert "$certs/server.crt" --key "$certs/server.key" --client-ca "$certs/apple-ca.crt" \
    --environment production --max-recorded "$1" --log-level warn >"$out" 2>"$tmp/apns-sim.log" </dev/null &
  sim_pid=$!
  wait_ready apns-sim "$sim_pid" "$out"
  sim_port=$(jq -r .h2_port "$out")
  sim_control=$(jq -r .control_port "$out")
}
# start_graph_sim BINARY CONNECTIONS: graph-sim (Microsoft Graph) trusting the listener's CA
# ($tls/ca.crt), CONNECTIONS keep-alive connections to the listener; sets graph_sim_pid and
# graph_control (its control port; see graph_sim).
start_graph_sim() {
  local out="$tmp/graph-sim.out"
  say "starting graph-sim ($2 connections to the listener)"
  "$1" --ca "$tls/ca.crt" --connections "$2" --log-level warn >"$out" 2>"$tmp/graph-sim.log" </dev/null &
  graph_sim_pid=$!
  wait_ready graph-sim "$graph_sim_pid" "$out"
  graph_control=$(jq -r .control_port "$out")
}
# graph_sim METHOD PATH [JSON-FILE] [MAX-SECONDS]: a graph-sim control call; its JSON on stdout.
graph_sim() {
  local args=(-fsS --max-time "${4:-60}" -X "$1" "http://127.0.0.1:$graph_control$2")
  [ -z "${3:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "@$3")
  curl "${args[@]}"
}

# write_region FILE DISPATCH_JSON JQ_FILTER: regions/dev.json pointed at the private MariaDB
# ($db_port, $DATABASE, migrated by the caller), apns-sim, the listener on $listener_port with
# $tls's files, and the portal's files; JQ_FILTER (given $tmp as $tmp) finishes it.
write_region() {
  jq --argjson port "$listener_port" --arg cert "$tls/listener.crt" --arg key "$tls/listener.key" \
    --argjson dbport "$db_port" --arg db "$DATABASE" --arg pw "$tmp/db/mailpush.password" \
    --argjson sim "$sim_port" --arg ca "$certs/apple-ca.crt" --arg kek "$tmp/keys/kek" \
    --arg admin "$tmp/keys/admin-tokens" --argjson dispatch "$2" --arg tmp "$tmp" '
    .listener.port = $port | .listener.tls_cert = $cert | .listener.tls_key = $key
    | .database.host = "127.0.0.1" | .database.port = $dbport | del(.database.socket)
    | .database.name = $db | .database.password_file = $pw | .database.migrate_on_start = false
    | .apns.production = {host: "127.0.0.1", port: $sim} | .apns.sandbox = {host: "127.0.0.1", port: $sim}
    | .apns.ca_file = $ca
    | .portal = {kek_file: $kek, admin_token_file: $admin, trust_anchors: $ca, credential_refresh_s: 30}
    | .dispatch = $dispatch
    | .limits.max_connections = 20000 | .limits.max_connections_per_address = 0
    | .limits.connections_per_second_per_address = 0 | .limits.unknown_secrets_per_second_per_address = 0
    | '"$3" regions/dev.json >"$1"
}

# start_mailpushd: mailpushd with $region, its log in $tmp/mailpushd-<launch>.log; sets
# mailpushd_pid once /readyz answers.
launches=0
start_mailpushd() {
  launches=$((launches + 1))
  "$mailpushd" --region "$region" >"$tmp/mailpushd-$launches.log" 2>&1 </dev/null &
  mailpushd_pid=$!
  wait_https "https://localhost:$listener_port/readyz" "$(allow 60)" ||
    { tail -n 20 "$tmp/mailpushd-$launches.log" >&2; die "mailpushd did not become ready"; }
}
stop_mailpushd() {
  stop_process "$mailpushd_pid" TERM 200 || true
  mailpushd_pid=""
}

sim_get() { curl -fsS --max-time 30 "http://127.0.0.1:$sim_control$1"; }

# onboard_customer: ONE customer through POST /portal/v1/customers with the test certificate
# mail.p12, on the running mailpushd ($listener_port); sets customer_public, customer_row and
# registration_key.
onboard_customer() {
  local onboard
  onboard=$(timeout "$(allow 60)" curl -sS --max-time 30 --cacert "$tls/ca.crt" -H @"$tmp/keys/admin-header" \
    -F "password=<$certs/mail.p12.password" -F app_id=com.example.mail -F region=dev \
    -F "certificate=@$certs/mail.p12;type=application/x-pkcs12" -w '\n%{http_code}' \
    "https://localhost:$listener_port/portal/v1/customers") || die "POST /portal/v1/customers"
  [ "$(tail -n 1 <<<"$onboard")" = 201 ] || die "onboarding answered $(tail -n 1 <<<"$onboard"): $(head -n 1 <<<"$onboard" | head -c 300)"
  customer_public=$(head -n 1 <<<"$onboard" | jq -r .customer_id)
  registration_key=$(head -n 1 <<<"$onboard" | jq -r .registration_key)
  customer_row=$(echo "SELECT id FROM customers WHERE customer_id = '$customer_public'" | sql)
  [[ "$customer_row" =~ ^[0-9]+$ ]] || die "customer $customer_public not found"
  say "  customer $customer_public (row $customer_row)"
}

# The seed (the layout of bench/fanout_common.hpp), each table in one INSERT … SELECT from the
# sequence engine, in one transaction, into an emptied table with the session's unique and
# foreign-key checks off, as a dump restore does (the conditions of MariaDB's bulk insert into an
# empty table); the ids are unique by construction and every reference exists, which
# load_scale's counts check.
seed_sql() { # N
  local n=$1 c=$customer_row
  cat <<EOF
SET SESSION foreign_key_checks = 0;
TRUNCATE TABLE outbox; TRUNCATE TABLE superseded_subscriptions; TRUNCATE TABLE registrations;
TRUNCATE TABLE devices; TRUNCATE TABLE mailboxes;
SET SESSION unique_checks = 0;
START TRANSACTION;
INSERT INTO mailboxes (id, customer_id, address_hmac)
  SELECT seq, $c, UNHEX(SHA2(CONCAT('fanout-bench-mailbox-', seq), 256)) FROM seq_1_to_${n};
COMMIT;
START TRANSACTION;
INSERT INTO devices (id, customer_id, environment, token_hex)
  SELECT STRAIGHT_JOIN 3 * (m.seq - 1) + s.seq + 1, $c, 'production',
         SHA2(CONCAT('fanout-bench-token-', m.seq, '-', s.seq), 256)
  FROM seq_1_to_${n} m JOIN seq_0_to_2 s ON s.seq <= (m.seq - 1) % 3;
COMMIT;
START TRANSACTION;
INSERT INTO registrations (id, customer_id, mailbox_id, device_id, secret_hash, subscription_id,
                           status_frequency_minutes, last_heard_at)
  SELECT STRAIGHT_JOIN 3 * (m.seq - 1) + s.seq + 1, $c, m.seq, 3 * (m.seq - 1) + s.seq + 1,
         UNHEX(SHA2(CONCAT('fanout-bench-secret-', LPAD(3 * (m.seq - 1) + s.seq + 1, 10, '0')), 384)),
         CONCAT('fanout-sub-', 3 * (m.seq - 1) + s.seq + 1), 30, UTC_TIMESTAMP(6)
  FROM seq_1_to_${n} m JOIN seq_0_to_2 s ON s.seq <= (m.seq - 1) % 3;
COMMIT;
SET SESSION unique_checks = 1;
SET SESSION foreign_key_checks = 1;
EOF
}

# seed_check N: the seed's counts; sets devices.
seed_check() {
  local mb dv rg orphans
  read -r mb dv rg orphans < <(echo "SELECT (SELECT COUNT(*) FROM mailboxes), (SELECT COUNT(*) FROM devices),
      (SELECT COUNT(*) FROM registrations WHERE subscription_id IS NOT NULL),
      (SELECT COUNT(*) FROM registrations r LEFT JOIN devices d ON d.id = r.device_id
         LEFT JOIN mailboxes m ON m.id = r.mailbox_id WHERE d.id IS NULL OR m.id IS NULL)" | sql)
  [ "$mb" = "$1" ] || die "expected $1 mailboxes, found $mb"
  [ "$dv" = "$rg" ] && [ "$orphans" = 0 ] || die "$dv devices, $rg bound registrations, $orphans without their device or mailbox"
  devices=$dv
}
