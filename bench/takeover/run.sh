#!/usr/bin/env bash
# bench/takeover/run.sh - handovers of one dispatcher between `dispatchd run`
# processes, against a private Temporal dev server on loopback.
#
# Round i (1..ROUNDS): while owner i-1 is running, start owner i (server ids
# alternate bench-a / bench-b) for the same dispatcher; wait until owner i
# owns and its child has started, and until owner i-1 has logged
# ownership_lost and its child has stopped; then SIGTERM owner i-1 (it has
# lost, so its release terminates nothing) and wait for it to exit. At most
# two dispatchd processes are alive at any time.
# Then CLI_ROUNDS runs of `dispatchd takeover` alone, as a reference.
#
# Env: ROUNDS (200), CLI_ROUNDS (50), SETTLE_MS (100: pause after each round),
#      WARMUP (10 unmeasured `dispatchd takeover`s of another queue first),
#      STEP_TIMEOUT_S (20: bound of every wait), TIME_LIMIT_S (1200: whole run),
#      DISPATCHD (build/dispatchd), OUT (bench/takeover/results), KEEP_LOGS (0).
# Output: $OUT/rounds.csv, $OUT/cli.csv, $OUT/meta.txt, $OUT/summary.md.
# The EXIT trap stops every process this script started, also on failure.
# Bounded: every wait here is bounded (STEP_TIMEOUT_S, TIME_LIMIT_S); the
# fixture gives the server 60 s to come up; each `dispatchd takeover` call is
# bounded by dispatchd's own per-request deadline (30 s); report.py gives up on
# histories after 3 failed 10 s requests.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-200}
CLI_ROUNDS=${CLI_ROUNDS:-50}
WARMUP=${WARMUP:-10}
SETTLE_MS=${SETTLE_MS:-100}
STEP_TIMEOUT_S=${STEP_TIMEOUT_S:-20}
TIME_LIMIT_S=${TIME_LIMIT_S:-1200}
DISPATCHD=${DISPATCHD:-$root/build/dispatchd}
OUT=${OUT:-$here/results}
KEEP_LOGS=${KEEP_LOGS:-0}
SETTLE_S=$((SETTLE_MS / 1000)).$(printf %03d $((SETTLE_MS % 1000)))

[ -x "$DISPATCHD" ] || { echo "no $DISPATCHD: run BUILD_DIR=build scripts/build.sh" >&2; exit 2; }
[ "$ROUNDS" -ge 1 ] || { echo "ROUNDS must be >= 1" >&2; exit 2; }

W=$(mktemp -d /tmp/dd-tbench.XXXXXX)
export DD_BENCH_DIR=$W DD_BENCH_CHILD_LOG=$W/child.log
: >"$W/child.log"
declare -A LIVE=()   # pid -> 1 for every dispatchd process we started and not yet reaped
TEMPORAL_DIR=$W/temporal
ANOMALIES=$W/anomalies.txt
: >"$ANOMALIES"

now_us() { echo "${EPOCHREALTIME/./}"; }
START_US=$(now_us)
DEADLINE_US=$((START_US + TIME_LIMIT_S * 1000000))

