# shellcheck shell=bash
# What the benchmark scripts share: progress lines, the time budget, CPU accounting from /proc,
# and stopping a child process. Source it after setting BENCH_NAME and BUDGET_SECONDS.

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
