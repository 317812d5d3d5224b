#!/usr/bin/env bash
# A private MariaDB server for mailpush development and tests: no system service, no sudo.
#
#   scripts/mariadb.sh start|stop|status|restart|env|init [--datadir DIR] [--port N] [--database NAME]...
#
# DIR (default <repo>/var/dev/mariadb) holds data/, my.cnf, mysqld.sock, mariadbd.pid,
# error.log, mailpush.password (mode 0600) and .lock. The server listens on 127.0.0.1 only.
# `start` creates the user 'mailpush' (@127.0.0.1 and @localhost) with the password from
# mailpush.password and ALL PRIVILEGES on `mailpush%`.*; each --database NAME is created.
# `eval "$(scripts/mariadb.sh env)"` exports MAILPUSH_DB_* (the password file's path, never
# the password itself).
set -euo pipefail

readonly DEFAULT_PORT=3307
readonly WAIT_SECONDS=60 # for the server to answer after launch, and to exit on stop
readonly LOCK_SECONDS=180

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd -- "$script_dir/.." && pwd -P)
# shellcheck source=scripts/lib/mariadb-common.sh
source "$script_dir/lib/mariadb-common.sh"

# Keep libmariadb's environment defaults from redirecting our connections.
unset MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MYSQL_PWD MYSQL_HISTFILE

usage() {
  cat <<EOF
usage: scripts/mariadb.sh start|stop|status|restart|env|init [--datadir DIR] [--port N] [--database NAME]...

  start     initialise (first time), launch and bootstrap the private server; idempotent
  stop      shut the server down (SIGKILL only as a last resort)
  restart   stop, then start
  status    print the state; exit 0 running, 3 stopped, 1 not responding
  env       print export lines for MAILPUSH_DB_HOST/PORT/SOCKET/USER/PASSWORD_FILE
  init      initialise DIR's data/ (the system schema) without starting a server: a template

  --datadir DIR     state folder (default: <repo>/var/dev/mariadb)
  --port N          TCP port on 127.0.0.1 (default: $DEFAULT_PORT; env: the configured one)
  --database NAME   create this database on start (repeatable; mailpush* names are granted)
  --max-prepared-stmt-count N
                    the server's limit on prepared statements of all clients together
                    (default: the server's, 16382); the test server runs with a low one so
                    that a statement leak fails the suite at once
  --template DIR    on the first start, copy DIR/data (made by 'init' and never started)
                    instead of running mariadb-install-db: the test harness starts dozens of
                    private servers, and the copy takes a tenth of the time
EOF
}

die() {
  echo "mariadb: $*" >&2
  exit 1
}

usage_error() {
  echo "mariadb: $*" >&2
  usage >&2
  exit 2
}

# ---------------------------------------------------------------- arguments

command=""
datadir_arg=""
port=""
databases=()
max_prepared=""
template=""

need_value() { # option, remaining-argument-count
  [ "$2" -ge 2 ] || usage_error "$1 needs a value"
}

while [ $# -gt 0 ]; do
  case "$1" in
    start | stop | status | restart | env | init)
      [ -z "$command" ] || usage_error "only one command, got '$command' and '$1'"
      command=$1
      ;;
    --datadir) need_value "$1" $# && datadir_arg=$2 && shift ;;
    --datadir=*) datadir_arg=${1#*=} ;;
    --port) need_value "$1" $# && port=$2 && shift ;;
    --port=*) port=${1#*=} ;;
    --database) need_value "$1" $# && databases+=("$2") && shift ;;
    --database=*) databases+=("${1#*=}") ;;
    --max-prepared-stmt-count) need_value "$1" $# && max_prepared=$2 && shift ;;
    --max-prepared-stmt-count=*) max_prepared=${1#*=} ;;
    --template) need_value "$1" $# && template=$2 && shift ;;
    --template=*) template=${1#*=} ;;
    -h | --help | help)
      usage
      exit 0
      ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
  shift