# Sleep without forking: read with a timeout on a pipe nobody writes to.
exec {SLEEPFD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEPFD" _ || true; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${!LIVE[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${!LIVE[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1  # not nap: a read -t inside a trap that interrupted read -t crashes bash 5.2
  done
  for p in "${!LIVE[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # Children of a dispatchd that died without stopping them (own sessions).
  local f
  # Only groups still led by our child.sh (its environment names $W): never a reused pid.
  for f in "$W"/child.*.pgid; do
    [ -e "$f" ] || continue
    local g; g=$(cat "$f")
    if tr '\0' '\n' <"/proc/$g/environ" 2>/dev/null | grep -qx "DD_BENCH_DIR=$W"; then
      kill -KILL -- "-$g" 2>/dev/null || true
    fi
  done
  bash "$root/tests/fixtures/temporal.sh" stop "$TEMPORAL_DIR" 2>/dev/null || true
  [ -n "${REDIS_PORT:-}" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  if [ "$KEEP_LOGS" = 1 ] || [ $rc -ne 0 ]; then
    echo "logs kept in $W" >&2
  else
    rm -rf "$W"
  fi
  exit $rc
}
trap cleanup EXIT
# INT/TERM only set a flag; the waits below notice it within 5 ms and exit from
# normal context. (Exiting inside the trap, which interrupts a `read -t`,
# leaves bash 5.2's read timer armed: it fired during cleanup and bash
# segfaulted in about half of our tries, leaving the Temporal server behind.)
STOP=0
trap 'STOP=1' INT TERM
check_stop() {
  if [ "$STOP" = 1 ]; then
    echo "interrupted" >&2
    exit 130
  fi
}

out_of_time() { check_stop; [ "${EPOCHREALTIME/./}" -ge "$DEADLINE_US" ]; }

# has FILE NEEDLE: FILE has a line containing NEEDLE (builtins only, no fork).
has() {
  local line
  [ -e "$1" ] || return 1
  while IFS= read -r line; do [[ $line == *"$2"* ]] && return 0; done <"$1"
  return 1
}
# field FILE EVENT KEY: KEY's value on the first line with event=EVENT, in FIELD.
field() {
  local line
  FIELD=
  while IFS= read -r line; do
    if [[ $line == *" event=$2 "* && $line =~ (^| )$3=([^ ]*) ]]; then
      FIELD=${BASH_REMATCH[2]}
      return 0
    fi
  done <"$1"
  return 1
}
# wait_for WHAT CMD...: retry CMD every 5 ms, bounded by STEP_TIMEOUT_S and the run's deadline.
wait_for() {
  local what=$1; shift
  local end=$(( ${EPOCHREALTIME/./} + STEP_TIMEOUT_S * 1000000 ))
  while :; do
    check_stop
    "$@" && return 0
    local t=${EPOCHREALTIME/./}
    if [ "$t" -ge "$end" ] || [ "$t" -ge "$DEADLINE_US" ]; then
      echo "round $ROUND: timed out waiting for $what" | tee -a "$ANOMALIES" >&2
      return 1
    fi
    nap 0.005
  done
}
# reap PID: SIGTERM, wait (bounded), KILL if needed; exit status in REAP_RC.
# (Not in a $(...) subshell: wait and LIVE need this shell.)
reap() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || true
  local end=$(( ${EPOCHREALTIME/./} + STEP_TIMEOUT_S * 1000000 ))
  while kill -0 "$p" 2>/dev/null; do
    check_stop
    if [ "${EPOCHREALTIME/./}" -ge "$end" ]; then
      echo "round $ROUND: pid $p ignored SIGTERM, killing" | tee -a "$ANOMALIES" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
    nap 0.005
  done
  REAP_RC=0; wait "$p" || REAP_RC=$?
  unset "LIVE[$p]"
}

bash "$root/tests/fixtures/temporal.sh" start "$TEMPORAL_DIR" >&2
check_stop
U=$(cat "$TEMPORAL_DIR/url")
# Redis: heartbeats, and the handoff that keeps the two children from acting at once.
REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$W" --logfile "$W/redis.log" >/dev/null
PROJECT=tbench$$
QUEUE=q
DISP=$PROJECT/$QUEUE
WID=dispatcher-$PROJECT-$QUEUE

