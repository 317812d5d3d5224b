# Helpers shared by scripts/mariadb.sh and scripts/galera.sh (sourced, not run): is a pid a live
# mariadbd, who listens on a port, the password file of the private servers.
# shellcheck shell=bash

# alive PID: the process exists and is not a zombie.
alive() {
  local pid=$1 stat state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
  state=${stat##*) }
  state=${state%% *}
  [ "$state" != Z ] && [ "$state" != X ]
}

# is_mariadbd PID: alive and a MariaDB server.
is_mariadbd() {
  local comm
  alive "$1" || return 1
  read -r comm 2>/dev/null <"/proc/$1/comm" || return 1
  [ "$comm" = mariadbd ] || [ "$comm" = mysqld ]
}

# port_in_use PORT: true when something listens on 127.0.0.1:PORT; prints "users:(...)" from ss
# when it can tell who.
port_in_use() {
  local p=$1 out
  if command -v ss >/dev/null 2>&1; then
    out=$(ss -Hltnp "sport = :$p" 2>/dev/null || true)
    if [ -n "$out" ]; then
      echo "$out" | sed -n 's/.*users:(\(.*\)).*/\1/p' | head -n 1
      return 0
    fi
    return 1
  fi
  if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
    echo ""
    return 0
  fi
  return 1
}

# ensure_password_file FILE: FILE holds a random password (made when missing or blank), mode 0600.
ensure_password_file() {
  local pwfile=$1 content=""
  if [ -f "$pwfile" ]; then
    content=$(<"$pwfile")
  fi
  if [ -z "${content//[[:space:]]/}" ]; then
    local tmp="$pwfile.tmp.$$"
    (
      umask 077
      openssl rand -hex 24 >"$tmp"
    )
    mv -f -- "$tmp" "$pwfile"
  fi
  chmod 600 -- "$pwfile"
}

# wait_or_kill PID SECONDS WHAT: waits up to SECONDS for PID to exit, then SIGKILLs it and says so
# on stderr ("WHAT still alive after Ns; sending SIGKILL").
wait_or_kill() {
  local pid=$1 seconds=$2 what=$3
  local deadline=$((SECONDS + seconds))
  while alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$what still alive after ${seconds}s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
}
