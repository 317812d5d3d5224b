# shellcheck shell=bash
# What the benchmark scripts share: progress lines, the time budget, CPU accounting from /proc,
# and stopping a child process. Source it after setting BENCH_NAME and BUDGET_SECONDS.
# The helpers below read the sourcing script's tmp, tls, root and build_dir.
# shellcheck disable=SC2154

deadline=$((SECONDS + BUDGET_SECONDS))
say() { printf '[%s %3ds] %s\n' "$BENCH_NAME" "$SECONDS" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
# Seconds a step may take: its own cap, but never past the budget.
allow() {
  local left=$((deadline - SECONDS))
  [ "$left" -gt 5 ] || die "the ${BUDGET_SECONDS}s budget is spent"
  [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}

clk_tck=$(getconf CLK_TCK)
ticks() { # summed utime+stime (clock ticks) of the given pids; the name may hold spaces
  local total=0 t pid
  for pid in "$@"; do
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
machine_busy() { # busy ticks of the whole machine (all cores, everything but idle and iowait)
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
ticks_to_s() { awk -v t="$1" -v hz="$clk_tck" 'BEGIN{printf "%.2f", t / hz}'; }

# stop_process PID SIGNAL TENTHS: the signal, up to TENTHS tenths of a second to exit, then SIGKILL.
stop_process() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill "-$2" "$1" 2>/dev/null
  for _ in $(seq 1 "$3"); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

# Ports: reserve_port VAR (scripts/lib/ports.sh), held until the benchmark exits.
# shellcheck source=scripts/lib/ports.sh
source "$root/scripts/lib/ports.sh"
bench_port() { reserve_port "$1" || die "no free port"; }

wait_https() { # URL SECONDS: until URL answers 2xx over TLS checked with $tls/ca.crt
  local until=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$until" ]; do
    if curl -fsS --max-time 2 --cacert "$tls/ca.crt" "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# ensure_nginx: sets nginx_bin, installing Debian's nginx-light (the reference server) if missing.
ensure_nginx() {
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    say "installing Debian's nginx-light (the reference server)"
    export DEBIAN_FRONTEND=noninteractive
    timeout "$(allow 180)" apt-get install -y -qq nginx-light >/dev/null 2>&1 ||
      { timeout "$(allow 120)" apt-get update -qq >/dev/null 2>&1 &&
        timeout "$(allow 180)" apt-get install -y -qq nginx-light >/dev/null 2>&1; } ||
      die "cannot install nginx-light"
  fi
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
}
nginx_version() { "$nginx_bin" -v 2>&1 | sed 's/.*: //'; }
# shellcheck disable=SC2046 # one word per pid
nginx_pids() { echo "$nginx_pid" $(ps -o pid= --ppid "$nginx_pid" 2>/dev/null); }

# start_reference_nginx PORT LOCATION: a private nginx in $tmp/nginx (own config, pid and logs,
# daemon off, 1 worker, 127.0.0.1:PORT only, the certificate in $tls) whose one location holds
# LOCATION (nginx directives); sets nginx_pid and waits until it answers.
start_reference_nginx() {
  local port=$1 location=$2 user=""
  [ "$(id -u)" -ne 0 ] || user="user root;"
  mkdir -p "$tmp/nginx"
  cat >"$tmp/nginx/nginx.conf" <<CONF
# The reference: a minimal static-reply HTTPS server (written by bench/lib.sh).
daemon off;
$user
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  default_type "text/xml; charset=utf-8";
  keepalive_requests 100000000;
  keepalive_timeout 65s;
  client_body_temp_path $tmp/nginx/client_body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:$port ssl;
    server_name localhost;
    ssl_certificate $tls/listener.crt;
    ssl_certificate_key $tls/listener.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 1h;
    location / { $location }
  }
}
CONF
  say "starting the reference nginx ($(nginx_version), 1 worker) on 127.0.0.1:$port"
  "$nginx_bin" -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" </dev/null \
    >"$tmp/nginx/stdout.log" 2>&1 &
  nginx_pid=$!
  wait_https "https://localhost:$port/" "$(allow 15)" ||
    { cat "$tmp/nginx/error.log" "$tmp/nginx/stdout.log" >&2; die "nginx did not start"; }
}

# build_release TARGET...: builds the targets with the release preset in $build_dir (the preset's
# own folder, or another one given with --build-dir); logs in $tmp.
build_release() {
  say "building the release preset ($*) in $build_dir"
  local where=(--preset release) build=(--build --preset release)
  if [ "$build_dir" != "$root/build/release" ]; then
    where=(--preset release -B "$build_dir")
    build=(--build "$build_dir")
  fi
  timeout "$(allow 60)" cmake "${where[@]}" >"$tmp/cmake-configure.log" 2>&1 ||
    { tail -n 30 "$tmp/cmake-configure.log" >&2; die "cmake ${where[*]}"; }
  timeout "$(allow 480)" cmake "${build[@]}" --target "$@" >"$tmp/cmake-build.log" 2>&1 ||
    { grep -m 20 -A 5 'error' "$tmp/cmake-build.log" >&2; die "build"; }
}
