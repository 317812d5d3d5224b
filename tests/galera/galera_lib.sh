# shellcheck shell=bash
# A mailpush region on loopback for the Galera failover test (tests/galera/galera_failover_test.sh)
# and the scale-out benchmark (bench/scaleout_bench.sh): a 3-node Galera cluster
# (scripts/galera.sh), apns-sim as APNs, N mailpushd instances and HAProxy in front of them as
# the region's load balancer. Everything listens on 127.0.0.1 only.
#
# The caller sets, before sourcing: root (the repository), tmp (a fresh folder, removed by the
# caller), GL_NAME (prefix of progress lines), and the binaries: mailpushd, mailpushctl, sim,
# load, check. It calls gl_cleanup from its EXIT trap. Functions fail with gl_die (exit 1).
#
# The data is bench/fanout_bench.sh's layout (bench/fanout_common.hpp): mailbox i has 1-3 devices,
# the secrets, tokens and subscriptions follow from i, so fanout_load sends real callbacks for it
# and fanout_check matches what apns-sim accepted with what was acknowledged.

readonly GL_DATABASE=mailpush_galera

gl_t0=$SECONDS
gl_say() { printf '[%s %3ds] %s\n' "$GL_NAME" "$((SECONDS - gl_t0))" "$*" >&2; }
gl_die() {
  gl_say "FAILED: $*"
  exit 1
}

gl_instance_pids=()  # by instance number (1-based; index 0 unused)
gl_listener_ports=()
gl_sim_pid=""
gl_haproxy_pid=""
gl_cluster_started=0

# ---------------------------------------------------------------- processes