{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "kernel=$(uname -r)"
  echo "dispatchd_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "temporal=$("$root/.tools/bin/temporal" --version 2>/dev/null || temporal --version 2>/dev/null || echo unknown)"
  echo "rounds=$ROUNDS cli_rounds=$CLI_ROUNDS settle_ms=$SETTLE_MS warmup=$WARMUP"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$W/meta.txt"

# start_owner I SID: a new `dispatchd run`; wall clock stamped right before exec.
start_owner() {
  local i=$1 sid=$2
  (
    echo "${EPOCHREALTIME/./}" >"$W/r$i.t0"
    exec "$DISPATCHD" run --dispatcher "$DISP" --temporal-url "$U" --server-id "$sid" \
      --redis-url "redis://127.0.0.1:$REDIS_PORT/0" --metrics-listen off -- bash "$here/child.sh"
  ) </dev/null >/dev/null 2>"$W/r$i.log" &
  PID[$i]=$!
  LIVE[$!]=1
}
owns() { has "$W/r$1.log" "event=owning "; }
child_up() { field "$W/r$1.log" owning run_id && [ -e "$W/started.$FIELD" ]; }
# Noise record: the machine's cumulative CPU jiffies (user nice system idle
# iowait irq softirq steal) and 1-min load, read with builtins at each round's start.
stat_sample() {
  local _c a b c d e f g h l1
  read -r _c a b c d e f g h _ </proc/stat
  read -r l1 _ </proc/loadavg
  echo "$1 ${EPOCHREALTIME/./} $a $b $c $d $e $f $g $h $l1" >>"$W/stat.txt"
}
lost() { has "$W/r$1.log" "event=ownership_lost "; }
child_down() { has "$W/r$1.log" "event=child_exited "; }

# Warm-up, not measured: a fresh dev server's first requests are slow (its
# sqlite database and caches are cold).
for ((j = 1; j <= WARMUP; j++)); do
  check_stop
  "$DISPATCHD" takeover "$PROJECT" warmup --temporal-url "$U" --server-id warmup >/dev/null 2>>"$W/warmup.log" ||
    echo "warm-up takeover $j failed" >>"$ANOMALIES"
done

declare -a PID=()
SIDS=(bench-a bench-b)
ROUND=0
start_owner 0 "${SIDS[0]}"
wait_for "owner 0 to own" owns 0
wait_for "owner 0's child" child_up 0
nap "$SETTLE_S"

fails=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  out_of_time && { echo "time limit reached after $((ROUND - 1)) rounds" | tee -a "$ANOMALIES" >&2; break; }
  i=$ROUND; o=$((i - 1))
  stat_sample "$i"
  start_owner "$i" "${SIDS[$((i % 2))]}"
  ok=1
  wait_for "owner $i to own" owns "$i" || ok=0
  [ $ok = 1 ] && { wait_for "owner $i's child" child_up "$i" || ok=0; }
  wait_for "owner $o to log ownership_lost" lost "$o" || ok=0
  wait_for "owner $o's child to exit" child_down "$o" || ok=0
  reap "${PID[$o]}"
  [ "$REAP_RC" = 0 ] || echo "round $i: owner $o exited $REAP_RC" | tee -a "$ANOMALIES" >&2
  has "$W/r$o.log" "event=stopped " || echo "round $i: owner $o did not log event=stopped" >>"$ANOMALIES"
  if [ $ok = 1 ]; then fails=0; else fails=$((fails + 1)); fi
  [ $fails -lt 5 ] || { echo "5 failed rounds in a row: giving up" | tee -a "$ANOMALIES" >&2; break; }
  if [ $((i % 50)) = 0 ]; then echo "round $i/$ROUNDS" >&2; fi
  nap "$SETTLE_S"
done
DONE_ROUNDS=$((ROUND - 1))
stat_sample "$ROUND"
ROUND=end
# The last owner must still own: nobody took over from it.
last=$DONE_ROUNDS
lost "$last" && echo "last owner $last lost ownership unexpectedly" >>"$ANOMALIES"
reap "${PID[$last]}"
[ "$REAP_RC" = 0 ] || echo "last owner exited $REAP_RC" >>"$ANOMALIES"

# Reference: `dispatchd takeover` alone, process start (before exec) -> JSON printed and exited.
: >"$W/cli.jsonl"
for ((j = 1; j <= CLI_ROUNDS; j++)); do
  out_of_time && { echo "time limit reached in CLI rounds" >>"$ANOMALIES"; break; }
  json=$(
    echo "${EPOCHREALTIME/./}" >"$W/cli.t0"
    exec "$DISPATCHD" takeover "$PROJECT" cli --temporal-url "$U" --server-id "cli-$((j % 2))" \
      2>>"$W/cli.log"
  ) || echo "cli round $j failed: $json" >>"$ANOMALIES"
  t1=${EPOCHREALTIME/./}
  printf '{"round":%d,"t_exec_us":%s,"t_done_us":%s,"out":%s}\n' "$j" "$(cat "$W/cli.t0")" "$t1" \
    "${json:-null}" >>"$W/cli.jsonl"
  nap "$SETTLE_S"
done

echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$W/meta.txt"
echo "end_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ) rounds_done=$DONE_ROUNDS" >>"$W/meta.txt"

# While the server is still up: old runs' Terminated event times come from their histories.
mkdir -p "$OUT"
python3 "$here/report.py" extract "$W" "$OUT" --url "$U" --workflow-id "$WID" --rounds "$DONE_ROUNDS"
cp "$W/meta.txt" "$OUT/meta.txt"
if [ -s "$ANOMALIES" ]; then
  echo "anomalies:" >&2
  cat "$ANOMALIES" >&2
  cp "$ANOMALIES" "$OUT/anomalies.txt"
else
  rm -f "$OUT/anomalies.txt"
fi
python3 "$here/report.py" summary "$OUT" | tee "$OUT/summary.md"
