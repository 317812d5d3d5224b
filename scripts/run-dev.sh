#!/usr/bin/env bash
# Sets everything up and runs a local `dev` region end to end: packages, dev TLS, the private
# MariaDB, the build, migrations, apns-sim (the region's APNs), graph-sim (Microsoft Graph, for the
# Exchange Online account) and mailpushd; then the demo
# (scripts/demo.sh): a customer from a test certificate through the portal, three devices
# registered for two mailboxes, real SendNotification callbacks, and the badges each simulated
# device received. The region keeps running.
#
#   scripts/run-dev.sh           set up, (re)start the dev region and run the demo
#   scripts/run-dev.sh status    what runs, and mailpushctl status
#   scripts/run-dev.sh stop      stop mailpushd, apns-sim, graph-sim and the dev MariaDB
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

region=regions/dev.json
state="$root/var/dev"
pid_file="$state/mailpushd.pid"
log_file="$state/mailpushd.log"
build="$root/build/dev"
sim_pid_file="$state/apns-sim.pid"
sim_port=2197        # apns.production / apns.sandbox of regions/dev.json
sim_control_port=2198
graph_pid_file="$state/graph-sim.pid"
graph_control_port=2199
port=$(sed -n 's/.*"port": \([0-9]*\),\{0,1\}$/\1/p' "$region" | head -n 1)  # listener.port

# running_pid PID_FILE COMMAND: the pid in the file, if that process runs and is COMMAND.
running_pid() {
  [ -f "$1" ] || return 1
  local pid
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && [ "$(ps -o comm= -p "$pid")" = "$2" ] && echo "$pid"
}

# stop_pid PID_FILE COMMAND: SIGTERM, up to 15 s for a clean exit, then SIGKILL.
stop_pid() {
  local pid
  if pid=$(running_pid "$1" "$2"); then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "$2: stopped (pid $pid)"
  fi
  rm -f "$1"
}

daemon_pid() { running_pid "$pid_file" mailpushd; }
sim_pid() { running_pid "$sim_pid_file" apns-sim; }
stop_daemon() { stop_pid "$pid_file" mailpushd; }
stop_sim() { stop_pid "$sim_pid_file" apns-sim; }
graph_pid() { running_pid "$graph_pid_file" graph-sim; }
stop_graph() { stop_pid "$graph_pid_file" graph-sim; }

# start_tool NAME PID_FILE COMMAND...: starts a simulator in its own session (it outlives this
# script), waits up to 5 s for its ready line in var/dev/NAME.ready; its log is var/dev/NAME.log.
start_tool() {
  local name=$1 pid_file=$2
  shift 2
  setsid "$@" >"$state/$name.ready" 2>>"$state/$name.log" </dev/null &
  echo $! >"$pid_file"
  for _ in $(seq 1 50); do grep -q '"ready":true' "$state/$name.ready" 2>/dev/null && break; sleep 0.1; done
  grep -q '"ready":true' "$state/$name.ready" || { echo "$name did not start:" >&2; tail -n 5 "$state/$name.log" >&2; exit 1; }
}

case "${1:-up}" in
  stop)
    stop_daemon
    stop_sim
    stop_graph
    bash scripts/mariadb.sh stop
    exit 0
    ;;
  status)
    if pid=$(daemon_pid); then echo "mailpushd: running (pid $pid, https://localhost:$port)"; else echo "mailpushd: stopped"; fi
    if pid=$(sim_pid); then echo "apns-sim: running (pid $pid, h2 127.0.0.1:$sim_port, control http://127.0.0.1:$sim_control_port)"; else echo "apns-sim: stopped"; fi
    if pid=$(graph_pid); then echo "graph-sim: running (pid $pid, control http://127.0.0.1:$graph_control_port)"; else echo "graph-sim: stopped"; fi
    bash scripts/mariadb.sh status || true
    [ -x "$build/src/app/mailpushctl" ] && "$build/src/app/mailpushctl" --region "$region" status || true
    exit 0
    ;;
  up) ;;
  *) echo "usage: scripts/run-dev.sh [up|status|stop]" >&2; exit 2 ;;
esac

