# The soak benchmark's pass rule (bench/soak.sh; the fixtures in tests/bench/ check it): one JSON
# object from the run's files, whose `passed` is the verdict and `failed` names what failed.
#
# Inputs (jq --slurpfile / --argjson): $samples (samples.jsonl), $events (the timeline),
# $churn (the registration changes), $errors (mailpushd's "level":"error" lines with at_ms),
# $load and $cap (soak_load's result lines); $minutes, $duration, $warmup (s), $mailboxes,
# $registrations, $rate, $capacity, $churn_lost, $drained, $sighup, $cores.
#
# Resources: the median of the samples in the last third of the run after the warm-up may exceed
# the first third's by max(10 %, floor) (the median: one slow 10 s on a shared machine is not a
# trend, a leak moves every sample). The floors keep a tiny value's noise (5 vs 6 fds) from failing
# the run: 16 for counts (fds, threads, prepared statements, connections), 4 MiB of RSS (8 MiB in
# runs under 10 minutes, whose first third is still warming up: the registration cache, the
# database connections' buffers and the first TLS sessions are filling while it is measured, so a
# 3-minute run catches only gross leaks, over ~2.7 MiB a minute; the 10- and 30-minute runs are
# the leak judges; likewise 32 prepared statements instead of 16: the statement caches of the
# database connections fill over the first minutes, one statement per batch shape, and fill again
# after the MariaDB restart — a leak of one per batch, the kind that stopped delivery once, is
# thousands in 3 minutes, and unit_store_statement_budget catches it exactly), one
# second of the load's callbacks ($rate, 200 at least) of queued rows and 2 s of outbox age (the
# queue's noise at 60 % of capacity), 50 ms of p99. A resource
# that shrinks passes. Samples during an idle burst (and 10 s after it) and in the MariaDB
# restart's window (from 2 s before to 30 s after) do not count: those are the events, not the
# steady state; what they leave behind shows in the last third.

def r(d): if . == null then null else . * d | round / d end;
def median: if length == 0 then null else sort | if length % 2 == 1 then .[length / 2 | floor]
  else (.[length / 2 - 1] + .[length / 2]) / 2 end end;

{rss_kib: (if $minutes < 10 then 8192 else 4096 end), fds: 16, threads: 16,
 prepared_stmts: (if $minutes < 10 then 32 else 16 end), db_connections: 16,
 outbox_queued: ([$rate, 200] | max), outbox_oldest_s: 2, callback_p99_ms: 50} as $floors
| [$events[] | select(.event == "mariadb_restart")] as $restarts
| [$events[] | select(.event == "idle_burst")] as $bursts
| def in_restart($t): any($restarts[]; $t >= .start_s - 2 and $t <= .end_s + 30);
  def in_burst($t): any($bursts[]; $t >= .start_s and $t <= .end_s + 10);
  (($duration - $warmup) / 3) as $third
| [$samples[] | select(.t_s >= $warmup and (in_burst(.t_s) | not) and (in_restart(.t_s) | not))] as $steady
| [$steady[] | select(.t_s < $warmup + $third)] as $first
| [$steady[] | select(.t_s >= $duration - $third)] as $last
| ($floors | to_entries | map(.key as $k | .value as $f
    | ([$first[] | .[$k] | select(. != null)] | median) as $a
    | ([$last[] | .[$k] | select(. != null)] | median) as $b
    | (if $a == null then null else $a + ([$a * 0.1, $f] | max) end) as $limit
    | {key: $k, value: {first: ($a | r(10)), last: ($b | r(10)), limit: ($limit | r(10)),
                        samples: [($first | length), ($last | length)],
                        ok: ($a != null and $b != null and $b <= $limit)}}) | from_entries) as $resources
# Delivery: apns-sim accepted something in every sample interval after the warm-up, but in the restart.
| [range(1; $samples | length) as $i | $samples[$i] as $s | $samples[$i - 1] as $p
   | select($s.t_s >= $warmup and (in_restart($s.t_s) | not)
            and $s.sim_accepted != null and $p.sim_accepted != null
            and $s.sim_accepted <= $p.sim_accepted) | $s.t_s] as $stopped
| [$errors[] | . as $e | select(any($restarts[]; $e.at_ms >= .start_ms - 2000 and $e.at_ms <= .end_ms + 30000))] as $explained
| [$errors[] | . as $e | select(any($restarts[]; $e.at_ms >= .start_ms - 2000 and $e.at_ms <= .end_ms + 30000) | not)
   | del(.at_ms) | tojson] as $unexplained
# Registration changes refused while MariaDB restarts are expected; other refusals are failures.
| [$churn[] | select(.ok | not) | select(in_restart(.t_s) | not)] as $churn_failed
| ($load[0].check // {}) as $check
| ([3, 1, 1, $sighup] | add) as $expected_events
| {benchmark: "soak", minutes: $minutes, cores: $cores, mailboxes: $mailboxes,
   registrations: $registrations, capacity_per_s: $capacity, rate_per_s: $rate,
   status_share: $load[0].status_share, warmup_s: $warmup,
   load: ($load[0] | {requests, ok, badges_ok, heartbeats_ok, unsubscribe, http_errors, errors, skipped,
                      ok_rate, p50_ms, p99_ms, max_ms, sim_received}),
   capacity_run: ($cap[0] | {ok_rate, p99_ms, errors}),
   samples: ($samples | length), samples_compared: [($first | length), ($last | length)],
   resources: $resources,
   events: $events,
   delivery_stopped_samples: $stopped, drained: $drained,
   lost_devices: ($check.lost_devices // null), devices_checked: ($check.devices_checked // null),
   unsent_badges: ($check.unsent_badges // null), sim_dropped: ($load[0].sim_dropped // null),
   churn: {ok: ([$churn[] | select(.ok)] | length), failed: ($churn_failed | length),
           refused_in_restart: ([$churn[] | select((.ok | not) and in_restart(.t_s))] | length),
           by_op: ([$churn[] | select(.ok) | .op] | group_by(.) | map({key: .[0], value: length}) | from_entries),
           lost: $churn_lost, failures: [$churn_failed[:5][] | .detail]},
   errors: {total: ($errors | length), explained: ($explained | length), unexplained: $unexplained}}
| .failed = ([($resources | to_entries[] | select(.value.ok | not) | "\(.key) grew"),
              (if (.lost_devices // 1) > 0 then "badges lost (\(.lost_devices) devices)" else empty end),
              (if $churn_lost > 0 then "churned tokens lost (\($churn_lost))" else empty end),
              (if (.sim_dropped // 1) > 0 then "apns-sim records missed" else empty end),
              (if (.unsent_badges // 0) > 0 then "badges never sent arrived" else empty end),
              (if ($unexplained | length) > 0 then "unexplained error lines" else empty end),
              (if ($stopped | length) > 0 then "delivery stopped" else empty end),
              ($events[] | select(.ok | not) | "\(.event) failed"),
              (if ($events | length) < $expected_events then "timeline incomplete" else empty end),
              (if $drained | not then "outbox not drained" else empty end),
              (if ($churn_failed | length) > 0 then "registration changes failed" else empty end)])
| .passed = (.failed | length == 0)