done

[ -n "$command" ] || usage_error "no command given"

if [ -n "$max_prepared" ] && ! [[ "$max_prepared" =~ ^[0-9]{1,7}$ ]]; then
  usage_error "--max-prepared-stmt-count must be a number from 0 to 1048576, got '$max_prepared'"
fi

if [ -n "$port" ]; then
  if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$((10#$port))" -lt 1 ] || [ "$((10#$port))" -gt 65535 ]; then
    usage_error "--port must be a number from 1 to 65535, got '$port'"
  fi
  port=$((10#$port))
fi

if [ ${#databases[@]} -gt 0 ]; then
  for db in "${databases[@]}"; do
    [[ "$db" =~ ^[A-Za-z0-9_$]{1,64}$ ]] ||
      usage_error "--database '$db': use 1-64 letters, digits, _ or \$"
  done
fi

dir_hint="" # for messages suggesting another command on the same DIR
if [ -n "$datadir_arg" ]; then
  dir=$(realpath -m -- "$datadir_arg")
  dir_hint=" --datadir $dir"
else
  dir="$repo/var/dev/mariadb"
fi

data="$dir/data"
cnf="$dir/my.cnf"
sock="$dir/mysqld.sock"
pidfile="$dir/mariadbd.pid"
log="$dir/error.log"
pwfile="$dir/mailpush.password"
lockfile="$dir/.lock"

if [ "$(id -u)" -eq 0 ]; then
  run_user=root
else
  run_user=$(id -un)
fi
# mariadb-install-db --auth-root-authentication-method=socket gives root@localhost and the
# --user account unix_socket authentication, so the OS user connects as itself over the socket.
admin_user=$run_user

# ---------------------------------------------------------------- helpers

# True when the process exists and is not a zombie (PID 1 here may not reap orphans).


# A mariadbd launched by this script for this DIR, found by its command line.
scan_for_server() {
  local p pid
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

# The pid of this DIR's server (pid file first, then a scan), or fail. Removes a stale pid file.
server_pid() {
  local pid=""
  if [ -f "$pidfile" ]; then
    read -r pid 2>/dev/null <"$pidfile" || pid=""
    if is_mariadbd "$pid"; then
      echo "$pid"
      return 0
    fi
    rm -f -- "$pidfile"
  fi
  scan_for_server
}

ping_server() {
  [ -S "$sock" ] && [ -f "$cnf" ] || return 1
  mariadb-admin --defaults-file="$cnf" --protocol=socket --user="$admin_user" \
    --connect-timeout=2 ping >/dev/null 2>&1
}

# SQL from stdin, as the admin user over the socket; nothing on the command line but options.
admin_sql() {
  mariadb --defaults-file="$cnf" --protocol=socket --user="$admin_user" \
    --connect-timeout=5 --batch --skip-column-names
}

configured_port() {
  local p=""
  if [ -f "$cnf" ]; then
    p=$(sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$cnf" | head -n 1)
  fi
  echo "${p:-$DEFAULT_PORT}"
}

# Prints who listens on the port (ss output) when it is taken; fails when it is free.

locked=0
take_lock() { # held until the script exits; restart keeps it across stop and start
  [ "$locked" = 0 ] || return 0
  mkdir -p -- "$dir"
  exec 9>>"$lockfile"
  flock -w "$LOCK_SECONDS" 9 || die "another start/stop holds $lockfile for over ${LOCK_SECONDS}s"
  locked=1
}

check_socket_length() {
  # sun_path is 108 bytes including the terminating NUL.
  [ "${#sock}" -le 107 ] ||
    die "socket path $sock is ${#sock} bytes; Unix sockets allow 107. Use a shorter --datadir."
}

write_cnf() {
  local tmp="$cnf.tmp.$$"
  mkdir -p -- "$dir/tmp"
  {
    echo "# Written by scripts/mariadb.sh on every start; edits are overwritten."
    echo "[mariadbd]"
    echo "datadir=$data"
    echo "tmpdir=$dir/tmp"
    echo "socket=$sock"
    echo "port=$port"
    echo "bind-address=127.0.0.1"
    echo "pid-file=$pidfile"
    echo "log-error=$log"
    echo "skip-name-resolve"
    echo "character-set-server=utf8mb4"
    echo "collation-server=utf8mb4_unicode_ci"
    echo "innodb_buffer_pool_size=256M"
    echo "innodb_flush_log_at_trx_commit=1"
    echo "skip-log-bin"
    echo "max_connections=500"
    [ -z "$max_prepared" ] || echo "max_prepared_stmt_count=$max_prepared"
    [ "$run_user" != root ] || echo "user=root"
    echo
    echo "[client]"
    echo "socket=$sock"
    echo "port=$port"
  } >"$tmp"
  mv -f -- "$tmp" "$cnf"
}

init_datadir() {
  if [ -d "$data/mysql" ]; then
    return 0
  fi
  if [ -d "$data" ] && [ -n "$(ls -A -- "$data")" ]; then
    die "$data exists but holds no mysql/ system schema; move it away or delete it"
  fi
  local tmp="$dir/data.init"
  rm -rf -- "$tmp"
  mkdir -p -- "$tmp"
  if [ -n "$template" ]; then
    [ -d "$template/data/mysql" ] || die "--template $template holds no data/mysql; make it with 'init'"
    cp -a -- "$template/data/." "$tmp/" || {
      rm -rf -- "$tmp"
      die "copying the template $template/data failed"
    }
    [ ! -d "$data" ] || rmdir -- "$data"
    mv -- "$tmp" "$data"
    return 0
  fi
  echo "mariadb: initialising $data" >&2
  # A private tmpdir: servers sharing /tmp delete each other's temporary tables at start-up, so
  # two initialisations at once (parallel tests) would fail.
  mkdir -p -- "$dir/tmp"
  if ! mariadb-install-db --no-defaults --datadir="$tmp" --user="$run_user" --tmpdir="$dir/tmp" \
    --auth-root-authentication-method=socket --skip-test-db >"$dir/install-db.log" 2>&1; then
    tail -n 30 -- "$dir/install-db.log" >&2 || true
    rm -rf -- "$tmp"
    die "mariadb-install-db failed (log: $dir/install-db.log)"
  fi
  rm -f -- "$dir/install-db.log"
  [ ! -d "$data" ] || rmdir -- "$data"
  mv -- "$tmp" "$data"
}


# Creates/heals the mailpush accounts and the requested databases.
bootstrap() {
  local pw q sql host db
  pw=$(<"$pwfile")
  pw=${pw%$'\r'}
  # SQL string literal: escape backslash and quote (the generated password is hex anyway).
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
      case "$db" in
        mailpush*) ;;
        *) echo "mariadb: note: database '$db' is outside \`mailpush%\`; user mailpush has no rights on it" >&2 ;;
      esac
    done
  fi
  # printf is a builtin: the password reaches the client on a pipe, never on an argv.
  printf '%s' "$sql" | admin_sql || die "bootstrap SQL failed (see above)"
}

print_running_line() {
  local pid=$1 actual
  actual=$(echo 'SELECT @@port;' | admin_sql 2>/dev/null || true)
  echo "mariadb: running (pid $pid, port ${actual:-$(configured_port)}, socket $sock, datadir $dir)"
}

# ---------------------------------------------------------------- commands

do_start() {
  take_lock
  check_socket_length
  local port_given=$port
  [ -n "$port" ] || port=$DEFAULT_PORT

  local pid
  if pid=$(server_pid); then
    if ping_server; then
      local running_port
      running_port=$(echo 'SELECT @@port;' | admin_sql 2>/dev/null || configured_port)
      echo "mariadb: already running (pid $pid, port $running_port, datadir $dir)"
      if [ -n "$port_given" ] && [ "$running_port" != "$port" ]; then
        echo "mariadb: note: --port $port ignored while running; use restart to change the port" >&2
      fi
      ensure_password_file "$pwfile"
      bootstrap
      return 0
    fi
    die "mariadbd pid $pid (datadir $dir) is alive but does not answer on $sock; run 'scripts/mariadb.sh stop$dir_hint' first"
  fi

  local holder
  if holder=$(port_in_use "$port"); then
    die "port $port on 127.0.0.1 is already in use${holder:+ by $holder}; choose another with --port N"
  fi

  command -v mariadbd >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin"
  command -v mariadbd >/dev/null 2>&1 || die "mariadbd not found; run scripts/install-deps.sh"

  init_datadir
  write_cnf
  rm -f -- "$pidfile" "$sock" "$sock.lock"
  : >>"$log"

  # Detached: own session, no terminal, stdio away from our caller, lock fd closed.
  setsid mariadbd --defaults-file="$cnf" </dev/null >>"$log" 2>&1 9>&- &
  local launched=$!

  local deadline=$((SECONDS + WAIT_SECONDS))
  until ping_server; do
    if ! alive "$launched"; then
      wait "$launched" 2>/dev/null || true
      echo "mariadb: mariadbd exited during startup; last lines of $log:" >&2
      tail -n 30 -- "$log" >&2 || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "mariadb: no answer on $sock after ${WAIT_SECONDS}s; last lines of $log:" >&2
      tail -n 30 -- "$log" >&2 || true
      echo "mariadb: mariadbd pid $launched is left running (it may still be recovering); 'scripts/mariadb.sh stop$dir_hint' ends it" >&2
      exit 1
    fi
    sleep 0.2
  done

  ensure_password_file "$pwfile"
  bootstrap
  pid=$(server_pid || echo "$launched")
  print_running_line "$pid"
}

do_stop() {
  if [ ! -d "$dir" ]; then
    echo "mariadb: not running"
    return 0
  fi
  take_lock
  local pid
  if ! pid=$(server_pid); then
    rm -f -- "$pidfile"
    echo "mariadb: not running"
    return 0
  fi

  if ping_server; then
    timeout 30 mariadb-admin --defaults-file="$cnf" --protocol=socket --user="$admin_user" \
      --connect-timeout=5 shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi

  wait_or_kill "$pid" "$WAIT_SECONDS" "mariadb: pid $pid"
  alive "$pid" && die "pid $pid survived SIGKILL"
  rm -f -- "$pidfile" "$sock" "$sock.lock"
  echo "mariadb: stopped"
}

do_status() {
  local pid
  if ! pid=$(server_pid); then
    echo "mariadb: stopped (datadir $dir)"
    exit 3
  fi
  local info
  if ping_server && info=$(echo 'SELECT @@port, @@version;' | admin_sql 2>/dev/null) && [ -n "$info" ]; then
    local p v
    IFS=$'\t' read -r p v <<<"$info"
    echo "mariadb: running (pid $pid, port $p, version $v)"
    exit 0
  fi
  echo "mariadb: not responding (pid $pid, socket $sock, datadir $dir)"
  exit 1
}

do_env() {
  [ -n "$port" ] || port=$(configured_port)
  printf 'export %s=%q\n' \
    MAILPUSH_DB_HOST 127.0.0.1 \
    MAILPUSH_DB_PORT "$port" \
    MAILPUSH_DB_SOCKET "$sock" \
    MAILPUSH_DB_USER mailpush \
    MAILPUSH_DB_PASSWORD_FILE "$pwfile"
}

case "$command" in
  start) do_start ;;
  stop) do_stop ;;
  restart)
    do_stop
    do_start
    ;;
  status) do_status ;;
  env) do_env ;;
  init)
    take_lock
    init_datadir
    ;;
esac
