#!/usr/bin/env bash
# bench/fleet/smoke.sh - the fleet chaos bench cut down to a CI smoke test
# (ctest fleet_smoke, bounded to 120 s): 3 hosts, 3 dispatchers, 1 worker;
# a graceful rolling restart of every host, 2 kill -9 of the owner, two frozen
# owners (SIGSTOP past the threshold, then SIGCONT: dispatchd alone, then the whole host),
# one worker kill -9. The independent checker must pass, latency targets
# included (failover and stale cleanup <= threshold + 2 s, handovers < 1 s;
# that slack stretched by 1 / (1 - CPU pressure over the run), at most x10: a ctest on a
# machine whose CPUs other work keeps busy measures the machine, not us).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QUIET_S=${QUIET_S:-6} N=${N:-3} M=${M:-3} W=${W:-1} WORKER_KILLS=${WORKER_KILLS:-1}
export ROLLING_ROUNDS=${ROLLING_ROUNDS:-1} KILLS=${KILLS:-2} STOPS=${STOPS:-2} STOP_SCOPE=${STOP_SCOPE:-both}
export REDIS_RESTARTS=${REDIS_RESTARTS:-0} TEMPORAL_RESTARTS=${TEMPORAL_RESTARTS:-0} ETCD_KILLS=0 IDLE_S=0
export ENFORCE_TARGETS=1 LATENCY_FACTOR=${LATENCY_FACTOR:-auto} MAX_SECONDS=${MAX_SECONDS:-120} SETTLE_S=${SETTLE_S:-20}
exec bash "$here/run.sh"
