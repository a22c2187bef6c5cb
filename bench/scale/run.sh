#!/usr/bin/env bash
# Many dispatchers on one host (issue 16): what one `dispatchd run` owning N
# dispatchers costs, and how fast a standby takes all N after a kill -9.
#   bench/scale/run.sh [N...]            (default: 100 1000)
# Per N, on a fresh Redis and a fresh Temporal dev server (loopback only):
#   1. the server alone, idle, IDLE_S seconds: its CPU (the baseline)
#   2. host A starts owning all N (no child command): time from exec until the
#      N-th record_claimed (its log's timestamps)
#   3. after SETTLE_S, IDLE_S seconds idle at 5 s heartbeats: A's CPU, RSS (and
#      peak), open fds, TCP connections to Temporal and to Redis; the
#      Temporal server's and Redis's CPU over the same window
#   4. host B starts: it takes every dispatcher over (termination-first, the
#      newest host wins), A becomes the standby of all N: time until B has
#      claimed all N
#   5. kill -9 of B; time until A has claimed all N again (the stale
#      threshold, 15 s by default, is the floor), and the number of running
#      dispatcher workflows then (must be N: no duplicates)
#   6. the anchor: kill -9 of A, then the official Go SDK (tests/interop,
#      `dd-interop start-many`) takes the same N ids over on the same server,
#      one pass per entry of SDK_PASSES (default "32dw 32d 32"): C[d][w] is C
#      ids at a time, d a describe before each start (as dispatchd's takeover
#      does), w a long-poll on each new run's close event held from its start
#      on (as dispatchd's loss watch does); each a start with
#      TERMINATE_EXISTING of a running run. SDK_PASSES="" skips it.
# TEMPORAL_DB=memory: the dev server keeps its SQLite database in memory
# (no file, no fsync per write; default: a file, as the tests run it).
# MAX_IN_FLIGHT=K: both hosts run with --temporal-max-in-flight K.
# CHILD=1: every dispatcher runs a child (`sleep 3600`, exec'd by its guard),
#   so each owned dispatcher has a guard with a last will: the kill -9 of
#   step 5 is then dispatchd alone with its host alive, B's guards stop their
#   children and release the records, and A is told at once (no threshold).
#   Extra columns: B's guards (count, summed RSS and PSS, fds) after the
#   handover, the wills released for B (by its will process, or a guard itself), the last
#   one's ms after the kill.
# START_ONLY=1: steps 1-3 only (the handover and failover columns stay empty).
# DD_EXTRA_ARGS: more `run` options for every host, word-split (e.g.
# "--long-poll-budget 1000000": long polls whatever the fleet's size).
# Output: one CSV line per N on stdout (header first), the logs and a
# per-N detail file under $OUT (default bench/scale/results/<date>).
# Needs: build/dispatchd (DISPATCHD=...), redis-server, the Temporal CLI.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
D=${DISPATCHD:-$root/build/dispatchd}
NS=("$@"); [ $# -gt 0 ] || NS=(100 1000)
IDLE_S=${IDLE_S:-60}
SETTLE_S=${SETTLE_S:-15}
INTERVAL=${INTERVAL:-5s}
THRESHOLD=${THRESHOLD:-15s}
OUT=${OUT:-$root/bench/scale/results/$(date -u +%Y%m%dT%H%M)}
SDK_PASSES=${SDK_PASSES-32dw 32d 32}
export DD_TEMPORAL_DB=${TEMPORAL_DB:-file}
MIF=(); [ -z "${MAX_IN_FLIGHT:-}" ] || MIF=(--temporal-max-in-flight "$MAX_IN_FLIGHT")
CHILD=${CHILD:-0}; CHILD_CMD=(); [ "$CHILD" = 0 ] || CHILD_CMD=(-- sleep 3600)
mkdir -p "$OUT"
T=$(mktemp -d /tmp/dd-bench-scale.XXXXXX)
HZ=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)"
PIDS=()
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -z "${RP:-}" ] || redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1 || true
  [ ! -f "$T/temporal/pid" ] || bash "$root/tests/fixtures/temporal.sh" stop "$T/temporal" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
