#!/usr/bin/env bash
# bench/hostile/slowloris.sh - /healthz latency of a real dispatchd while
# slow clients hold CONNS connections to its metrics endpoint (issue 12).
#
#   bench/hostile/slowloris.sh                    (CONNS=1000 DURATION=60)
#
# Runs `dispatchd reconcile --loop --metrics-listen 127.0.0.1:PORT` against a
# throwaway redis-server (a Temporal URL nobody listens on: the reconcile
# cycles fail, which does not matter to the endpoint). bench/hostile/
# slowloris.py then holds CONNS slow connections (one byte a second, reopened
# at once when closed) while a second process probes /healthz every
# PROBE_INTERVAL s. Prints the prober's and the attacker's JSON, dispatchd's
# peak RSS and fd count (sampled every second), its CPU time, and the load
# average before and after. Loopback only; the EXIT trap stops what this
# script started, by pid.
#
# Env: CONNS (1000), DURATION (60 s), PROBE_INTERVAL (0.2 s),
# DISPATCHD (build/dispatchd).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CONNS=${CONNS:-1000}
DURATION=${DURATION:-60}
PROBE_INTERVAL=${PROBE_INTERVAL:-0.2}
DISPATCHD=${DISPATCHD:-$root/build/dispatchd}
T=$(mktemp -d /tmp/dd-bench-slowloris.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
die() { echo "slowloris.sh: $*" >&2; exit 1; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() { # wait_for SECONDS CMD...: every 50 ms, bounded
  local end=$(( $(date +%s%N) + $1 * 1000000000 )); shift
  while [ "$(date +%s%N)" -lt "$end" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}
[ -x "$DISPATCHD" ] || die "no dispatchd at $DISPATCHD (build first)"
# The attacker needs CONNS + a few fds.
[ "$(ulimit -n)" -ge $((CONNS + 64)) ] || ulimit -n $((CONNS + 64)) || die "ulimit -n too low"

rp=$(free_port)
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$T" \
  --loglevel warning >"$T/redis.log" 2>&1 &
PIDS+=($!)
wait_for 5 redis-cli -p "$rp" ping || die "redis did not start"
dead=$(free_port)
"$DISPATCHD" reconcile --loop --metrics-listen 127.0.0.1:0 --redis-url "redis://127.0.0.1:$rp/0" \
  --temporal-url "http://127.0.0.1:$dead" --server-id bench-slowloris >"$T/dispatchd.out" \
  2>"$T/dispatchd.log" &
dpid=$!
PIDS+=($dpid)
wait_for 10 grep -q event=metrics_listening "$T/dispatchd.log" || die "dispatchd did not listen"
mport=$(sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' "$T/dispatchd.log" | head -1)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$dpid/stat"; }
echo "machine: nproc=$(nproc) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "dispatchd: $DISPATCHD; checkout $(git -C "$root" describe --always --dirty)"
echo "start: $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "before attack: rss_kb=$(awk '/VmRSS/{print $2}' /proc/$dpid/status) fds=$(ls /proc/$dpid/fd | wc -l)"
ticks0=$(cpu_ticks)

python3 "$here/slowloris.py" attack --port "$mport" --conns "$CONNS" --duration "$DURATION" \
  >"$T/attack.json" &
apid=$!
PIDS+=($apid)
sleep 2 # let the attacker reach CONNS before probing
python3 "$here/slowloris.py" probe --port "$mport" --duration $((DURATION - 4)) \
  --interval "$PROBE_INTERVAL" >"$T/probe.json" &
ppid_=$!
PIDS+=($ppid_)
max_rss=0 max_fds=0
while kill -0 "$apid" 2>/dev/null; do # bounded by the attacker's DURATION
  rss=$(awk '/VmRSS/{print $2}' "/proc/$dpid/status")
  fds=$(ls "/proc/$dpid/fd" | wc -l)
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
  [ "$fds" -gt "$max_fds" ] && max_fds=$fds
  sleep 1
done
wait "$ppid_" || die "prober failed"
wait "$apid" || die "attacker failed"
ticks1=$(cpu_ticks)
kill -0 "$dpid" 2>/dev/null || die "dispatchd died during the attack"
echo "end: $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dispatchd during attack: max_rss_kb=$max_rss max_fds=$max_fds cpu_s=$(( (ticks1 - ticks0) / $(getconf CLK_TCK) ))"
echo "after attack: rss_kb=$(awk '/VmRSS/{print $2}' /proc/$dpid/status) fds=$(ls /proc/$dpid/fd | wc -l)"
echo "probe: $(cat "$T/probe.json")"
echo "attack: $(cat "$T/attack.json")"
echo "evictions logged: $(grep -c event=metrics_http_connection_evicted "$T/dispatchd.log" || true)"
grep -m3 event=metrics_http_connection_evicted "$T/dispatchd.log" || true
