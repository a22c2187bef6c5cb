#!/usr/bin/env bash
# Reconcile cycle cost against the number of records: N records in Redis, 1 %
# of them stale (their runs are long gone, so each costs a describe and a
# compare-and-delete), the rest healthy. One `dispatchd reconcile` cycle per
# size; its own duration_ms is the figure. Also a cycle with 0 stale at each
# size, to show that healthy records cost (almost) nothing.
#   bench/reconcile/run.sh [SIZES...]     (default: 1000 10000 100000)
# STALE_RUNS picks what the stale records point at (issue 16):
#   gone     (default) run ids Temporal never saw: each needs a describe
#   closed   real runs, terminated before the cycle: visibility lists them closed
#   running  real runs still running (a crashed host's): each is terminated
# For closed/running the runs are started (and terminated) before the cycle
# and the cycle waits for nothing: the script waits until visibility lists
# them, as it would a minute after a crash.
# Anchor (ANCHOR=0 to skip): right after each cycle with stale records, the
# official Go SDK (build/dd-interop, tests/interop/many.go) makes the same
# Temporal calls over the same (workflow id, run id) pairs on the same server:
# the visibility queries (100 run ids each, one at a time as the cycle sends
# them), then the describes (gone) or terminations (running: the runs are
# started again first, the cycle has ended them) at each concurrency of
# ANCHOR_CONC (default "16 32 64"; 16 = the cycle's lanes). Rows "anchor,...".
# EXTRA: more arguments for `dispatchd reconcile` (e.g. to compare lanes).
# Needs: build/dispatchd, build/dd-interop (tests/interop/build.sh), redis-server,
# the Temporal CLI in .tools/bin. Loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
D=${DISPATCHD:-$root/build/dispatchd}
SIZES=("${@:-1000 10000 100000}"); [ $# -gt 0 ] || SIZES=(1000 10000 100000)
T=$(mktemp -d /tmp/dd-bench-rec.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port)
cleanup() {
  redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1 || true
  bash "$root/tests/fixtures/temporal.sh" stop "$T/temporal" >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$T" --logfile "$T/redis.log" >/dev/null
DD_SOURCE_DIR=$root bash "$root/tests/fixtures/temporal.sh" start "$T/temporal" >/dev/null
U=$(cat "$T/temporal/url")
G=$(cat "$T/temporal/grpc")
SDK=${SDK:-$root/build/dd-interop}
ANCHOR=${ANCHOR:-1}
read -r -a ANCHOR_CONC <<<"${ANCHOR_CONC:-16 32 64}"
read -r -a EXTRA <<<"${EXTRA:-}"
[ "$ANCHOR" = 0 ] || [ -x "$SDK" ] || { echo "no $SDK: run tests/interop/build.sh $SDK (or ANCHOR=0)" >&2; exit 1; }
# A record's age counts from its heartbeat or from Redis's start, whichever is
# later (docs/ownership.md, "A Redis restart is not a missed heartbeat"): on a
# Redis younger than the threshold nothing is stale yet, so wait that out once.
until [ "$(redis-cli -p "$RP" info server | tr -d '\r' | sed -n 's/^uptime_in_seconds://p')" -gt 16 ]; do sleep 0.5; done

STALE_RUNS=${STALE_RUNS:-gone}
ROUND=0
# real_runs STALE: starts STALE dispatcher runs (ids as populate names them),
# terminates them for "closed", waits until visibility lists them all as
# such; writes "index run_id" lines to $T/runs
real_runs() {
  local stale=$1 n=$2 step i want status
  ROUND=$((ROUND + 1))   # a task queue per round: visibility counts this round's runs
  step=$(( n / stale ))
  : >"$T/runs"; : >"$T/curl"
  for ((i = 0; i < n; i += step)); do
    [ "$i" -eq 0 ] || echo next >>"$T/curl"   # curl -K: each request its own options
    printf 'url = "%s/api/v1/namespaces/default/workflows/dispatcher-bench-q%06d"\nrequest = "POST"\ndata = "{\\"workflowType\\":{\\"name\\":\\"dispatchd.dispatcher\\"},\\"taskQueue\\":{\\"name\\":\\"bench%d\\"},\\"workflowIdConflictPolicy\\":\\"WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING\\"}"\nwrite-out = "\\n"\n' "$U" "$i" "$ROUND" >>"$T/curl"
  done
  curl -s --no-progress-meter --parallel --parallel-max 16 -K "$T/curl" >"$T/started" || true
  jq -r 'select(.runId) | "\(.link.workflowEvent.workflowId | ltrimstr("dispatcher-bench-q") | tonumber) \(.runId)"' \
    "$T/started" >"$T/runs"
  [ "$(wc -l <"$T/runs")" -eq "$stale" ] || { echo "started $(wc -l <"$T/runs") of $stale runs" >&2; exit 1; }
  want=Running
  if [ "$STALE_RUNS" = closed ]; then
    : >"$T/curl"
    while read -r i run; do
      [ ! -s "$T/curl" ] || echo next >>"$T/curl"
      printf 'url = "%s/api/v1/namespaces/default/workflows/dispatcher-bench-q%06d/terminate"\nrequest = "POST"\ndata = "{\\"workflowExecution\\":{\\"runId\\":\\"%s\\"},\\"reason\\":\\"bench\\"}"\noutput = /dev/null\n' "$U" "$i" "$run" >>"$T/curl"
    done <"$T/runs"
    curl -s --no-progress-meter --parallel --parallel-max 16 -K "$T/curl"
    want=Terminated
  fi
  for _ in $(seq 1 600); do
    status=$(curl -sG "$U/api/v1/namespaces/default/workflow-count" \
      --data-urlencode "query=WorkflowType='dispatchd.dispatcher' AND TaskQueue='bench$ROUND' AND ExecutionStatus='$want'" | jq -r '.count // 0')
    [ "$status" -ge "$stale" ] && return 0
    sleep 0.1
  done
  echo "visibility did not list $stale $want runs within 60 s ($status)" >&2; exit 1
}

populate() { # populate N STALE: N records, STALE of them an hour old
  local n=$1 stale=$2 now; now=$(date +%s%3N)
  redis-cli -p "$RP" flushall >/dev/null
  if [ "$STALE_RUNS" != gone ] && [ "$stale" -gt 0 ]; then
    real_runs "$stale" "$n"
  else
    : >"$T/runs"
  fi
  python3 - "$n" "$stale" "$now" "$T/runs" <<'PY' | redis-cli -p "$RP" --pipe >/dev/null
import sys
n, stale, now = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
runs = dict(l.split() for l in open(sys.argv[4]) if l.strip())
def cmd(*a):
    out = "*%d\r\n" % len(a)
    for x in a:
        x = str(x); out += "$%d\r\n%s\r\n" % (len(x.encode()), x)
    sys.stdout.write(out)
step = n // stale if stale else n + 1
for i in range(n):
    wid = "dispatcher-bench-q%06d" % i
    hb = now - 3600_000 if stale and i % step == 0 else now
    run = runs.get(str(i), "00000000-0000-0000-0000-%012d" % i)
    cmd("HSET", "dd:hb:{%s}" % wid, "workflow_id", wid, "run_id", run,
        "server_id", "bench-host", "project", "bench", "queue", "q%06d" % i,
        "hb_ms", hb, "ttl_ms", 15000, "epoch", 1)
    cmd("ZADD", "dd:hb:index", hb, wid)
PY
}

cycle() { "$D" reconcile --temporal-url "$U" --redis-url "redis://127.0.0.1:$RP/0" \
            --server-id bench --stale-threshold 15s --terminate-rate 100000 "${EXTRA[@]}" \
            2>>"$T/reconcile.log"; }

load1() { cut -d' ' -f1 /proc/loadavg; }

# pairs N STALE: the stale records' "workflow_id run_id" lines, as populate wrote them
pairs() {
  local n=$1 stale=$2 step i
  step=$((n / stale))
  if [ "$STALE_RUNS" = gone ]; then
    for ((i = 0; i < n; i += step)); do
      printf 'dispatcher-bench-q%06d 00000000-0000-0000-0000-%012d\n' "$i" "$i"
    done
  else
    while read -r i run; do printf 'dispatcher-bench-q%06d %s\n' "$i" "$run"; done <"$T/runs"
  fi >"$T/pairs"
}

sdk() { # sdk OP CONC: one dd-interop bulk call over $T/pairs, one "anchor,..." row
  local j
  j=$("$SDK" "$1" --address "$G" --file "$T/pairs" --concurrency "$2" 2>>"$T/sdk.log") ||
    { echo "dd-interop $1 failed: $j" >&2; exit 1; }
  echo "anchor,$1,$2,$(jq -r '[.elapsed_ms, .p50_ms, .p95_ms, .calls, .running, .closed, .not_found, .listed, .errors] | map(tostring) | join(",")' <<<"$j"),$(load1)"
}

anchor() { # anchor N STALE: the SDK makes the cycle's Temporal calls
  local n=$1 stale=$2 c
  pairs "$n" "$stale"
  case $STALE_RUNS in
    gone | closed)
      sdk list-many 1
      for c in "${ANCHOR_CONC[@]}"; do sdk describe-many "$c"; done ;;
    running)
      for c in "${ANCHOR_CONC[@]}"; do
        real_runs "$stale" "$n"   # the cycle ended them: start them again
        pairs "$n" "$stale"
        sdk list-many 1
        sdk terminate-many "$c"
      done ;;
  esac
}

echo "# stale runs: $STALE_RUNS; dispatchd: $D ${EXTRA[*]}; $(uptime)"
echo "records,stale,duration_ms,candidates,cleaned,errors,terminated,visible,described,load1"
[ "$ANCHOR" = 0 ] || echo "anchor,op,concurrency,elapsed_ms,p50_ms,p95_ms,calls,running,closed,not_found,listed,errors,load1"
for n in "${SIZES[@]}"; do
  for stale in $((n / 100)) 0; do
    populate "$n" "$stale"
    j=$(cycle)
    left=$(redis-cli -p "$RP" zcard dd:hb:index)
    [ "$left" = $((n - stale)) ] || { echo "expected $((n - stale)) records left, got $left" >&2; exit 1; }
    echo "$n,$stale,$(jq -r '[.duration_ms, .candidates, .cleaned, .errors, .terminated, .visible, .described] | map(tostring) | join(",")' <<<"$j"),$(load1)"
    [ "$ANCHOR" = 0 ] || [ "$stale" -eq 0 ] || anchor "$n" "$stale"
  done
done