bash scripts/install-deps.sh
bash certs/make-dev-certs.sh "$state/tls"
# The portal of the dev region: test push certificates (their "Apple" CA is the trust anchor),
# the key-encryption key for credentials at rest, and a region admin token (only its SHA-384 is
# in the file the daemon reads; the token itself is for you, in var/dev/portal-admin-token).
bash certs/make-apns-test-certs.sh "$state/apns-certs" >/dev/null
[ -f "$state/kek" ] || bash scripts/make-kek.sh "$state/kek" >/dev/null
[ -f "$state/region-secret" ] || bash scripts/make-region-secret.sh "$state/region-secret" >/dev/null
if [ ! -f "$state/portal-admin-token" ]; then
  (umask 077 && printf 'adm_%s' "$(openssl rand -hex 24)" >"$state/portal-admin-token")
fi
(umask 077 && printf '%s\n' "$(openssl dgst -sha384 -r <"$state/portal-admin-token" | cut -d' ' -f1)" \
  >"$state/portal-admin-tokens.sha384")
bash scripts/mariadb.sh start --database mailpush_dev

echo "== building mailpushd, mailpushctl, apns-sim and graph-sim"
cmake --preset dev >/dev/null
cmake --build --preset dev --target mailpushd mailpushctl apns-sim graph-sim

# The region's APNs: apns-sim with the test certificates (client certificates required, like
# Apple). Its accepted notifications are what the "devices" received.
stop_sim
start_tool apns-sim "$sim_pid_file" "$build/tools/apns_sim/apns-sim" \
  --cert "$state/apns-certs/server.crt" --key "$state/apns-certs/server.key" \
  --client-ca "$state/apns-certs/apple-ca.crt" --port "$sim_port" --control-port "$sim_control_port"
echo "$sim_control_port" >"$state/apns-sim.control-port"
echo "apns-sim: h2 on 127.0.0.1:$sim_port, control API on http://127.0.0.1:$sim_control_port"
# Microsoft Graph for the Exchange Online account: graph-sim trusts the listener's CA, as Graph
# trusts the public one, and reaches https://localhost:$port only.
stop_graph
start_tool graph-sim "$graph_pid_file" "$build/tools/graph_sim/graph-sim" \
  --ca "$state/tls/ca.crt" --control-port "$graph_control_port"
echo "$graph_control_port" >"$state/graph-sim.control-port"
echo "graph-sim: control API on http://127.0.0.1:$graph_control_port"

"$build/src/app/mailpushctl" --region "$region" migrate

stop_daemon
mkdir -p "$state"
# setsid: the daemon outlives this script (and a CI step), like a service would.
setsid "$build/src/app/mailpushd" --region "$region" >>"$log_file" 2>&1 </dev/null &
echo $! >"$pid_file"

echo "== waiting for https://localhost:$port/readyz"
ready=""
for _ in $(seq 1 100); do
  if ready=$(curl -fsS --cacert "$state/tls/ca.crt" "https://localhost:$port/readyz" 2>/dev/null); then break; fi
  if ! daemon_pid >/dev/null; then
    echo "mailpushd exited; last log lines:" >&2
    tail -n 20 "$log_file" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "mailpushd did not become ready in 10 s; last log lines:" >&2
  tail -n 20 "$log_file" >&2
  exit 1
fi
echo "GET /readyz -> $ready"
echo "GET /healthz -> $(curl -fsS --cacert "$state/tls/ca.crt" "https://localhost:$port/healthz")"

bash scripts/demo.sh
echo
"$build/src/app/mailpushctl" --region "$region" status
cat <<EOM

The dev region runs: mailpushd (pid $(cat "$pid_file")) on https://localhost:$port, apns-sim on
127.0.0.1:$sim_port (what it accepted: curl http://127.0.0.1:$sim_control_port/accepted), graph-sim
(what it delivered: curl http://127.0.0.1:$graph_control_port/stats), MariaDB on 127.0.0.1:3307. Run the demo again: bash scripts/demo.sh
  logs     $log_file (one JSON object per line)
  metrics  curl --cacert var/dev/tls/ca.crt https://localhost:$port/metrics
  portal   https://localhost:$port/portal/ (an invite: build/dev/src/app/mailpushctl --region regions/dev.json customers invite;
           test certificates in var/dev/apns-certs, e.g. mail.p12 with the password in mail.p12.password)
  status   bash scripts/run-dev.sh status
  stop     bash scripts/run-dev.sh stop
EOM
