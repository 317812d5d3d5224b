#!/usr/bin/env bash
# A private 3-node MariaDB Galera cluster on loopback for mailpush tests and benchmarks: no
# system service, no sudo (the same approach as scripts/mariadb.sh, one folder per node).
#
#   scripts/galera.sh start|stop|status|env [--datadir DIR] [--base-port P] [--database NAME]...
#   scripts/galera.sh kill-node N|stop-node N|restart-node N|bootstrap-node N [--datadir DIR]
#
# DIR (default <repo>/var/galera) holds node1/ node2/ node3/ (each: data/, my.cnf, mysqld.sock,
# mariadbd.pid, error.log), ports, mailpush.password (mode 0600) and .lock. Node N listens for
# SQL on 127.0.0.1:P+N-1 (P default 3320) and for Galera on 127.0.0.1:P+100+10(N-1) (group
# communication), +1 (IST), +2 (SST, mariabackup); nothing listens beyond loopback.
#
# `start` starts every stopped node. With no node running it bootstraps the cluster from the node
# Galera marked safe_to_bootstrap (else the one with the highest recovered seqno; node 1 on the
# first start) and then lets the others join (IST, or SST by rsync). It creates the user
# 'mailpush' (@127.0.0.1, @localhost) with the password from mailpush.password and ALL PRIVILEGES
# on `mailpush%`.*, and each --database NAME; both replicate to every node.
# `kill-node N` is SIGKILL (a crash); `stop-node N` a clean shutdown; `restart-node N` starts node N
# again and waits until it is Synced with the others. `bootstrap-node N` makes the running node N
# the primary component again after the cluster lost its majority (two nodes died: the survivor
# is non-Primary and refuses queries, and nodes that come back cannot join it): pc.bootstrap on
# the node with the newest data, then restart-node the others. `status` prints one line per node (pid, port,
# state, cluster size) and exits 0 when every node is Synced in one cluster of 3, 3 when all are
# stopped, 1 otherwise. `eval "$(scripts/galera.sh env)"` exports MAILPUSH_DB_HOSTS (the ordered
# list for database.hosts), MAILPUSH_DB_USER and MAILPUSH_DB_PASSWORD_FILE (never the password).
set -euo pipefail

readonly NODES=3
readonly DEFAULT_BASE_PORT=3320
readonly WAIT_SECONDS=120 # for a node to be Synced after launch (an SST included), and to exit
readonly LOCK_SECONDS=300
readonly PROVIDER=/usr/lib/galera/libgalera_smm.so

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd -- "$script_dir/.." && pwd -P)
# shellcheck source=scripts/lib/mariadb-common.sh
source "$script_dir/lib/mariadb-common.sh"

unset MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MYSQL_PWD MYSQL_HISTFILE

usage() {
  cat <<EOF
usage: scripts/galera.sh start|stop|status|env [--datadir DIR] [--base-port P] [--database NAME]...
       scripts/galera.sh kill-node N|stop-node N|restart-node N|bootstrap-node N [--datadir DIR]

  start           start every stopped node (bootstrapping the cluster when none runs); idempotent
  stop            shut every node down, the bootstrap candidate last
  status          one line per node; exit 0 all $NODES Synced, 3 all stopped, 1 otherwise
  env             export lines for MAILPUSH_DB_HOSTS/USER/PASSWORD_FILE
  kill-node N     SIGKILL node N (1-$NODES): a crash
  stop-node N     clean shutdown of node N
  restart-node N  start node N again and wait until it is Synced
  bootstrap-node N  make running node N the primary component after the majority was lost

  --datadir DIR     state folder (default: <repo>/var/galera)
  --base-port P     SQL port of node 1 (default $DEFAULT_BASE_PORT); node N: P+N-1, Galera P+100+10(N-1)..+2
  --database NAME   create this database on start (repeatable; mailpush* names are granted)
EOF
}

die() {
  echo "galera: $*" >&2
  exit 1
}
usage_error() {
  echo "galera: $*" >&2
  usage >&2
  exit 2
}