gl_stop_process() { # pid signal tenths
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill "-$2" "$1" 2>/dev/null || true
  for _ in $(seq 1 "$3"); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

gl_cleanup() {
  set +e
  local i
  for i in "${!gl_instance_pids[@]}"; do gl_stop_process "${gl_instance_pids[$i]}" TERM 150; done
  gl_stop_process "$gl_haproxy_pid" TERM 30
  gl_stop_process "$gl_sim_pid" TERM 50
  if [ "$gl_single_started" = 1 ]; then
    timeout 90 bash "$root/scripts/mariadb.sh" stop --datadir "$tmp/single" >/dev/null 2>&1 ||
      echo "$GL_NAME: could not stop the MariaDB server in $tmp/single" >&2
  fi
  if [ "$gl_cluster_started" = 1 ]; then
    timeout 200 bash "$root/scripts/galera.sh" stop --datadir "$tmp/galera" >"$tmp/galera-stop.log" 2>&1 ||
      echo "$GL_NAME: could not stop the Galera cluster in $tmp/galera (see $tmp/galera-stop.log)" >&2
  fi
}

gl_check_tools() {
  local tool
  for tool in jq curl openssl mariadb ss awk haproxy mariabackup socat; do
    command -v "$tool" >/dev/null 2>&1 || gl_die "$tool is missing (scripts/install-deps.sh installs it)"
  done
  [ -f /usr/lib/galera/libgalera_smm.so ] || gl_die "galera-4 is missing (scripts/install-deps.sh installs it)"
  local b
  for b in "$mailpushd" "$mailpushctl" "$sim" "$load" "$check"; do
    [ -x "$b" ] || gl_die "$b is missing: build it first"
  done
}

# Ports: reserve_port (scripts/lib/ports.sh), held until the calling shell exits.
# shellcheck source=scripts/lib/ports.sh
source "$root/scripts/lib/ports.sh"
gl_reserve_port() { reserve_port "$1" || gl_die "no free port"; }
# The cluster's ports: node N's SQL port base+N-1 and its Galera ports base+100+10(N-1)..+2.
gl_reserve_cluster_ports() {
  reserve_port "$1" 0 1 2 100 101 102 110 111 112 120 121 122 || gl_die "no free port range for the cluster"
}

# ---------------------------------------------------------------- certificates and keys

gl_make_keys() {
  tls="$tmp/tls"
  certs="$tmp/apns-certs"
  timeout 60 bash "$root/certs/make-dev-certs.sh" "$tls" >/dev/null 2>&1 || gl_die "certs/make-dev-certs.sh"
  timeout 60 bash "$root/certs/make-apns-test-certs.sh" "$certs" >/dev/null 2>&1 || gl_die "certs/make-apns-test-certs.sh"
  mkdir -p "$tmp/keys"
  timeout 30 bash "$root/scripts/make-kek.sh" "$tmp/keys/kek" galera1 >/dev/null || gl_die "scripts/make-kek.sh"
  (
    umask 077
    local admin_token
    admin_token="adm_$(openssl rand -hex 24)"
    printf '%s' "$admin_token" | openssl dgst -sha384 -r | cut -d' ' -f1 >"$tmp/keys/admin-tokens"
    printf 'Authorization: Bearer %s\n' "$admin_token" >"$tmp/keys/admin-header"
  )
}

# ---------------------------------------------------------------- the cluster

gl_cluster_start() {
  gl_reserve_cluster_ports gl_base
  gl_cluster_started=1
  timeout 400 bash "$root/scripts/galera.sh" start --datadir "$tmp/galera" --base-port "$gl_base" \
    --database "$GL_DATABASE" >"$tmp/galera-start.log" 2>&1 ||
    { tail -n 40 "$tmp/galera-start.log" >&2; gl_die "scripts/galera.sh start"; }
  gl_hosts="127.0.0.1:$gl_base,127.0.0.1:$((gl_base + 1)),127.0.0.1:$((gl_base + 2))"
  gl_pwfile="$tmp/galera/mailpush.password"
}

# A single plain MariaDB server instead of the cluster (scripts/mariadb.sh, same durability).
gl_single_start() {
  local port
  gl_reserve_port port
  GL_SINGLE_DIR="$tmp/single"
  gl_single_started=1
  timeout 120 bash "$root/scripts/mariadb.sh" start --datadir "$GL_SINGLE_DIR" --port "$port" \
    --database "$GL_DATABASE" >"$tmp/single-start.log" 2>&1 ||
    { tail -n 30 "$tmp/single-start.log" >&2; gl_die "scripts/mariadb.sh start"; }
  gl_hosts="127.0.0.1:$port"
  gl_pwfile="$GL_SINGLE_DIR/mailpush.password"
}
gl_single_started=0

gl_galera() { timeout 300 bash "$root/scripts/galera.sh" "$@" --datadir "$tmp/galera"; }

# The folder of node N: the cluster's, or with GL_SINGLE_DIR set a single plain MariaDB server
# (scripts/mariadb.sh: the benchmark's baseline) for every N.
gl_node_dir() { if [ -n "${GL_SINGLE_DIR:-}" ]; then echo "$GL_SINGLE_DIR"; else echo "$tmp/galera/node$1"; fi; }

# SQL on node N (default: the first node that answers) as the admin user over its socket.
gl_sql_node() {
  mariadb --defaults-file="$(gl_node_dir "$1")/my.cnf" --protocol=socket --user="$(id -un)" --batch \
    --skip-column-names --connect-timeout=5 "$GL_DATABASE"
}
gl_sql() {
  local n input
  input=$(cat)
  for n in 1 2 3; do
    if [ -S "$(gl_node_dir "$n")/mysqld.sock" ] &&
      echo "SELECT 1" | gl_sql_node "$n" >/dev/null 2>&1; then
      printf '%s\n' "$input" | gl_sql_node "$n"
      return
    fi
  done
  echo "$GL_NAME: no Galera node answers" >&2
  return 1
}

# wsrep_cluster_size as node N sees it (empty when it does not answer).
gl_cluster_size() {
  echo "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'" | gl_sql_node "$1" 2>/dev/null | cut -f2
}

# ---------------------------------------------------------------- region, simulator, instances

gl_start_sim() {
  local out="$tmp/apns-sim.out"
  "$sim" --cert "$certs/server.crt" --key "$certs/server.key" --client-ca "$certs/apple-ca.crt" \
    --environment production --max-recorded 1000000 --log-level warn >"$out" 2>"$tmp/apns-sim.log" </dev/null &
  gl_sim_pid=$!
  for _ in $(seq 1 100); do
    grep -q '"ready":true' "$out" 2>/dev/null && break
    kill -0 "$gl_sim_pid" 2>/dev/null || gl_die "apns-sim exited: $(tail -3 "$tmp/apns-sim.log")"
    sleep 0.1
  done
  grep -q '"ready":true' "$out" || gl_die "apns-sim not ready"
  sim_port=$(jq -r .h2_port "$out")
  sim_control=$(jq -r .control_port "$out")
}
gl_sim_get() { curl -fsS --max-time 30 "http://127.0.0.1:$sim_control$1"; }
gl_sim_post() { curl -fsS --max-time 30 -X POST -H 'Content-Type: application/json' --data "$2" "http://127.0.0.1:$sim_control$1" >/dev/null; }

# gl_region N PORT [DISPATCH_JSON]: the region file of instance N (its own instance id and
# listener port; every instance names the cluster's nodes in the same order).
gl_region() {
  local n=$1 port=$2 dispatch=${3:-'{}'}
  jq --argjson port "$port" --arg cert "$tls/listener.crt" --arg key "$tls/listener.key" \
    --arg hosts "$gl_hosts" --arg db "$GL_DATABASE" --arg pw "$gl_pwfile" \
    --argjson sim "$sim_port" --arg ca "$certs/apple-ca.crt" --arg kek "$tmp/keys/kek" \
    --arg admin "$tmp/keys/admin-tokens" --arg id "galera-$n" --argjson dispatch "$dispatch" '
    .listener.port = $port | .listener.tls_cert = $cert | .listener.tls_key = $key
    | .listener.trusted_proxies = ["127.0.0.1/32"]
    | del(.database.host) | del(.database.port) | del(.database.socket)
    | .database.hosts = ($hosts | split(","))
    | .database.name = $db | .database.password_file = $pw | .database.migrate_on_start = false
    | .database.connect_timeout_ms = 2000 | .database.query_timeout_ms = 10000
    | .apns.production = {host: "127.0.0.1", port: $sim} | .apns.sandbox = {host: "127.0.0.1", port: $sim}
    | .apns.ca_file = $ca
    | .portal = {kek_file: $kek, admin_token_file: $admin, trust_anchors: $ca, credential_refresh_s: 2}
    | del(.registration)
    | .dispatch = ({instance_id: $id, batch: 1000, poll_ms: 100, apns_connections: 2, ttl_s: 3600,
                    lease_s: 30, max_attempts: 12} + $dispatch)
    | .limits.max_connections = 20000 | .log_level = "info"' "$root/regions/dev.json" >"$tmp/region-$n.json"
}

gl_migrate() {
  timeout 120 "$mailpushctl" --region "$tmp/region-1.json" migrate >"$tmp/migrate.log" 2>&1 ||
    { cat "$tmp/migrate.log" >&2; gl_die "mailpushctl migrate on the cluster"; }
}

# Galera replicates InnoDB tables with a primary key only: checks every table of the schema.
gl_check_schema() {
  local bad
  bad=$(echo "SELECT t.table_name, t.engine FROM information_schema.tables t
          WHERE t.table_schema = '$GL_DATABASE' AND t.table_type = 'BASE TABLE'
            AND (t.engine <> 'InnoDB' OR NOT EXISTS (SELECT 1 FROM information_schema.table_constraints c
                 WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
                   AND c.constraint_type = 'PRIMARY KEY'))" | gl_sql) || gl_die "schema check"
  [ -z "$bad" ] || gl_die "tables Galera cannot replicate safely (not InnoDB or no primary key): $bad"
  gl_tables=$(echo "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$GL_DATABASE'
                      AND table_type = 'BASE TABLE'" | gl_sql)
}

gl_wait_https() { # url seconds
  local until=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$until" ]; do
    curl -fsS --max-time 2 --cacert "$tls/ca.crt" "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

gl_launches=0
# gl_start_instance N: mailpushd with region-N.json (made by gl_region), waits for /readyz.
gl_start_instance() {
  local n=$1 port
  port=$(jq -r .listener.port "$tmp/region-$n.json")
  gl_launches=$((gl_launches + 1))
  "$mailpushd" --region "$tmp/region-$n.json" >"$tmp/mailpushd-$n.$gl_launches.log" 2>&1 </dev/null &
  gl_instance_pids[$n]=$!
  gl_listener_ports[$n]=$port
  gl_wait_https "https://localhost:$port/readyz" 60 ||
    { tail -n 20 "$tmp/mailpushd-$n.$gl_launches.log" >&2; gl_die "mailpushd $n did not become ready"; }
}
gl_stop_instance() {
  gl_stop_process "${gl_instance_pids[$1]:-}" TERM 200
  gl_instance_pids[$1]=""
}
gl_metrics() { # N -> /metrics of instance N on stdout (empty when it does not answer)
  curl -fsS --max-time 10 --cacert "$tls/ca.crt" "https://localhost:${gl_listener_ports[$1]}/metrics" 2>/dev/null || true
}
gl_metric_sum() { # N prefix: the sum of a metric's series on instance N
  gl_metrics "$1" | awk -v p="$2" 'index($1, p) == 1 { s += $2 } END { printf "%d", s }'
}

# gl_haproxy PORT INSTANCE...: HAProxy as the region's load balancer: TCP mode, TLS passed through
# to mailpushd, connect checks every 500 ms (a dead instance is out after 1 s; a refused
# connection is redispatched at once). ops/galera/haproxy.cfg checks GET /readyz instead; here a
# 2-core machine running three database servers under load answers that check too late at times,
# which would take healthy instances out and measure the machine, not the region.
gl_haproxy() {
  local port=$1 n
  shift
  {
    echo "global"
    echo "  maxconn 4000"
    echo "  log stderr format raw local0 notice"
    echo "defaults"
    echo "  mode tcp"
    echo "  log global"
    echo "  timeout connect 2s"
    echo "  timeout client 120s"
    echo "  timeout server 120s"
    echo "  timeout check 2s"
    echo "  retries 3"
    echo "  option redispatch"
    echo "frontend ews"
    echo "  bind 127.0.0.1:$port"
    echo "  default_backend mailpushd"
    echo "backend mailpushd"
    echo "  balance roundrobin"
    echo "  default-server check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions"
    for n in "$@"; do echo "  server mailpushd-$n 127.0.0.1:${gl_listener_ports[$n]}"; done
  } >"$tmp/haproxy.cfg"
  gl_stop_process "$gl_haproxy_pid" TERM 30
  haproxy -c -q -f "$tmp/haproxy.cfg" >"$tmp/haproxy-check.log" 2>&1 ||
    { cat "$tmp/haproxy-check.log" >&2; gl_die "haproxy configuration"; }
  haproxy -db -f "$tmp/haproxy.cfg" >>"$tmp/haproxy.log" 2>&1 </dev/null &
  gl_haproxy_pid=$!
  lb_port=$port
  gl_wait_https "https://localhost:$port/readyz" 30 || gl_die "haproxy does not pass requests on: $(tail -n 5 "$tmp/haproxy.log")"
}

# ---------------------------------------------------------------- customer and data

gl_onboard() { # through instance 1
  local onboard
  onboard=$(timeout 60 curl -sS --max-time 30 --cacert "$tls/ca.crt" -H @"$tmp/keys/admin-header" \
    -F "password=<$certs/mail.p12.password" -F app_id=com.example.mail -F region=dev \
    -F "certificate=@$certs/mail.p12;type=application/x-pkcs12" -w '\n%{http_code}' \
    "https://localhost:${gl_listener_ports[1]}/portal/v1/customers") || gl_die "POST /portal/v1/customers"
  [ "$(tail -n 1 <<<"$onboard")" = 201 ] || gl_die "onboarding answered $(tail -n 1 <<<"$onboard")"
  customer_public=$(head -n 1 <<<"$onboard" | jq -r .customer_id)
  customer_row=$(echo "SELECT id FROM customers WHERE customer_id = '$customer_public'" | gl_sql)
  [[ "$customer_row" =~ ^[0-9]+$ ]] || gl_die "customer $customer_public not found"
}

# gl_seed N: N mailboxes with 1-3 devices each (bench/fanout_bench.sh's seed, the layout of
# bench/fanout_common.hpp). Galera replicates each transaction as one write set: a mailbox table
# of 10,000s of rows goes in chunks.
gl_seed() {
  local n=$1 c=$customer_row lo hi chunk=5000
  {
    echo "SET SESSION foreign_key_checks = 0;"
    echo "DELETE FROM outbox; DELETE FROM superseded_subscriptions; DELETE FROM registrations;"
    echo "DELETE FROM devices; DELETE FROM mailboxes;"
    for ((lo = 1; lo <= n; lo += chunk)); do
      hi=$((lo + chunk - 1 < n ? lo + chunk - 1 : n))
      cat <<EOF
START TRANSACTION;
INSERT INTO mailboxes (id, customer_id, address_hmac)
  SELECT seq, $c, UNHEX(SHA2(CONCAT('fanout-bench-mailbox-', seq), 256)) FROM seq_${lo}_to_${hi};
INSERT INTO devices (id, customer_id, environment, token_hex)
  SELECT STRAIGHT_JOIN 3 * (m.seq - 1) + s.seq + 1, $c, 'production',
         SHA2(CONCAT('fanout-bench-token-', m.seq, '-', s.seq), 256)
  FROM seq_${lo}_to_${hi} m JOIN seq_0_to_2 s ON s.seq <= (m.seq - 1) % 3;
INSERT INTO registrations (id, customer_id, mailbox_id, device_id, secret_hash, subscription_id,
                           status_frequency_minutes, last_heard_at)
  SELECT STRAIGHT_JOIN 3 * (m.seq - 1) + s.seq + 1, $c, m.seq, 3 * (m.seq - 1) + s.seq + 1,
         UNHEX(SHA2(CONCAT('fanout-bench-secret-', LPAD(3 * (m.seq - 1) + s.seq + 1, 10, '0')), 384)),
         CONCAT('fanout-sub-', 3 * (m.seq - 1) + s.seq + 1), 30, UTC_TIMESTAMP(6)
  FROM seq_${lo}_to_${hi} m JOIN seq_0_to_2 s ON s.seq <= (m.seq - 1) % 3;
COMMIT;
EOF
    done
    echo "SET SESSION foreign_key_checks = 1;"
  } | gl_sql || gl_die "loading $n mailboxes"
  local mb
  mb=$(echo "SELECT COUNT(*) FROM mailboxes" | gl_sql)
  [ "$mb" = "$n" ] || gl_die "expected $n mailboxes, found $mb"
  gl_devices=$(echo "SELECT COUNT(*) FROM devices" | gl_sql)
}

# The pending badges, all and by owner ("owner<TAB>count" lines).
gl_queued() { echo "SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL" | gl_sql; }
gl_queued_by_owner() { echo "SELECT badge_owner, COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL GROUP BY badge_owner" | gl_sql; }

gl_drain() { # seconds: waits until no row is queued
  local until=$((SECONDS + $1)) q=""
  while [ "$SECONDS" -lt "$until" ]; do
    q=$(gl_queued 2>/dev/null || echo "?")
    [ "$q" != 0 ] || return 0
    sleep 0.2
  done
  gl_say "  $q notifications still queued after $1 s"
  return 1
}

# One event to mailbox 1 through the load balancer: the instances' credentials are loaded and
# their APNs connections open before anything is measured.
gl_probe() {
  timeout 30 "$load" --port "$lb_port" --ca "$tls/ca.crt" --mailboxes 1 --rate 1 --duration 1 \
    --connections 1 --badge-base 999999 --label probe >"$tmp/probe.load" 2>&1 || gl_die "probe: $(cat "$tmp/probe.load")"
  local until=$((SECONDS + 40))
  until [ "$(gl_sim_get /stats | jq .accepted)" -ge 1 ]; do
    [ "$SECONDS" -lt "$until" ] || gl_die "no notification reached apns-sim"
    sleep 0.2
  done
  gl_drain 30 || true
  gl_sim_post /reset '{}'
}
