#!/usr/bin/env bash
# Crash -> cleanup and crash -> failover latency, on loopback.
#
# Cleanup: M dispatchers, each owned by its own `dispatchd run` host; one more
# host runs only the reconciler (`dispatchd reconcile --loop`). All owners are
# killed with -9 at once; for each dispatcher we time kill -> its run
# terminated (Temporal) and its record deleted (Redis), polled every 20 ms.
# Failover: M dispatchers, each with an owner and a standby host; the owners
# are killed with -9 at once; we time kill -> the standby's record claimed.
# Repeated ROUNDS times. Defaults: heartbeat 5s, threshold 15s (dispatchd's).
#   HB=5s THRESHOLD=15s M=10 ROUNDS=3 bench/cleanup/run.sh
# Output: CSV lines "kind,round,dispatcher,ms" on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
D=${DISPATCHD:-$root/build/dispatchd}
HB=${HB:-5s}; THRESHOLD=${THRESHOLD:-15s}; M=${M:-10}; ROUNDS=${ROUNDS:-3}
LIMIT_S=${LIMIT_S:-120}   # bound of every wait
T=$(mktemp -d /tmp/dd-bench-cleanup.XXXXXX)
PIDS=()
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1 || true
  bash "$root/tests/fixtures/temporal.sh" stop "$T/temporal" >/dev/null 2>&1 || true
  rm -rf "$T"
}
RP=$(free_port)
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --dir "$T" \
  --logfile "$T/redis.log" >/dev/null
DD_SOURCE_DIR=$root bash "$root/tests/fixtures/temporal.sh" start "$T/temporal" >/dev/null
U=$(cat "$T/temporal/url")
R="redis://127.0.0.1:$RP/0"
COMMON=(--temporal-url "$U" --redis-url "$R" --heartbeat-interval "$HB" --stale-threshold "$THRESHOLD"
        --metrics-listen off)
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
host() { # host NAME DISPATCHER... : a dispatchd run host
  local name=$1; shift
  local args=(); for d in "$@"; do args+=(--dispatcher "$d"); done
  "$D" run "${args[@]}" "${COMMON[@]}" --server-id "$name" 2>"$T/$name.log" &
  PIDS+=($!); echo $! >"$T/$name.pid"
}
rec() { redis-cli -p "$RP" hget "dd:hb:{dispatcher-$1}" "$2"; }
run_status() { curl -fsS "$U/api/v1/namespaces/default/workflows/dispatcher-$1?execution.runId=$2" |
               jq -r .workflowExecutionInfo.status; }
wait_owned() { # wait_owned DISP OWNER
  local end=$(( $(date +%s) + LIMIT_S ))
  until [ "$(rec "$1" server_id)" = "$2" ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout waiting for $2 to own $1" >&2; exit 1; }
    sleep 0.05
  done
}

echo "kind,round,dispatcher,ms"
# --- cleanup ------------------------------------------------------------------------------
"$D" reconcile --loop --temporal-url "$U" --redis-url "$R" --stale-threshold "$THRESHOLD" \
  --server-id reaper >/dev/null 2>"$T/reaper.log" &
PIDS+=($!)
for ((r = 1; r <= ROUNDS; r++)); do
  declare -A RUN=()
  for ((i = 1; i <= M; i++)); do host "c$r-$i" "cl${r}x$i/q"; done
  for ((i = 1; i <= M; i++)); do wait_owned "cl${r}x$i-q" "c$r-$i"; RUN[$i]=$(rec "cl${r}x$i-q" run_id); done
  sleep 1
  t0=$(now_ms)
  for ((i = 1; i <= M; i++)); do kill -9 "$(cat "$T/c$r-$i.pid")"; done
  declare -A DONE=()
  end=$(( $(date +%s) + LIMIT_S ))
  while [ ${#DONE[@]} -lt "$M" ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout waiting for cleanup" >&2; exit 1; }
    for ((i = 1; i <= M; i++)); do
      [ -n "${DONE[$i]:-}" ] && continue
      if [ -z "$(rec "cl${r}x$i-q" run_id)" ] &&
         [ "$(run_status "cl${r}x$i-q" "${RUN[$i]}")" = WORKFLOW_EXECUTION_STATUS_TERMINATED ]; then
        DONE[$i]=1; echo "cleanup,$r,cl${r}x$i/q,$(( $(now_ms) - t0 ))"
      fi
    done
    sleep 0.02
  done
  unset RUN DONE
done
# --- failover -------------------------------------------------------------------------------
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 1; i <= M; i++)); do host "o$r-$i" "fo${r}x$i/q"; done
  for ((i = 1; i <= M; i++)); do wait_owned "fo${r}x$i-q" "o$r-$i"; done
  for ((i = 1; i <= M; i++)); do host "s$r-$i" "fo${r}x$i/q"; done
  # the standby takes over at start (newest starter wins); let the first owner take it back
  for ((i = 1; i <= M; i++)); do wait_owned "fo${r}x$i-q" "s$r-$i"; done
  for ((i = 1; i <= M; i++)); do kill -TERM "$(cat "$T/o$r-$i.pid")"; done
  for ((i = 1; i <= M; i++)); do wait "$(cat "$T/o$r-$i.pid")" 2>/dev/null || true; host "o$r-$i" "fo${r}x$i/q"; done
  for ((i = 1; i <= M; i++)); do wait_owned "fo${r}x$i-q" "o$r-$i"; done
  sleep 1
  t0=$(now_ms)
  for ((i = 1; i <= M; i++)); do kill -9 "$(cat "$T/o$r-$i.pid")"; done
  declare -A DONE=()
  end=$(( $(date +%s) + LIMIT_S ))
  while [ ${#DONE[@]} -lt "$M" ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout waiting for failover" >&2; exit 1; }
    for ((i = 1; i <= M; i++)); do
      [ -n "${DONE[$i]:-}" ] && continue
      if [ "$(rec "fo${r}x$i-q" server_id)" = "s$r-$i" ]; then
        DONE[$i]=1; echo "failover,$r,fo${r}x$i/q,$(( $(now_ms) - t0 ))"
      fi
    done
    sleep 0.02
  done
  unset DONE
  for ((i = 1; i <= M; i++)); do kill -TERM "$(cat "$T/s$r-$i.pid")" 2>/dev/null || true; done
done