# ---------------------------------------------------------------- arguments

command=""
node_arg=""
datadir_arg=""
base_port=""
databases=()
need_value() { [ "$2" -ge 2 ] || usage_error "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    start | stop | status | env)
      [ -z "$command" ] || usage_error "only one command, got '$command' and '$1'"
      command=$1
      ;;
    kill-node | stop-node | restart-node | bootstrap-node)
      [ -z "$command" ] || usage_error "only one command, got '$command' and '$1'"
      need_value "$1" $#
      command=$1 node_arg=$2
      shift
      ;;
    --datadir) need_value "$1" $# && datadir_arg=$2 && shift ;;
    --datadir=*) datadir_arg=${1#*=} ;;
    --base-port) need_value "$1" $# && base_port=$2 && shift ;;
    --base-port=*) base_port=${1#*=} ;;
    --database) need_value "$1" $# && databases+=("$2") && shift ;;
    --database=*) databases+=("${1#*=}") ;;
    -h | --help | help)
      usage
      exit 0
      ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
  shift
done
[ -n "$command" ] || usage_error "no command given"
if [ -n "$node_arg" ]; then
  [[ "$node_arg" =~ ^[1-9]$ ]] && [ "$node_arg" -le "$NODES" ] ||
    usage_error "node must be 1 to $NODES, got '$node_arg'"
