# Loopback ports for the tests and benchmarks that start servers which cannot bind port 0 and
# report it (MariaDB, Galera, apns-sim restarted on the same port). Sourced, not run.
# shellcheck shell=bash
#
# reserve_port VAR [OFFSET...]: sets VAR to a port P such that P+OFFSET (default: 0 only) are
# all free, and holds them until this shell exits. Call it without $(...): a subshell would drop
# the reservation as soon as it ends.
#
# A port is taken only
#  - below the kernel's ephemeral range (32768 and up, see ip_local_port_range), so no outgoing
#    connection and no bind to port 0 anywhere on the machine can take it after the check; and
#  - with an exclusive lock on $MAILPUSH_PORT_LOCKS/<port> held, the same lock that the C++ test
#    support (tests/support/test_env.cpp, free_tcp_port) takes, so two tests running at once never
#    get the same port. The lock belongs to an open file of this shell (and of the children that
#    inherit it) and ends with them: a killed test leaves nothing behind that blocks a port.

MAILPUSH_PORT_LOCKS=${MAILPUSH_PORT_LOCKS:-/tmp/mailpush-ports}
MAILPUSH_PORT_FIRST=20000
MAILPUSH_PORT_LAST=32767

# Something has the port open on this machine (listening, connected or in TIME_WAIT).
port_busy() {
  [ -n "$(ss -Hatn "sport = :$1" 2>/dev/null)" ]
}

reserve_port() {
  local _rp_var=$1 _rp_try _rp_p _rp_q _rp_fd _rp_ok
  shift
  local _rp_offsets=("$@")
  [ ${#_rp_offsets[@]} -gt 0 ] || _rp_offsets=(0)
  local _rp_span=0 _rp_o
  for _rp_o in "${_rp_offsets[@]}"; do [ "$_rp_o" -le "$_rp_span" ] || _rp_span=$_rp_o; done
  mkdir -p "$MAILPUSH_PORT_LOCKS" && chmod 1777 "$MAILPUSH_PORT_LOCKS" 2>/dev/null
  for _rp_try in $(seq 1 200); do
    _rp_p=$((MAILPUSH_PORT_FIRST + RANDOM % (MAILPUSH_PORT_LAST - MAILPUSH_PORT_FIRST - _rp_span)))
    local _rp_held=()
    _rp_ok=1
    for _rp_o in "${_rp_offsets[@]}"; do
      _rp_q=$((_rp_p + _rp_o))
      exec {_rp_fd}>>"$MAILPUSH_PORT_LOCKS/$_rp_q" || { _rp_ok=0; break; }
      if ! flock -n "$_rp_fd" || port_busy "$_rp_q"; then
        exec {_rp_fd}>&-
        _rp_ok=0
        break
      fi
      _rp_held+=("$_rp_fd")
    done
    if [ "$_rp_ok" = 1 ]; then
      printf -v "$_rp_var" '%s' "$_rp_p"
      return 0
    fi
    for _rp_fd in "${_rp_held[@]}"; do exec {_rp_fd}>&-; done
  done
  echo "reserve_port: no free port after $_rp_try attempts in $MAILPUSH_PORT_FIRST-$MAILPUSH_PORT_LAST" >&2
  return 1
}