if [ -n "$SDK_PASSES" ]; then
  INTEROP=${INTEROP:-$T/dd-interop}
  [ -x "$INTEROP" ] || bash "$root/tests/interop/build.sh" "$INTEROP" >&2
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }           # utime + stime
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
redis_cpu() { redis-cli -p "$RP" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.3f", s}'; }
conns() { ss -tnpH state established "( dport = :$2 )" 2>/dev/null | grep -c "pid=$1," || true; }
# claimed LOG N: prints the timestamp (ms) of the N-th record_claimed, or nothing
claimed_ms() {
  python3 - "$1" "$2" "${3:-0}" <<'PY'
import sys, re, datetime
log, n, since = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ts = []
for line in open(log, errors="replace"):
    if "event=record_claimed" not in line:
        continue
    m = re.match(r"ts=(\S+)", line)
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    ms = int(t.timestamp() * 1000)
    if ms >= since:
        ts.append(ms)
if len(ts) >= n:
    print(sorted(ts)[n - 1])
PY
}
wait_claims() { # LOG N SINCE_MS TIMEOUT_S -> prints the N-th claim's ms or fails
  local end=$(( $(date +%s) + $4 )) t
  while [ "$(date +%s)" -lt "$end" ]; do
    t=$(claimed_ms "$1" "$2" "$3")
    [ -n "$t" ] && { echo "$t"; return 0; }
    sleep 0.2
  done
  return 1
}
running_count() {
  curl -sG "$U/api/v1/namespaces/default/workflow-count" \
    --data-urlencode "query=WorkflowType='dispatchd.dispatcher' AND ExecutionStatus='Running'" | jq -r '.count // 0'
}

echo "db,n,owned_all_ms,rss_kb,rss_peak_kb,fds,conns_temporal,conns_redis,cpu_pct_idle,server_cpu_pct_idle_alone,server_cpu_pct_idle,server_rss_kb,redis_cpu_pct_idle,handover_all_ms,failover_all_ms,failover_first_ms,failover_storm_ms,running_after,sdk_takeovers_ms,load_before,load_after,load_end,child,guards,guards_rss_kb,guards_pss_kb,guards_fds,wills,wills_last_ms"
for n in "${NS[@]}"; do
  RP=$(free_port)
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$T" --logfile "$T/redis-$n.log" --maxclients 20000 >/dev/null
  DD_SOURCE_DIR=$root bash "$root/tests/fixtures/temporal.sh" start "$T/temporal" >/dev/null
  U=$(cat "$T/temporal/url"); TP=${U##*:}; tpid=$(cat "$T/temporal/pid")
  load_before=$(cut -d' ' -f1 /proc/loadavg)
  # 1. the server alone
  sleep 5
  s0=$(ticks "$tpid"); sleep "$IDLE_S"; s1=$(ticks "$tpid")
  srv_alone=$(awk -v d=$((s1 - s0)) -v hz="$HZ" -v s="$IDLE_S" 'BEGIN {printf "%.2f", 100 * d / hz / s}')
  list=$(python3 -c "import sys; print(','.join('scale/q%05d' % i for i in range(int(sys.argv[1]))))" "$n")
  host() { # NAME: starts a host owning the N dispatchers
    DISPATCHD_DISPATCHER=$list "$D" run --temporal-url "$U" --redis-url "redis://127.0.0.1:$RP/0" \
      --server-id "$1" --heartbeat-interval "$INTERVAL" --stale-threshold "$THRESHOLD" \
      --metrics-listen off ${DD_EXTRA_ARGS:-} "${MIF[@]}" "${CHILD_CMD[@]}" >/dev/null 2>"$OUT/$1-$n.log" &
    echo $!
  }
  # 2. host A owns all
  t0=$(date +%s%3N)
  a=$(host hostA); PIDS+=("$a")
  ta=$(wait_claims "$OUT/hostA-$n.log" "$n" 0 "${START_TIMEOUT_S:-300}") || { echo "n=$n: host A did not claim all $n within ${START_TIMEOUT_S:-300} s" >&2; exit 1; }
  owned_all=$((ta - t0))
  # 3. idle
  sleep "$SETTLE_S"
  c0=$(ticks "$a"); s0=$(ticks "$tpid"); r0=$(redis_cpu)
  sleep "$IDLE_S"
  c1=$(ticks "$a"); s1=$(ticks "$tpid"); r1=$(redis_cpu)
  cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v s="$IDLE_S" 'BEGIN {printf "%.2f", 100 * d / hz / s}')
  srv=$(awk -v d=$((s1 - s0)) -v hz="$HZ" -v s="$IDLE_S" 'BEGIN {printf "%.2f", 100 * d / hz / s}')
  rcpu=$(awk -v a="$r0" -v b="$r1" -v s="$IDLE_S" 'BEGIN {printf "%.2f", 100 * (b - a) / s}')
  rss=$(rss_kb "$a"); peak=$(hwm_kb "$a"); fds=$(ls "/proc/$a/fd" | wc -l)
  ct=$(conns "$a" "$TP"); cr=$(conns "$a" "$RP"); srss=$(rss_kb "$tpid")
  if [ -n "${START_ONLY:-}" ]; then   # steps 1-3 only (a size whose takeovers take minutes)
    echo "$DD_TEMPORAL_DB,$n,$owned_all,$rss,$peak,$fds,$ct,$cr,$cpu,$srv_alone,$srv,$srss,$rcpu,,,,,$(running_count),,$load_before,$(cut -d' ' -f1 /proc/loadavg),,${CHILD:-0},,,,,,"
    kill -9 "$a"; redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1 || true
    bash "$root/tests/fixtures/temporal.sh" stop "$T/temporal" >/dev/null 2>&1 || true
    PIDS=(); continue
  fi
  # 4. host B takes all over; A stands by
  t1=$(date +%s%3N)
  b=$(host hostB); PIDS+=("$b")
  tb=$(wait_claims "$OUT/hostB-$n.log" "$n" 0 300) || { echo "n=$n: host B did not take all $n over within 300 s" >&2; exit 1; }
  handover=$((tb - t1))
  sleep "$SETTLE_S"   # A's standby watches are armed one interval after its loss
  guards=0 grss=0 gpss=0 gfds=0
  if [ "$CHILD" != 0 ]; then  # B's guards (its direct children), their cost
    for g in $(pgrep -P "$b"); do
      tr '\0' ' ' <"/proc/$g/cmdline" 2>/dev/null | grep -q __guard || continue
      guards=$((guards + 1))
      grss=$((grss + $(rss_kb "$g")))
      gpss=$((gpss + $(awk '/^Pss:/ {print $2}' "/proc/$g/smaps_rollup")))
      gfds=$((gfds + $(ls "/proc/$g/fd" | wc -l)))
    done
  fi
  # 5. kill -9 of B. What A must claim: the records B holds now (an overloaded
  # handover can leave a few with A already; counting N claims would never end)
  nb=$(redis-cli -p "$RP" --scan --pattern 'dd:hb:{*' | sed 's/^/HGET /; s/$/ server_id/' |
       redis-cli -p "$RP" | grep -cx hostB || true)
  [ "$nb" = "$n" ] || echo "n=$n: host B holds $nb of the records at the kill: waiting for A to claim those" >&2
  tk=$(date +%s%3N)
  kill -9 "$b"
  tf=$(wait_claims "$OUT/hostA-$n.log" "$nb" "$tk" 300) || { echo "n=$n: host A did not fail the $nb records of B over within 300 s" >&2; exit 1; }
  tfirst=$(wait_claims "$OUT/hostA-$n.log" 1 "$tk" 1)
  sleep 1
  wills=$(grep -c 'event=will_released' "$OUT/hostB-$n.log" || true)
  wlast=$(python3 - "$OUT/hostB-$n.log" "$tk" <<'PY'
import sys, re, datetime
last = None
for line in open(sys.argv[1], errors="replace"):
    if "event=will_released" in line:
        t = datetime.datetime.strptime(re.match(r"ts=(\S+)", line).group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
        last = int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
print("" if last is None else last - int(sys.argv[2]))
PY
)
  sleep 2
  running=$(running_count)
  load_after=$(cut -d' ' -f1 /proc/loadavg)
  # 6. the anchor: A goes (kill -9: its owners must not answer the SDK's
  # takeovers), then the SDK takes the same N ids over, pass by pass
  kill -9 "$a"; for _ in $(seq 1 100); do kill -0 "$a" 2>/dev/null || break; sleep 0.1; done
  sdk=""
  for pass in $SDK_PASSES; do
    c=${pass%%[dw]*}; df=()
    [[ $pass != *d* ]] || df+=(--describe-first)
    [[ $pass != *w* ]] || df+=(--watch)
    sleep 2
    j=$("$INTEROP" start-many --address "$(cat "$T/temporal/grpc")" --prefix dispatcher-scale-q \
        --n "$n" --concurrency "$c" "${df[@]}" 2>>"$OUT/sdk-$n.log") || true
    echo "{\"db\":\"$DD_TEMPORAL_DB\",\"pass\":\"$pass\",\"load\":$(cut -d' ' -f1 /proc/loadavg),\"result\":${j:-null}}" >>"$OUT/sdk-$n.jsonl"
    ms=failed
    [ -z "$j" ] || ms=$(jq -r 'if .failed == 0 then .elapsed_ms else "failed" end' <<<"$j" 2>/dev/null || echo failed)
    sdk="$sdk${sdk:+;}$pass=$ms"
  done
  echo "$DD_TEMPORAL_DB,$n,$owned_all,$rss,$peak,$fds,$ct,$cr,$cpu,$srv_alone,$srv,$srss,$rcpu,$handover,$((tf - tk)),$((tfirst - tk)),$((tf - tfirst)),$running,$sdk,$load_before,$load_after,$(cut -d' ' -f1 /proc/loadavg),${CHILD:-0},$guards,$grss,$gpss,$gfds,$wills,$wlast"
  redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1 || true
  bash "$root/tests/fixtures/temporal.sh" stop "$T/temporal" >/dev/null 2>&1 || true
  PIDS=()
done