fi
if [ -n "$base_port" ]; then
  [[ "$base_port" =~ ^[0-9]{1,5}$ ]] && [ "$((10#$base_port))" -ge 1024 ] &&
    [ "$((10#$base_port + 100 + 10 * NODES))" -le 65535 ] ||
    usage_error "--base-port must be a number from 1024 to $((65535 - 100 - 10 * NODES)), got '$base_port'"
  base_port=$((10#$base_port))
fi
if [ ${#databases[@]} -gt 0 ]; then
  for db in "${databases[@]}"; do
    [[ "$db" =~ ^[A-Za-z0-9_]{1,64}$ ]] || usage_error "--database '$db': use 1-64 letters, digits or _"
  done
fi

dir_hint=""
if [ -n "$datadir_arg" ]; then
  dir=$(realpath -m -- "$datadir_arg")
  dir_hint=" --datadir $dir"
else
  dir="$repo/var/galera"
fi
pwfile="$dir/mailpush.password"
portsfile="$dir/ports"
lockfile="$dir/.lock"

if [ "$(id -u)" -eq 0 ]; then run_user=root; else run_user=$(id -un); fi
admin_user=$run_user

# The base port: the one recorded at the first start wins (the cluster's addresses are in its
# state), then --base-port, then the default.
recorded_port=""
[ ! -f "$portsfile" ] || recorded_port=$(sed -n 's/^base_port=\([0-9][0-9]*\)$/\1/p' "$portsfile")
if [ -n "$recorded_port" ]; then
  if [ -n "$base_port" ] && [ "$base_port" != "$recorded_port" ]; then
    die "$dir was created with --base-port $recorded_port; remove the folder to change it"
  fi
  base_port=$recorded_port
fi
[ -n "$base_port" ] || base_port=$DEFAULT_BASE_PORT

sql_port() { echo $((base_port + $1 - 1)); }
gcomm_port() { echo $((base_port + 100 + 10 * ($1 - 1))); }
node_dir() { echo "$dir/node$1"; }
cnf_of() { echo "$dir/node$1/my.cnf"; }
sock_of() { echo "$dir/node$1/mysqld.sock"; }
pidfile_of() { echo "$dir/node$1/mariadbd.pid"; }
log_of() { echo "$dir/node$1/error.log"; }

# ---------------------------------------------------------------- helpers



# The pid of node N's server (pid file, then a scan of command lines), or fail.
node_pid() {
  local n=$1 pid="" p cnf
  cnf=$(cnf_of "$n")
  if [ -f "$(pidfile_of "$n")" ]; then
    read -r pid 2>/dev/null <"$(pidfile_of "$n")" || pid=""
    if is_mariadbd "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    is_mariadbd "$pid" || continue
    if tr '\0' '\n' 2>/dev/null <"$p/cmdline" | grep -Fxq -- "--defaults-file=$cnf"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# SQL from stdin as the admin user over node N's socket.
node_sql() {
  local n=$1
  mariadb --defaults-file="$(cnf_of "$n")" --protocol=socket --user="$admin_user" \
    --connect-timeout=5 --batch --skip-column-names
}

ping_node() {
  [ -S "$(sock_of "$1")" ] || return 1
  mariadb-admin --defaults-file="$(cnf_of "$1")" --protocol=socket --user="$admin_user" \
    --connect-timeout=2 ping >/dev/null 2>&1
}

# "state<TAB>cluster_size<TAB>ready<TAB>cluster_status" of node N, or fail when it does not answer.
node_wsrep() {
  local out
  out=$(echo "SELECT
      (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE_COMMENT'),
      (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'),
      (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_READY'),
      (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_STATUS')" |
    node_sql "$1" 2>/dev/null) || return 1
  [ -n "$out" ] || return 1
  echo "$out"
}


locked=0
take_lock() {
  [ "$locked" = 0 ] || return 0
  mkdir -p -- "$dir"
  exec 9>>"$lockfile"
  flock -w "$LOCK_SECONDS" 9 || die "another command holds $lockfile for over ${LOCK_SECONDS}s"
  locked=1
}

cluster_address() {
  local n list=""
  for n in $(seq 1 "$NODES"); do list+="${list:+,}127.0.0.1:$(gcomm_port "$n")"; done
  echo "gcomm://$list"
}

write_cnf() {
  local n=$1 nd cnf tmp g
  nd=$(node_dir "$n")
  cnf=$(cnf_of "$n")
  tmp="$cnf.tmp.$$"
  g=$(gcomm_port "$n")
  mkdir -p -- "$nd/tmp"
  {
    echo "# Written by scripts/galera.sh on every start; edits are overwritten."
    echo "# Production settings and their reasons: ops/galera/."
    echo "[mariadbd]"
    echo "datadir=$nd/data"
    echo "tmpdir=$nd/tmp"
    echo "socket=$(sock_of "$n")"
    echo "port=$(sql_port "$n")"
    echo "bind-address=127.0.0.1"
    echo "pid-file=$(pidfile_of "$n")"
    echo "log-error=$(log_of "$n")"
    echo "skip-name-resolve"
    echo "character-set-server=utf8mb4"
    echo "collation-server=utf8mb4_unicode_ci"
    echo "innodb_buffer_pool_size=128M"
    echo "innodb_flush_log_at_trx_commit=1"
    echo "max_connections=500"
    echo "skip-log-bin"
    echo "binlog_format=ROW"
    echo "default_storage_engine=InnoDB"
    echo "innodb_autoinc_lock_mode=2"
    echo "wsrep_on=ON"
    echo "wsrep_provider=$PROVIDER"
    echo "wsrep_cluster_name=mailpush-loopback-$base_port"
    echo "wsrep_cluster_address=$(cluster_address)"
    echo "wsrep_node_name=node$n"
    echo "wsrep_node_address=127.0.0.1:$g"
    echo "wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.0.1:$g;ist.recv_addr=127.0.0.1:$((g + 1));gcache.size=256M;gcache.recover=yes\""
    echo "wsrep_sst_method=mariabackup"
    echo "wsrep_sst_receive_address=127.0.0.1:$((g + 2))"
    echo "wsrep_slave_threads=2"
    [ "$run_user" != root ] || echo "user=root"
    echo
    echo "[client]"
    echo "socket=$(sock_of "$n")"
    echo "port=$(sql_port "$n")"
  } >"$tmp"
  mv -f -- "$tmp" "$cnf"
}

init_datadir() { # only the first node is initialised; the others receive a snapshot (SST)
  local n=$1 data tmp
  data="$(node_dir "$n")/data"
  [ ! -d "$data/mysql" ] || return 0
  if [ -d "$data" ] && [ -n "$(ls -A -- "$data")" ]; then
    # A joiner whose first SST did not finish: let the next SST replace it.
    [ "$n" != 1 ] || die "$data exists but holds no mysql/ system schema; move it away or delete it"
    return 0
  fi
  mkdir -p -- "$data"
  [ "$n" = 1 ] || return 0
  tmp="$(node_dir "$n")/data.init"
  rm -rf -- "$tmp"
  mkdir -p -- "$tmp" "$(node_dir "$n")/tmp"
  echo "galera: initialising $data" >&2
  if ! mariadb-install-db --no-defaults --datadir="$tmp" --user="$run_user" \
    --tmpdir="$(node_dir "$n")/tmp" --auth-root-authentication-method=socket --skip-test-db \
    >"$(node_dir "$n")/install-db.log" 2>&1; then
    tail -n 30 -- "$(node_dir "$n")/install-db.log" >&2 || true
    die "mariadb-install-db failed (log: $(node_dir "$n")/install-db.log)"
  fi
  rm -f -- "$(node_dir "$n")/install-db.log"
  rmdir -- "$data"
  mv -- "$tmp" "$data"
}


bootstrap_sql() { # on node N, replicated to all (user statements and DDL are TOI)
  local n=$1 pw q sql host db
  pw=$(<"$pwfile")
  q=${pw//\\/\\\\}
  q=${q//\'/\\\'}
  sql=""
  for host in 127.0.0.1 localhost; do
    sql+="CREATE USER IF NOT EXISTS 'mailpush'@'$host' IDENTIFIED BY '$q';"$'\n'
    sql+="ALTER USER 'mailpush'@'$host' IDENTIFIED BY '$q';"$'\n'
    sql+="GRANT ALL PRIVILEGES ON \`mailpush%\`.* TO 'mailpush'@'$host';"$'\n'
  done
  if [ ${#databases[@]} -gt 0 ]; then
    for db in "${databases[@]}"; do
      sql+="CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"$'\n'
    done
  fi
  printf '%s' "$sql" | node_sql "$n" || die "bootstrap SQL on node $n failed (see above)"
}

grastate_value() { # node key
  sed -n "s/^$2:[[:space:]]*\(.*\)$/\1/p" "$(node_dir "$1")/data/grastate.dat" 2>/dev/null | head -n 1
}

# The seqno InnoDB holds for node N (mariadbd --wsrep-recover), for a node that crashed.
recovered_seqno() {
  local n=$1 log pos
  log="$(node_dir "$n")/recover.log"
  timeout 120 mariadbd --defaults-file="$(cnf_of "$n")" --wsrep-recover --log-error="$log" \
    </dev/null >/dev/null 2>&1 || true
  pos=$(sed -n 's/.*WSREP: Recovered position: .*:\(-\{0,1\}[0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
  rm -f -- "$log"
  echo "${pos:--1}"
}

# The node to bootstrap a stopped cluster from: safe_to_bootstrap, else the highest seqno.
bootstrap_candidate() {
  local n best=1 best_seq=-2 seq
  for n in $(seq 1 "$NODES"); do
    if [ "$(grastate_value "$n" safe_to_bootstrap)" = 1 ]; then
      echo "$n"
      return 0
    fi
  done
  [ -f "$(node_dir 1)/data/grastate.dat" ] || { echo 1; return 0; } # never started
  for n in $(seq 1 "$NODES"); do
    [ -d "$(node_dir "$n")/data/mysql" ] || continue
    seq=$(grastate_value "$n" seqno)
    if [ -z "$seq" ] || [ "$seq" = -1 ]; then seq=$(recovered_seqno "$n"); fi
    if [ "$seq" -gt "$best_seq" ]; then best=$n best_seq=$seq; fi
  done
  echo "galera: no node is marked safe to bootstrap (all crashed): node $best has the highest seqno ($best_seq)" >&2
  sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' "$(node_dir "$best")/data/grastate.dat"
  echo "$best"
}

# Launches node N (detached) and waits until it is Synced; $2 = new to bootstrap a cluster.
launch_node() {
  local n=$1 mode=${2:-join} port holder launched extra=()
  port=$(sql_port "$n")
  for p in "$port" "$(gcomm_port "$n")" "$(($(gcomm_port "$n") + 1))" "$(($(gcomm_port "$n") + 2))"; do
    if holder=$(port_in_use "$p"); then
      die "node $n: port $p on 127.0.0.1 is already in use${holder:+ by $holder}; choose another --base-port"
    fi
  done
  init_datadir "$n"
  write_cnf "$n"
  rm -f -- "$(pidfile_of "$n")" "$(sock_of "$n")" "$(sock_of "$n").lock"
  : >>"$(log_of "$n")"
  [ "$mode" != new ] || extra=(--wsrep-new-cluster)
  setsid mariadbd --defaults-file="$(cnf_of "$n")" "${extra[@]}" </dev/null >>"$(log_of "$n")" 2>&1 9>&- &
  launched=$!
  local deadline=$((SECONDS + WAIT_SECONDS)) info state
  while :; do
    if ! alive "$launched"; then
      wait "$launched" 2>/dev/null || true
      echo "galera: node $n exited during startup; last lines of $(log_of "$n"):" >&2
      tail -n 30 -- "$(log_of "$n")" >&2 || true
      exit 1
    fi
    if info=$(node_wsrep "$n"); then
      state=$(cut -f1 <<<"$info")
      [ "$state" != Synced ] || break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "galera: node $n not Synced after ${WAIT_SECONDS}s (state: ${state:-no answer}); last lines of $(log_of "$n"):" >&2
      tail -n 30 -- "$(log_of "$n")" >&2 || true
      die "node $n (pid $launched) is left running; 'scripts/galera.sh stop$dir_hint' ends the cluster"
    fi
    sleep 0.2
  done
  echo "galera: node $n running (pid $launched, port $port, $(cut -f2 <<<"$info") in the cluster)"
}

any_running() {
  local n
  for n in $(seq 1 "$NODES"); do node_pid "$n" >/dev/null && return 0; done
  return 1
}

stop_node() { # clean shutdown, SIGKILL only as a last resort
  local n=$1 pid
  pid=$(node_pid "$n") || return 0
  if ping_node "$n"; then
    timeout 60 mariadb-admin --defaults-file="$(cnf_of "$n")" --protocol=socket --user="$admin_user" \
      --connect-timeout=5 shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  wait_or_kill "$pid" "$WAIT_SECONDS" "galera: node $n (pid $pid)"
  rm -f -- "$(pidfile_of "$n")" "$(sock_of "$n")" "$(sock_of "$n").lock"
  echo "galera: node $n stopped"
}

# ---------------------------------------------------------------- commands

do_start() {
  take_lock
  for n in $(seq 1 "$NODES"); do
    local s
    s=$(sock_of "$n")
    [ "${#s}" -le 107 ] || die "socket path $s is ${#s} bytes; Unix sockets allow 107. Use a shorter --datadir."
  done
  command -v mariadbd >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin"
  command -v mariadbd >/dev/null 2>&1 || die "mariadbd not found; run scripts/install-deps.sh"
  [ -f "$PROVIDER" ] || die "$PROVIDER not found: install galera-4 (scripts/install-deps.sh)"
  for t in mariabackup socat; do command -v "$t" >/dev/null 2>&1 || die "$t not found (the SST method needs it): run scripts/install-deps.sh"; done
  [ -f "$portsfile" ] || echo "base_port=$base_port" >"$portsfile"
  ensure_password_file "$pwfile"

  local n first=""
  if ! any_running; then
    first=$(bootstrap_candidate)
    echo "galera: bootstrapping the cluster from node $first"
    launch_node "$first" new
  fi
  for n in $(seq 1 "$NODES"); do
    if node_pid "$n" >/dev/null; then
      [ "$n" = "$first" ] || echo "galera: node $n already running (pid $(node_pid "$n"))"
      continue
    fi
    launch_node "$n" join
  done
  for n in $(seq 1 "$NODES"); do
    if ping_node "$n"; then
      bootstrap_sql "$n"
      break
    fi
  done
  do_status_lines || true
}

do_stop() {
  [ -d "$dir" ] || { echo "galera: not running"; return 0; }
  take_lock
  # The last node to leave is marked safe_to_bootstrap: stop node 1 last so it restarts first.
  local n
  for n in $(seq "$NODES" -1 1); do stop_node "$n"; done
}

do_status_lines() { # prints the nodes; returns 0 all Synced in one cluster of NODES, 3 all stopped
  local n pid info synced=0 stopped=0 size_ok=0
  for n in $(seq 1 "$NODES"); do
    if ! pid=$(node_pid "$n"); then
      echo "node $n: stopped (port $(sql_port "$n"))"
      stopped=$((stopped + 1))
      continue
    fi
    if info=$(node_wsrep "$n"); then
      IFS=$'\t' read -r state size ready cstatus <<<"$info"
      echo "node $n: running (pid $pid, port $(sql_port "$n"), $state, cluster_size $size, ready $ready, $cstatus)"
      [ "$state" != Synced ] || synced=$((synced + 1))
      [ "$size" != "$NODES" ] || size_ok=$((size_ok + 1))
    else
      echo "node $n: not responding (pid $pid, socket $(sock_of "$n"))"
    fi
  done
  [ "$stopped" != "$NODES" ] || return 3
  [ "$synced" = "$NODES" ] && [ "$size_ok" = "$NODES" ] && return 0
  return 1
}

do_status() {
  local rc=0
  do_status_lines || rc=$?
  exit "$rc"
}

do_env() {
  local n list=""
  for n in $(seq 1 "$NODES"); do list+="${list:+,}127.0.0.1:$(sql_port "$n")"; done
  printf 'export %s=%q\n' \
    MAILPUSH_DB_HOSTS "$list" \
    MAILPUSH_DB_USER mailpush \
    MAILPUSH_DB_PASSWORD_FILE "$pwfile"
}

do_kill_node() {
  local n=$1 pid
  pid=$(node_pid "$n") || die "node $n is not running"
  kill -KILL "$pid"
  local deadline=$((SECONDS + 10))
  while alive "$pid"; do
    [ "$SECONDS" -lt "$deadline" ] || die "node $n (pid $pid) survived SIGKILL"
    sleep 0.1
  done
  echo "galera: node $n killed (pid $pid)"
}

do_restart_node() {
  local n=$1
  take_lock
  if node_pid "$n" >/dev/null; then stop_node "$n"; fi
  any_running || die "no node runs: use 'scripts/galera.sh start$dir_hint' to bootstrap the cluster"
  launch_node "$n" join
}

do_bootstrap_node() {
  local n=$1 info
  node_pid "$n" >/dev/null || die "node $n is not running"
  info=$(node_wsrep "$n") || die "node $n does not answer"
  if [ "$(cut -f4 <<<"$info")" = Primary ]; then
    echo "galera: node $n is already in the primary component ($(cut -f2 <<<"$info") nodes)"
    return 0
  fi
  echo "SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'" | node_sql "$n" ||
    die "pc.bootstrap on node $n failed"
  local deadline=$((SECONDS + 60))
  until info=$(node_wsrep "$n") && [ "$(cut -f1 <<<"$info")" = Synced ] && [ "$(cut -f4 <<<"$info")" = Primary ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "node $n is not Synced in a primary component after 60s"
    sleep 0.2
  done
  echo "galera: node $n is the primary component again ($(cut -f2 <<<"$info") nodes); restart-node the others"
}

case "$command" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env) do_env ;;
  kill-node) do_kill_node "$node_arg" ;;
  stop-node)
    take_lock
    stop_node "$node_arg"
    ;;
  restart-node) do_restart_node "$node_arg" ;;
  bootstrap-node)
    take_lock
    do_bootstrap_node "$node_arg"
    ;;
esac
