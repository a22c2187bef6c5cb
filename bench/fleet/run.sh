#!/usr/bin/env bash
# bench/fleet/run.sh - fleet chaos bench: a real Temporal dev server and a real
# Redis (dispatchd stack), N dispatchd hosts owning M dispatchers, each owner
# running bench/fleet/child.py, W worker sidecars; then bounded scenarios, and
# the independent checker (checker.py) decides pass/fail.
#
#   bench/fleet/run.sh                       (defaults below; OUT=dir keeps results)
#
# Env (defaults): N (5) hosts, M (10) dispatchers fleet/q1..qM, W (0) worker
# sidecars (needs `dispatchd worker`), HB (500ms) heartbeat, THRESH_S (2) stale
# threshold in whole seconds (waits are sized by it), THRESH (${THRESH_S}s) the
# exact --stale-threshold given to dispatchd when it is not whole seconds,
#   ROLLING_ROUNDS (1)  graceful restart of every host in turn (SIGTERM, restart)
#   KILLS (5)           kill -9 of a random owning host, failover, restart it
#   STOPS (2)           SIGSTOP of an owning host past the threshold, SIGCONT
#   STOP_SCOPE (daemon) what SIGSTOP freezes: "daemon" (dispatchd only: its child
#                       keeps running), "host" (dispatchd and its children, like
#                       a paused VM) or "both" (alternating, daemon first)
#   REDIS_RESTARTS (1)  graceful Redis restart (RDB kept), REDIS_DOWN_S (1) down
#   TEMPORAL_RESTARTS (1) Temporal dev server restart (same sqlite file)
#   SENTINEL (0)        1: Redis is a primary, a replica and three sentinels (quorum
#                       2, down-after SENTINEL_DOWN_MS (1000)) of its own, not the
#                       stack's; hosts, reconcile, workers and the checker use
#                       --redis-sentinel (PARTITIONS not supported with it)
#   PRIMARY_SWITCHES (0) with SENTINEL=1: alternately SENTINEL FAILOVER and kill -9
#                       of the primary (restarted as a replica of the new one); the
#                       checker reports the sentinels' switch time and the time until
#                       every dispatcher acts again
#   TLS (0)             1: Redis is a TLS-only redis-server of its own (--port 0
#                       --tls-port, certificates made at run time with the openssl
#                       CLI under the run's temp dir), not the stack's; hosts,
#                       reconcile, workers use rediss:// --redis-ca-file, the checker
#                       Python's ssl with the same CA; REDIS_RESTARTS restart it
#                       (SHUTDOWN SAVE, the RDB kept). Not with SENTINEL=1 (TLS through
#                       Sentinel is not built) nor PARTITIONS (the proxies are plain TCP)
#   WORKER_KILLS (0)    kill -9 of a random worker sidecar, then a new one
#   PARTITIONS (0)      network faults: every host then reaches Redis and Temporal
#                       through its own netfault proxy (tests/support/netfault_proxy.py);
#                       each event cuts the owning host for THRESH_S + 2 s, then heals,
#                       cycling through PARTITION_MODES ("whole redis temporal asym":
#                       both held / Redis held / Temporal held / replies held). The
#                       checker allows no overlap beyond one tick after a partition.
#   SKEWS ("")          wall-clock offsets per host, in order (e.g. "0 +8s -8s"; "0" none):
#                       the host runs under libfaketime (its child on the real clock)
#   SKEW_HOLDS (0)      each: host h((k-1)%N+1) restarts (so it owns everything), then
#                       SKEW_HOLD_S (4 x THRESH_S) with no fault; the checker (I6)
#                       fails on any ownership move inside a hold
#   ETCD_KILLS (0)      the etcdctl-lock anchor: kill -9 of the holder, interleaved
#                       with the dispatchd kills; ETCD_HOLDERS (3), ETCD_TTL (=THRESH_S)
#   RECONCILE (auto)    run `dispatchd reconcile` (one cycle) after every event if it
#                       exists; its exit code is the checker's reconcile error count
#   RECONCILE_INTERVAL (5s) the reconciler inside every host
#   IDLE_S (0)          measure RSS and CPU of every host over an idle period
#   WINDOW_MS (250)     overlap the checker allows: fixed before the full run from a
#                       calibration run's graceful takeovers (n=29: p50 11 ms, p95 35,
#                       p99 85, max 103 ms): ~2.4x the worst graceful overlap seen
#   ENFORCE_TARGETS (0) make missed latency targets fail the checker too
#   LATENCY_FACTOR (1)  stretch the latency targets' slack by this factor; "auto":
#                       1 / (1 - p), p the CPU pressure over the run (PSI "some":
#                       the share of time a runnable task waited for a CPU; p
#                       capped at 0.9: at most x10), so other work on the machine does not
#                       count against dispatchd (the smoke test uses auto)
#   MAX_SECONDS (3600)  hard bound of the whole run; SETTLE_S (30) per wait;
#   QUIET_S (2 x THRESH_S + 6) quiet period before the end state is checked
#   OUT                 keep logs + report here (default: a temp dir, removed)
#   DISPATCHD (build/dispatchd)
#   MODE (marker)       "workflow": the M dispatchers are real Temporal workflows
#                       (DispatcherWorkflow of tests/interop, run by SDK_WORKERS (2)
#                       `dd-interop worker` processes polling q1..qM, continuing as
#                       new every CAS_EVERY (5s)); hosts run `dispatchd run
#                       --workflow-type DispatcherWorkflow --input-server-id-field
#                       server_id` with no child command. Owners and settling come
#                       from the workflows' own records (the workers' --runs-log:
#                       which server id started each chain), and bench/fleet/
#                       wfchecker.py judges from Temporal and those records only
#                       (no Redis, no dispatchd output). W and ETCD_KILLS are
#                       ignored. DD_INTEROP (build/dd-interop; built by
#                       tests/interop/build.sh when missing).
# Everything runs on 127.0.0.1 free ports under a private temp dir; the EXIT
# trap stops what this script started (by pid / by our stack state dir), also
# on failure. Exit status: the checker's (1 = an invariant broke), or 1 when a
# dispatchd exited other than expected (0 after SIGTERM, 137 after kill -9) or
# any process wrote a sanitizer report (ASan/UBSan builds: every report goes
# to $T/sanitizer.PID, then is printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N=${N:-5}; M=${M:-10}; W=${W:-0}
HB=${HB:-500ms}; THRESH_S=${THRESH_S:-2}; THRESH=${THRESH:-${THRESH_S}s}
ROLLING_ROUNDS=${ROLLING_ROUNDS:-1}; KILLS=${KILLS:-5}; STOPS=${STOPS:-2}
STOP_SCOPE=${STOP_SCOPE:-daemon}
REDIS_RESTARTS=${REDIS_RESTARTS:-1}; REDIS_DOWN_S=${REDIS_DOWN_S:-1}
TEMPORAL_RESTARTS=${TEMPORAL_RESTARTS:-1}; WORKER_KILLS=${WORKER_KILLS:-0}
SENTINEL=${SENTINEL:-0}; PRIMARY_SWITCHES=${PRIMARY_SWITCHES:-0}; SENTINEL_DOWN_MS=${SENTINEL_DOWN_MS:-1000}
TLS=${TLS:-0}
PARTITIONS=${PARTITIONS:-0}; PARTITION_MODES=${PARTITION_MODES:-whole redis temporal asym}
SKEWS=${SKEWS:-}; SKEW_HOLDS=${SKEW_HOLDS:-0}; SKEW_HOLD_S=${SKEW_HOLD_S:-$((THRESH_S * 4))}
read -r -a SKEW_OF <<<"$SKEWS"
FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
[ -z "$SKEWS" ] || [ -n "$FAKETIME_LIB" ] || die "SKEWS needs libfaketime (scripts/install-deps.sh)"
ETCD_KILLS=${ETCD_KILLS:-0}; ETCD_HOLDERS=${ETCD_HOLDERS:-3}; ETCD_TTL=${ETCD_TTL:-$THRESH_S}
RECONCILE=${RECONCILE:-auto}; RECONCILE_INTERVAL=${RECONCILE_INTERVAL:-5s}; IDLE_S=${IDLE_S:-0}; WINDOW_MS=${WINDOW_MS:-250}
ENFORCE_TARGETS=${ENFORCE_TARGETS:-0}; LATENCY_FACTOR=${LATENCY_FACTOR:-1}
MAX_SECONDS=${MAX_SECONDS:-3600}; SETTLE_S=${SETTLE_S:-30}
QUIET_S=${QUIET_S:-$((THRESH_S * 2 + 6))}
DISPATCHD=${DISPATCHD:-$root/build/dispatchd}
MODE=${MODE:-marker}; SDK_WORKERS=${SDK_WORKERS:-2}; CAS_EVERY=${CAS_EVERY:-5s}
DD_INTEROP=${DD_INTEROP:-$root/build/dd-interop}
PY=$(${PYTHON:-python3} -c "import sys; print(sys.executable)")  # absolute: pgrep matches it

die() { echo "fleet: $*" >&2; exit 2; }
log() { echo "# $(date -u +%H:%M:%S) $*" >&2; }
[ -x "$DISPATCHD" ] || die "$DISPATCHD missing (BUILD_DIR=build scripts/build.sh)"
command -v redis-server >/dev/null || die "redis-server missing (scripts/install-deps.sh)"
[ "$ETCD_KILLS" = 0 ] || command -v etcd >/dev/null ||
  die "etcd missing (DD_INSTALL_BENCH=1 scripts/install-deps.sh)"
if [ "$W" -gt 0 ] && ! "$DISPATCHD" worker --help >/dev/null 2>&1; then
  log "no 'dispatchd worker' in this build: W=$W ignored"; W=0; WORKER_KILLS=0
fi
case $MODE in
  marker) ;;
  workflow)
    [ "$W" = 0 ] || log "MODE=workflow: W=$W ignored (worker sidecars are a marker-mode feature here)"
    [ "$ETCD_KILLS" = 0 ] || log "MODE=workflow: ETCD_KILLS=$ETCD_KILLS ignored"
    W=0; WORKER_KILLS=0; ETCD_KILLS=0
    if [ ! -x "$DD_INTEROP" ]; then
      bash "$root/tests/interop/build.sh" "$DD_INTEROP" >&2 || die "cannot build $DD_INTEROP (tests/interop/build.sh)"
    fi ;;
  *) die "MODE must be marker or workflow, not '$MODE'" ;;
esac
case $TLS in 0|1) ;; *) die "TLS must be 0 or 1, not '$TLS'" ;; esac
if [ "$TLS" = 1 ]; then
  [ "$SENTINEL" = 0 ] || die "TLS=1 and SENTINEL=1 do not go together: TLS through Sentinel is not built (docs/redis.md, 'Not built: TLS through Sentinel'); run one or the other"
  [ "$PARTITIONS" = 0 ] || die "TLS=1 and PARTITIONS do not go together: the netfault proxies route plain TCP to one Redis; run one or the other"
  command -v openssl >/dev/null || die "TLS=1 needs the openssl CLI (scripts/install-deps.sh)"
  command -v redis-cli >/dev/null || die "TLS=1 needs redis-cli (scripts/install-deps.sh)"
fi
if [ "$SENTINEL" = 1 ]; then
  command -v redis-sentinel >/dev/null || die "redis-sentinel missing (scripts/install-deps.sh)"
  [ "$PARTITIONS" = 0 ] || die "PARTITIONS and SENTINEL=1 do not go together (the proxies route to one Redis)"
  [ "$REDIS_RESTARTS" = 0 ] || { log "SENTINEL=1: REDIS_RESTARTS=$REDIS_RESTARTS ignored (the stack's Redis is not used; PRIMARY_SWITCHES)"; REDIS_RESTARTS=0; }
elif [ "$PRIMARY_SWITCHES" -gt 0 ]; then
  die "PRIMARY_SWITCHES needs SENTINEL=1"
fi
if [ "$RECONCILE" = auto ]; then
  if "$DISPATCHD" reconcile --help >/dev/null 2>&1; then RECONCILE=1; else RECONCILE=0; fi
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/dd-fleet.XXXXXX")
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$T/sanitizer"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T/sanitizer"
D=${OUT:-$T/out}
mkdir -p "$D" "$T/hosts"
: >"$D/events.log"; : >"$D/children.log"
declare -A HPID=() WPID=() PXPID=() SPID=() RSPID=()
EPIDS=()   # etcdctl lock holders (session leaders)
ETCD_PID=""; WATCH_PID=""; WATCHDOG=""; STACK_UP=0
BAD_EXITS=0 # dispatchd processes that exited other than expected
SCOPE=(--state-dir "$T/stack")

# ---- cleanup: everything we started ----------------------------------------------
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END { n = split(kids[root], q, " "); i = 1
          while (i <= n) { p = q[i++]; print p; m = split(kids[p], c, " "); for (j = 1; j <= m; j++) q[++n] = c[j] } }'
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  [ -n "$WATCHDOG" ] && { kill $(descendants "$WATCHDOG") "$WATCHDOG" 2>/dev/null; wait "$WATCHDOG" 2>/dev/null; }
  local all=() p
  for p in "${HPID[@]}" "${WPID[@]}"; do kill -CONT "$p" 2>/dev/null; all+=("$p" $(descendants "$p")); done
  for p in "${EPIDS[@]}"; do all+=("$p" $(descendants "$p")); kill -TERM -- "-$p" 2>/dev/null; done
  for p in "${PXPID[@]}"; do all+=("$p"); kill -TERM "$p" 2>/dev/null; done
  for p in "${HPID[@]}" "${WPID[@]}"; do kill -TERM "$p" 2>/dev/null; done
  local end=$((SECONDS + 15)) alive
  while [ $SECONDS -lt $end ]; do
    alive=0; for p in "${HPID[@]}" "${WPID[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  # every host and worker still running at the end must stop cleanly on TERM
  local st
  for p in "${HPID[@]}" "${WPID[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
      log "FAIL: dispatchd pid $p did not exit within 15 s of the final TERM"; BAD_EXITS=$((BAD_EXITS + 1))
    else
      wait "$p" 2>/dev/null; st=$?
      # 127: reaped before (a kill -9 checked where it was sent)
      if [ "$st" != 0 ] && [ "$st" != 127 ]; then
        log "FAIL: dispatchd pid $p exited $st after the final TERM (expected 0)"; BAD_EXITS=$((BAD_EXITS + 1))
      fi
    fi
  done
  [ -n "$WATCH_PID" ] && { kill -TERM "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null; }
  # the SDK workers (workflow mode) stop after the hosts, each on its TERM
  for p in "${SPID[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${SPID[@]}"; do
    end=$((SECONDS + 15)); while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      kill -KILL "$p"; log "FAIL: SDK worker pid $p did not exit within 15 s of TERM"; BAD_EXITS=$((BAD_EXITS + 1))
    fi
    wait "$p" 2>/dev/null; st=$?
    [ "$st" = 0 ] || { log "FAIL: SDK worker pid $p exited $st after TERM (expected 0)"; BAD_EXITS=$((BAD_EXITS + 1)); }
  done
  [ -n "$ETCD_PID" ] && { all+=("$ETCD_PID"); kill -TERM "$ETCD_PID" 2>/dev/null; wait "$ETCD_PID" 2>/dev/null; }
  # SENTINEL=1: our redis-servers and sentinels, after the hosts
  for p in "${RSPID[@]}"; do all+=("$p"); kill -TERM "$p" 2>/dev/null; done
  for p in "${RSPID[@]}"; do
    end=$((SECONDS + 10)); while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.05; done
    wait "$p" 2>/dev/null
  done
  for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [ $STACK_UP = 1 ] && "$DISPATCHD" stack stop "${SCOPE[@]}" "${PORTS[@]}" --stop-timeout 10s >/dev/null 2>&1
  if [ -n "${OUT:-}" ]; then
    cp "$T"/hosts/*.log "$D/" 2>/dev/null
    cp "$T/stack/"*.log "$D/" 2>/dev/null
    cp "$T"/redis-*.log "$T"/sentinel-*.log "$D/" 2>/dev/null # SENTINEL=1, TLS=1
  fi
  local f san=0
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    san=1; log "FAIL: sanitizer report in $f:"; head -n 200 "$f" >&2
  done < <(grep -rlIE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$T" "$D" 2>/dev/null | sort -u)
  rm -rf "$T"
  if [ "$rc" = 0 ] && { [ "$san" = 1 ] || [ "$BAD_EXITS" -gt 0 ]; }; then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
( sleep "$MAX_SECONDS"; echo "fleet: MAX_SECONDS=$MAX_SECONDS reached" >&2; kill -TERM $$ ) &
WATCHDOG=$!

now_us() { local t=$EPOCHREALTIME; echo $(( ${t%.*} * 1000000 + 10#${t#*.} )); }
# CPU pressure (PSI, /proc/pressure/cpu "some" total, us): the share of wall
# time in which some runnable task waited for a CPU, over the whole run.
psi_us() { awk '/^some/{for (i = 1; i <= NF; i++) if (sub(/^total=/, "", $i)) print $i}' /proc/pressure/cpu 2>/dev/null || true; }
PSI0=$(psi_us); PSI_T0=$(now_us)
ev() { echo "$(now_us) $*" >>"$D/events.log"; }

pick_ports() {
  read -r RP TP THP EC EP < <($PY - <<'EOF'
import socket
s = [socket.socket() for _ in range(5)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))
EOF
)
  PORTS=(--redis-port "$RP" --temporal-port "$TP" --temporal-http-port "$THP")
  U=http://127.0.0.1:$THP
  RURL=redis://127.0.0.1:$RP/0
  RARGS=(--redis-url "$RURL")
}

# ---- stack -------------------------------------------------------------------------
# A free port can be taken between picking it and binding it (the Temporal dev
# server binds ephemeral ports of its own while Redis starts): pick again, 3 tries.
STACK_UP=1
for try in 1 2 3; do
  pick_ports
  "$DISPATCHD" stack start "${SCOPE[@]}" "${PORTS[@]}" >"$T/stack.out" 2>&1 && break
  cat "$T/stack.out" >&2
  "$DISPATCHD" stack stop "${SCOPE[@]}" >/dev/null 2>&1 || true
  [ "$try" -lt 3 ] || die "stack did not start"
  log "stack did not start (try $try); picking other ports"
done
log "stack up: redis $RP, temporal $U"

# ---- SENTINEL=1: a replicated Redis behind three sentinels -------------------------
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_rs() { # port [args]: a redis-server of ours (pid in RSPID[port])
  local port=$1; shift
  mkdir -p "$T/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$T/redis-$port" \
    --loglevel warning "$@" >>"$T/redis-$port.log" 2>&1 &
  RSPID[$port]=$!
  local i; for i in $(seq 1 300); do redis-cli -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  die "redis on $port did not start"
}
primary() { redis-cli -p "$SEN1" sentinel get-master-addr-by-name fleet 2>/dev/null | sed -n 2p; }
if [ "$SENTINEL" = 1 ]; then
  RPRI=$(free_port); start_rs "$RPRI"
  RREP=$(free_port); start_rs "$RREP" --replicaof 127.0.0.1 "$RPRI"
  SENTS=""
  for j in 1 2 3; do
    sp=$(free_port); mkdir -p "$T/sentinel-$sp"
    printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor fleet 127.0.0.1 %s 2\nsentinel down-after-milliseconds fleet %s\nsentinel failover-timeout fleet 4000\n' \
      "$sp" "$T/sentinel-$sp" "$RPRI" "$SENTINEL_DOWN_MS" >"$T/sentinel-$sp/sentinel.conf"
    redis-sentinel "$T/sentinel-$sp/sentinel.conf" >>"$T/sentinel-$sp.log" 2>&1 &
    RSPID[s$j]=$!
    [ "$j" = 1 ] && SEN1=$sp
    SENTS=${SENTS:+$SENTS,}127.0.0.1:$sp
  done
  for _ in $(seq 1 600); do
    ok=1
    for sp in ${SENTS//127.0.0.1:/}; do sp=${sp%,}
      [ "$(redis-cli -p "$sp" sentinel master fleet 2>/dev/null | awk 'p{print; exit} /^num-other-sentinels$/{p=1}')" = 2 ] || ok=0
      [ "$(redis-cli -p "$sp" sentinel master fleet 2>/dev/null | awk 'p{print; exit} /^num-slaves$/{p=1}')" = 1 ] || ok=0
    done
    [ $ok = 1 ] && break; sleep 0.1
  done
  [ $ok = 1 ] || die "the sentinels did not find each other and the replica"
  for _ in $(seq 1 600); do redis-cli -p "$RREP" info replication | grep -q master_link_status:up && break; sleep 0.05; done
  RARGS=(--redis-sentinel "$SENTS" --redis-master-name fleet)
  RP=$RPRI
  log "sentinel: primary $RPRI, replica $RREP, sentinels $SENTS (down-after ${SENTINEL_DOWN_MS} ms)"
fi

# ---- TLS=1: a TLS-only redis-server of ours, certificates made now -----------------
TC=$T/tls
tcli() { redis-cli --tls --cacert "$TC/ca.pem" -h 127.0.0.1 -p "$RTLS" "$@"; }
start_tls_rs() { # the TLS redis on $RTLS (pid in RSPID[$RTLS]); loads its RDB on a restart
  mkdir -p "$T/redis-$RTLS"
  redis-server --port 0 --tls-port "$RTLS" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$T/redis-$RTLS" --loglevel warning --tls-cert-file "$TC/server.pem" \
    --tls-key-file "$TC/server.key" --tls-ca-cert-file "$TC/ca.pem" --tls-auth-clients no \
    >>"$T/redis-$RTLS.log" 2>&1 &
  RSPID[$RTLS]=$!
  local i; for i in $(seq 1 300); do [ "$(tcli ping 2>/dev/null)" = PONG ] && return 0; sleep 0.05; done
  die "the TLS redis on $RTLS did not start (see $T/redis-$RTLS.log)"
}
if [ "$TLS" = 1 ]; then
  mkdir -p "$TC"
  CERT_DIR=$TC; . "$root/tests/support/certs.sh"
  { new_ca ca && new_cert server ca "IP:127.0.0.1" serverAuth; } || die "cannot make the certificates (see $TC/openssl.log)"
  RTLS=$(free_port); start_tls_rs
  [ "$(redis-cli -h 127.0.0.1 -p "$RTLS" ping 2>&1)" != PONG ] || die "the TLS redis on $RTLS answers plain PING"
  RURL=rediss://127.0.0.1:$RTLS/0
  RARGS=(--redis-url "$RURL" --redis-ca-file "$TC/ca.pem")
  RP=$RTLS
  log "tls: TLS-only redis on $RTLS (no plain port), CA $TC/ca.pem"
fi
CHECK_REDIS=(--redis-port "$RP"); [ "$SENTINEL" = 1 ] && CHECK_REDIS+=(--sentinel-port "$SEN1" --master-name fleet)
[ "$TLS" = 1 ] && CHECK_REDIS+=(--tls-ca-file "$TC/ca.pem")

DISP=(); WIDS=()
for q in $(seq 1 "$M"); do DISP+=(--dispatcher "fleet/q$q"); WIDS+=("dispatcher-fleet-q$q"); done
printf '%s\n' "${WIDS[@]}" >"$D/dispatchers"

if [ "$MODE" = workflow ]; then
  # Temporal only: the running DispatcherWorkflow runs of every ID, every 250 ms
  $PY "$here/checker.py" watch --dir "$D" --redis-port 0 --temporal-url "$U" \
    --workflow-type DispatcherWorkflow --max-seconds "$MAX_SECONDS" 2>"$T/watch.err" &
  WATCH_PID=$!
  : >"$D/runs.log"
  QS=$(seq -s, -f 'q%g' 1 "$M")
  for j in $(seq 1 "$SDK_WORKERS"); do
    "$DD_INTEROP" worker --address "127.0.0.1:$TP" --task-queue "$QS" --cas-every "$CAS_EVERY" \
      --runs-log "$D/runs.log" </dev/null 2>>"$T/hosts/sdk$j.log" &
    SPID[sdk$j]=$!
  done
  for j in $(seq 1 "$SDK_WORKERS"); do
    for _ in $(seq 1 600); do grep -q event=worker_started "$T/hosts/sdk$j.log" 2>/dev/null && break; sleep 0.05; done
    grep -q event=worker_started "$T/hosts/sdk$j.log" || die "SDK worker sdk$j did not start (see $T/hosts/sdk$j.log)"
  done
  log "$SDK_WORKERS SDK workers up on $QS (continue-as-new every $CAS_EVERY)"
else
  $PY "$here/checker.py" watch --dir "$D" "${CHECK_REDIS[@]}" --temporal-url "$U" \
    --max-seconds "$MAX_SECONDS" 2>"$T/watch.err" &
  WATCH_PID=$!
fi

# ---- hosts ---------------------------------------------------------------------------
# With PARTITIONS, every host talks to Redis and Temporal through its own proxy
# (kept across the host's restarts), so one host can be cut off alone.
start_proxy() { # h
  $PY "$root/tests/support/netfault_proxy.py" --route "redis=127.0.0.1:$RP" \
    --route "temporal=127.0.0.1:$THP" --port-file "$T/hosts/$1.ports" \
    2>>"$T/hosts/$1.proxy.log" &
  PXPID[$1]=$!
  local i; for i in $(seq 1 100); do [ -s "$T/hosts/$1.ports" ] && return 0; sleep 0.05; done
  die "the proxy of $1 did not start"
}
pport() { awk -v r="$2" '$1==r{print $2}' "$T/hosts/$1.ports"; }
netmode() { # h route|all pass|hold|asym
  local ans
  exec 7<>"/dev/tcp/127.0.0.1/$(pport "$1" control)"; echo "mode $2 $3" >&7; read -r ans <&7; exec 7>&-
  [ "$ans" = ok ] || die "proxy of $1 refused 'mode $2 $3': $ans"
}
start_host() { # h
  ev host_start "$1"
  local u=$U r=$RURL
  if [ "$PARTITIONS" -gt 0 ]; then
    [ -n "${PXPID[$1]:-}" ] || start_proxy "$1"
    u=http://127.0.0.1:$(pport "$1" temporal); r=redis://127.0.0.1:$(pport "$1" redis)/0
  fi
  local pre=() child=("$PY")
  local sk=${SKEW_OF[$(( ${1#h} - 1 ))]:-0}
  if [ "$sk" != 0 ]; then
    pre=(env "LD_PRELOAD=$FAKETIME_LIB" "FAKETIME=$sk" FAKETIME_DONT_FAKE_MONOTONIC=1)
    child=(env -u LD_PRELOAD -u FAKETIME "$PY")   # libfaketime breaks Python's sleeps
  fi
  local mode_args=(--stop-timeout 5s -- "${child[@]}" -S "$here/child.py" "$D/children.log")
  # workflow mode: the user's workflow acts, no child command
  [ "$MODE" = workflow ] && mode_args=(--workflow-type DispatcherWorkflow --input '{}' --input-server-id-field server_id)
  local red=(--redis-url "$r"); { [ "$SENTINEL" = 1 ] || [ "$TLS" = 1 ]; } && red=("${RARGS[@]}")
  "${pre[@]}" "$DISPATCHD" run "${DISP[@]}" --temporal-url "$u" "${red[@]}" --server-id "$1" \
    --heartbeat-interval "$HB" --stale-threshold "$THRESH" --metrics-listen 127.0.0.1:0 \
    --reconcile-interval "$RECONCILE_INTERVAL" "${mode_args[@]}" \
    </dev/null >>"$T/hosts/$1.log" 2>&1 &
  HPID[$1]=$!
}
# owners: "wid server" for every dispatcher whose newest child has not stopped;
# workflow mode: the server id that started the newest run each ID began
# (the workflow's own record, runs.log)
owners() {
  if [ "$MODE" = workflow ]; then
    awk '$1=="run" && $2>=t[$3] {t[$3]=$2; o[$3]=$7} END{for (w in o) print w, o[w]}' "$D/runs.log"
    return
  fi
  awk '$1=="start"{o[$3]=$5; k[$3]=$6} $1=="stop"{ if (k[$3]==$6) delete o[$3] }
       END{for (w in o) print w, o[w]}' "$D/children.log"
}
owner_hosts() { owners | awk '{print $2}' | sort -u; }
# every dispatcher has a running child, whose last tick is recent, and (with $1)
# all of them belong to host $1
settled() {
  local want=${1:-} now; now=$(now_us)
  if [ "$MODE" = workflow ]; then
    # every ID's newest run began within CAS_EVERY + 3 s (a live chain begins
    # one every CAS_EVERY), by $1 if given, and none by $2 (a host that was
    # killed/stopped/cut: its chains keep running until they are replaced)
    awk -v m="$M" -v want="$want" -v not="${2:-}" -v now="$now" -v fresh="$(( ${CAS_EVERY%s} * 1000000 + 3000000 ))" '
      $1=="run" && $2>=t[$3] {t[$3]=$2; o[$3]=$7}
      END{ n=0; for (w in o) { if (want != "" && o[w] != want) exit 1; if (not != "" && o[w] == not) exit 1
                               if (now - t[w] > fresh) exit 1; n++ }
           exit (n == m) ? 0 : 1 }' "$D/runs.log"
    return
  fi
  awk -v m="$M" -v want="$want" -v now="$now" '
    $1=="start"{o[$3]=$5; k[$3]=$6; last[$3]=$2}
    $1=="tick"{ if (k[$3]==$6) last[$3]=$2 }
    $1=="stop"{ if (k[$3]==$6) delete o[$3] }
    END{ n=0; for (w in o) { if (want != "" && o[w] != want) exit 1; if (now - last[w] > 1000000) exit 1; n++ }
         exit (n == m) ? 0 : 1 }' "$D/children.log"
}
# and no stopped-but-not-yet-stopped children: the number of live child.py
# processes equals M (a zombie's child counts)
children_alive() { pgrep -f -- "^$PY -S $here/child.py $D/children.log" | wc -l; }
wait_settled() { # what [host [not-host]]
  local end=$((SECONDS + SETTLE_S))
  while [ $SECONDS -lt $end ]; do
    if [ "$MODE" = workflow ]; then
      settled "${2:-}" "${3:-}" && return 0
    elif settled "${2:-}" && [ "$(children_alive)" -eq "$M" ]; then return 0; fi
    sleep 0.05
  done
  ev settle_timeout "$1"; log "WARN: not settled within ${SETTLE_S}s after $1"
  return 1
}
stop_host() { # h: SIGTERM, bounded wait
  local h=$1 p=${HPID[$1]}
  ev host_term "$h"; kill -TERM "$p" 2>/dev/null
  local end=$((SECONDS + 15))
  while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.02; done
  if kill -0 "$p" 2>/dev/null; then ev term_timeout "$h"; kill -KILL "$p"; fi
  local rc=0
  wait "$p" 2>/dev/null || rc=$?
  # a graceful stop exits 0 (under ASan a leak or UB report makes it non-zero)
  ev host_exit "$h" "$rc"
  if [ "$rc" != 0 ]; then
    BAD_EXITS=$((BAD_EXITS + 1))
    log "WARN: $h exited $rc after SIGTERM:"; tail -20 "$T/hosts/$h.log" >&2
  fi
}
expect_killed() { # pid name: reaps a process we sent kill -9; anything but 137 is counted
  local rc=0
  wait "$1" 2>/dev/null || rc=$?
  if [ "$rc" != 137 ]; then
    BAD_EXITS=$((BAD_EXITS + 1)); log "WARN: $2 exited $rc, not by our kill -9 (137)"
  fi
}
reconcile() {
  [ "$RECONCILE" = 1 ] || return 0
  local rc=0
  timeout 30 "$DISPATCHD" reconcile --temporal-url "$U" "${RARGS[@]}" \
    --stale-threshold "$THRESH" >>"$T/reconcile.out" 2>>"$T/reconcile.log" || rc=$?
  ev reconcile "$rc"
}

for i in $(seq 1 "$N"); do
  start_host "h$i"
  wait_settled "start h$i" "h$i" || die "h$i did not take over everything (see $T/hosts/h$i.log)"
done
log "$N hosts up; h$N owns all $M dispatchers"

# ---- workers ---------------------------------------------------------------------
WSEQ=0
start_worker() { # q
  WSEQ=$((WSEQ + 1)); local sid=w$WSEQ
  "$DISPATCHD" worker --dispatcher "fleet/q$1" --server-id "$sid" "${RARGS[@]}" \
    --heartbeat-interval "$HB" </dev/null >>"$T/hosts/workers.log" 2>&1 &
  WPID[$sid]=$!
  echo "$sid fleet/q$1" >>"$T/workers"
  ev worker_start "dispatcher-fleet-q$1" "$sid"
}
for j in $(seq 1 "$W"); do start_worker $(( (j - 1) % M + 1 )); done

# ---- etcd anchor -----------------------------------------------------------------
start_etcd_holder() { # name
  # (etcdctl parses flags after the command too: the command is a flagless script)
  DISPATCHD_SERVER_ID=$1 setsid etcdctl --endpoints="127.0.0.1:$EC" lock --ttl="$ETCD_TTL" \
    fleet-anchor "$T/etcd-child.sh" </dev/null >>"$T/etcd-holders.log" 2>&1 &
  EPIDS+=($!)
  ev etcd_start "$1" $!
}
etcd_holder_of() { # pid of the etcdctl whose child acts now
  local cpid; cpid=$(awk '$1=="start"{p=$6} END{print p}' "$D/etcd_children.log" 2>/dev/null)
  [ -n "$cpid" ] || return 1
  local p
  for p in "${EPIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || continue
    descendants "$p" | grep -qx "$cpid" && { echo "$p"; return 0; }
  done
  return 1
}
ESEQ=0
if [ "$ETCD_KILLS" -gt 0 ]; then
  mkdir -p "$T/etcd"
  etcd --name fleet --data-dir "$T/etcd/data" --listen-client-urls "http://127.0.0.1:$EC" \
    --advertise-client-urls "http://127.0.0.1:$EC" --listen-peer-urls "http://127.0.0.1:$EP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
    --initial-cluster "fleet=http://127.0.0.1:$EP" --log-level warn >"$T/etcd/etcd.log" 2>&1 &
  ETCD_PID=$!
  for _ in $(seq 1 200); do etcdctl --endpoints="127.0.0.1:$EC" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
  : >"$D/etcd_children.log"
  printf '#!/bin/sh\nDISPATCHD_WORKFLOW_ID=etcd-anchor DISPATCHD_RUN_ID=rev$ETCD_LOCK_REV exec %s -S %s %s\n' \
    "$PY" "$here/child.py" "$D/etcd_children.log" >"$T/etcd-child.sh"
  chmod +x "$T/etcd-child.sh"
  for j in $(seq 1 "$ETCD_HOLDERS"); do ESEQ=$((ESEQ + 1)); start_etcd_holder "e$ESEQ"; done
  for _ in $(seq 1 100); do etcd_holder_of >/dev/null && break; sleep 0.1; done
  log "etcd anchor up on 127.0.0.1:$EC: $ETCD_HOLDERS holders, lock TTL ${ETCD_TTL}s"
fi
etcd_kill_cycle() {
  local p; p=$(etcd_holder_of) || { ev etcd_no_holder; return 0; }
  # the holder dies with its process tree (etcdctl does not stop its command when
  # it is killed alone: see RESULTS.md), like a dispatchd host whose guard works
  ev etcd_kill9 "$p"; kill -KILL -- "-$p" 2>/dev/null
  local end=$((SECONDS + SETTLE_S)) cur
  while [ $SECONDS -lt $end ]; do
    cur=$(etcd_holder_of) && [ "$cur" != "$p" ] && break
    sleep 0.05
  done
  ESEQ=$((ESEQ + 1)); start_etcd_holder "e$ESEQ"
}

# ---- scenarios ---------------------------------------------------------------------
pick_owner() { owner_hosts | shuf -n1; }
rolling() {
  # Each round restarts every host once, the current owner first: with
  # takeover at start (the newest starter wins) the restarted host owns
  # everything afterwards, so every round has one release handover (SIGTERM of
  # the owner -> standbys) and N takeovers at start (the restarted host takes
  # over from the previous owner).
  local r h first
  for r in $(seq 1 "$ROLLING_ROUNDS"); do
    first=$(pick_owner)
    for h in $first $(printf 'h%s\n' $(seq 1 "$N") | grep -vx "$first"); do
      stop_host "$h"
      wait_settled "term $h" "" "$h" || true
      start_host "$h"
      wait_settled "restart $h" "$h" || true
      reconcile
    done
    log "rolling round $r/$ROLLING_ROUNDS done"
  done
}
kills() {
  local k h e=0
  for k in $(seq 1 "$KILLS"); do
    h=$(pick_owner); [ -n "$h" ] || { wait_settled "kill $k: no owner" || true; h=$(pick_owner); }
    # nobody owns anything (Temporal itself failing, say): nothing to kill this round
    [ -n "$h" ] || { ev kill_skipped "$k"; log "WARN: kill $k skipped: no owner"; continue; }
    ev host_kill9 "$h"; kill -KILL "${HPID[$h]}"; expect_killed "${HPID[$h]}" "$h"
    wait_settled "kill9 $h" "" "$h" || true
    reconcile
    start_host "$h"
    wait_settled "restart $h" "$h" || true
    if [ $e -lt "$ETCD_KILLS" ]; then etcd_kill_cycle; e=$((e + 1)); fi
    if [ $((k % 25)) = 0 ]; then log "kill -9 $k/$KILLS (load $(cut -d' ' -f1 /proc/loadavg))"; fi
  done
  while [ $e -lt "$ETCD_KILLS" ]; do etcd_kill_cycle; e=$((e + 1)); done
}
stops() {
  local k h p pids end scope
  for k in $(seq 1 "$STOPS"); do
    h=$(pick_owner); p=${HPID[$h]}
    scope=$STOP_SCOPE
    [ "$scope" = both ] && { scope=host; [ $((k % 2)) = 1 ] && scope=daemon; }
    pids=("$p"); [ "$scope" = host ] && pids+=($(descendants "$p"))
    ev host_stop "$h" "$scope"; kill -STOP "${pids[@]}"
    # wait for every dispatcher to have a child of another host (bounded), then
    # keep it paused one more threshold: its record is long stale, it is a zombie
    end=$((SECONDS + SETTLE_S))
    while [ $SECONDS -lt $end ]; do
      owners | awk -v h="$h" '$2==h{f=1} END{exit f}' && [ "$(owners | wc -l)" -eq "$M" ] && break
      sleep 0.05
    done
    sleep "$THRESH_S"
    ev host_cont "$h"; kill -CONT "${pids[@]}"
    wait_settled "cont $h" "" "$h" || true
    reconcile
  done
}
redis_restarts() {
  local k
  for k in $(seq 1 "$REDIS_RESTARTS"); do
    if [ "$TLS" = 1 ]; then
      # graceful, like the stack's: SHUTDOWN SAVE writes the RDB the restart loads
      ev redis_stop; tcli shutdown save >>"$T/stack.out" 2>&1 || true
      local p=${RSPID[$RTLS]} end=$((SECONDS + 15))
      while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.02; done
      kill -0 "$p" 2>/dev/null && die "the TLS redis (pid $p) did not stop within 15 s of SHUTDOWN SAVE"
      wait "$p" 2>/dev/null || true
      [ -s "$T/redis-$RTLS/dump.rdb" ] || die "the TLS redis left no RDB in $T/redis-$RTLS"
      sleep "$REDIS_DOWN_S"
      ev redis_start; start_tls_rs
    else
      ev redis_stop; "$DISPATCHD" stack stop redis "${SCOPE[@]}" "${PORTS[@]}" >>"$T/stack.out" 2>&1
      sleep "$REDIS_DOWN_S"
      ev redis_start; "$DISPATCHD" stack start redis "${SCOPE[@]}" "${PORTS[@]}" >>"$T/stack.out" 2>&1 ||
        die "redis did not come back"
    fi
    wait_settled "redis restart $k" || true
    reconcile
  done
}
all_see_promotable() { # port: every sentinel lists it as a replica with priority 100
  local sp
  for sp in ${SENTS//,/ }; do
    redis-cli -p "${sp#127.0.0.1:}" sentinel replicas fleet 2>/dev/null |
      awk -v p="$1" '/^port$/{getline; cur=$0} /^slave-priority$/{getline; if (cur==p && $0==100) f=1} END{exit !f}' ||
      return 1
  done
}
primary_switches() { # SENTINEL=1: SENTINEL FAILOVER and kill -9 of the primary, alternately
  local k old new end
  for k in $(seq 1 "$PRIMARY_SWITCHES"); do
    old=$(primary)
    if [ $((k % 2)) = 1 ]; then
      ev primary_failover "$old"
      redis-cli -p "$SEN1" sentinel failover fleet >>"$T/sentinel-cmds.out" 2>&1
    else
      ev primary_kill9 "$old"; kill -KILL "${RSPID[$old]}"; wait "${RSPID[$old]}" 2>/dev/null || true
    fi
    end=$((SECONDS + SETTLE_S))
    while new=$(primary); [ -z "$new" ] || [ "$new" = "$old" ]; do
      [ $SECONDS -lt $end ] || die "the sentinels did not switch away from $old within ${SETTLE_S}s"
      sleep 0.02
    done
    ev primary_switched "$new"
    if [ $((k % 2)) = 0 ]; then
      # back empty (no persistence): promotable only once it has synced, or
      # a failover can pick it and lose everything (seen at down-after
      # 500 ms under load: a second failover promoted it 0.8 s after its start)
      start_rs "$old" --replicaof 127.0.0.1 "$new" --replica-priority 0; ev primary_old_restarted "$old"
    fi
    # the next switch needs a replica in sync with the primary (whichever it is now)
    end=$((SECONDS + SETTLE_S))
    until [ "$(redis-cli -p "$old" info replication 2>/dev/null | tr -d '\r' | grep -c -e role:slave -e master_link_status:up -e "master_port:$(primary)\$")" = 3 ]; do
      [ $SECONDS -lt $end ] || die "the old primary $old did not follow the primary $(primary) within ${SETTLE_S}s"
      sleep 0.05
    done
    if [ $((k % 2)) = 0 ]; then
      redis-cli -p "$old" config set replica-priority 100 >/dev/null
      # every sentinel must know it is promotable again before the next kill
      end=$((SECONDS + SETTLE_S))
      until all_see_promotable "$old"; do
        [ $SECONDS -lt $end ] || die "the sentinels did not see $old as promotable within ${SETTLE_S}s"
        sleep 0.1
      done
    fi
    wait_settled "primary switch $k ($old -> $new)" || true
    reconcile
    log "primary switch $k/$PRIMARY_SWITCHES: $old -> $new"
  done
}
temporal_restarts() {
  local k
  for k in $(seq 1 "$TEMPORAL_RESTARTS"); do
    ev temporal_stop; "$DISPATCHD" stack stop temporal "${SCOPE[@]}" "${PORTS[@]}" >>"$T/stack.out" 2>&1
    ev temporal_start; "$DISPATCHD" stack start temporal "${SCOPE[@]}" "${PORTS[@]}" >>"$T/stack.out" 2>&1 ||
      die "temporal did not come back"
    wait_settled "temporal restart $k" || true
    reconcile
  done
}
skew_holds() {
  local k h
  for k in $(seq 1 "$SKEW_HOLDS"); do
    h=h$(( (k - 1) % N + 1 ))
    stop_host "$h"; wait_settled "term $h" "" "$h" || true
    start_host "$h"; wait_settled "restart $h" "$h" || true
    ev skew_hold_start "$h" "skew=${SKEW_OF[$(( ${h#h} - 1 ))]:-0}"
    sleep "$SKEW_HOLD_S"
    ev skew_hold_end "$h" "skew=${SKEW_OF[$(( ${h#h} - 1 ))]:-0}"
  done
}
partitions() {
  local k h mode modes=($PARTITION_MODES) end
  for k in $(seq 1 "$PARTITIONS"); do
    mode=${modes[$(( (k - 1) % ${#modes[@]} ))]}
    h=$(pick_owner); [ -n "$h" ] || { wait_settled "partition $k: no owner" || true; h=$(pick_owner); }
    ev host_partition "$h" "$mode"
    case $mode in
      whole) netmode "$h" all hold ;;
      redis) netmode "$h" redis hold ;;
      temporal) netmode "$h" temporal hold ;;
      asym) netmode "$h" all asym ;;
      *) die "unknown partition mode $mode" ;;
    esac
    if [ "$mode" = temporal ]; then
      sleep $((THRESH_S + 2))   # nobody may move: the checker sees it in the children
    else
      # every dispatcher acts on another host (bounded), then one more interval held
      end=$((SECONDS + SETTLE_S))
      while [ $SECONDS -lt $end ]; do
        owners | awk -v h="$h" '$2==h{f=1} END{exit f}' && [ "$(owners | wc -l)" -eq "$M" ] && break
        sleep 0.05
      done
      sleep 1
    fi
    ev host_heal "$h" "$mode"; netmode "$h" all pass
    wait_settled "heal $h ($mode)" || true
    reconcile
    if [ $((k % 10)) = 0 ]; then log "partition $k/$PARTITIONS (load $(cut -d' ' -f1 /proc/loadavg))"; fi
  done
}
worker_kills() {
  local k line sid q
  [ "$W" -gt 0 ] || return 0
  for k in $(seq 1 "$WORKER_KILLS"); do
    line=$(shuf -n1 "$T/workers"); sid=${line%% *}; q=${line#* }
    ev worker_kill9 "dispatcher-${q/\//-}" "$sid"
    kill -KILL "${WPID[$sid]}" 2>/dev/null; expect_killed "${WPID[$sid]}" "worker $sid"
    unset "WPID[$sid]"; { grep -v "^$sid " "$T/workers" || true; } >"$T/workers.new"; mv "$T/workers.new" "$T/workers"
    start_worker "${q#fleet/q}"
    sleep "$THRESH_S"
  done
  # the last kills need a threshold + an eviction pass
  sleep $((THRESH_S * 2))
}
idle() {
  [ "$IDLE_S" -gt 0 ] || return 0
  wait_settled "idle" || true
  local h tck; tck=$(getconf CLK_TCK)
  declare -A c0=()
  for h in "${!HPID[@]}"; do c0[$h]=$(awk '{print $14 + $15}' "/proc/${HPID[$h]}/stat"); done
  local t0=$SECONDS
  sleep "$IDLE_S"
  for h in $(printf '%s\n' "${!HPID[@]}" | sort); do
    local p=${HPID[$h]} c1 rss hwm
    c1=$(awk '{print $14 + $15}' "/proc/$p/stat")
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$p/status"); hwm=$(awk '/^VmHWM/{print $2}' "/proc/$p/status")
    ev idle_sample "host=$h" "pid=$p" "rss_kb=$rss" "hwm_kb=$hwm" \
      "cpu_pct=$(awk -v a="${c0[$h]}" -v b="$c1" -v t="$tck" -v s="$((SECONDS - t0))" 'BEGIN{printf "%.3f", (b-a)/t/s*100}')" \
      "owns=$(owners | awk -v h="$h" '$2==h' | wc -l)"
  done
}

{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=MODE=$MODE SDK_WORKERS=$SDK_WORKERS CAS_EVERY=$CAS_EVERY N=$N M=$M W=$W HB=$HB THRESH_S=$THRESH_S THRESH=$THRESH ROLLING_ROUNDS=$ROLLING_ROUNDS KILLS=$KILLS STOPS=$STOPS STOP_SCOPE=$STOP_SCOPE REDIS_RESTARTS=$REDIS_RESTARTS TEMPORAL_RESTARTS=$TEMPORAL_RESTARTS TLS=$TLS SENTINEL=$SENTINEL PRIMARY_SWITCHES=$PRIMARY_SWITCHES SENTINEL_DOWN_MS=$SENTINEL_DOWN_MS WORKER_KILLS=$WORKER_KILLS PARTITIONS=$PARTITIONS SKEWS=\"$SKEWS\" SKEW_HOLDS=$SKEW_HOLDS ETCD_KILLS=$ETCD_KILLS ETCD_TTL=$ETCD_TTL IDLE_S=$IDLE_S WINDOW_MS=$WINDOW_MS bench/fleet/run.sh"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "mem=$(awk '/MemTotal/{print $2" kB"}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "redis=$(redis-server --version | awk '{print $3}')"
  echo "temporal=$("$root/.tools/bin/temporal" --version 2>/dev/null || temporal --version 2>/dev/null)"
  echo "etcd=$(etcd --version 2>/dev/null | head -1)"
  echo "dispatchd=$(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
  echo "reconcile_cycles=$RECONCILE reconcile_interval_in_hosts=$RECONCILE_INTERVAL"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$D/meta"

idle
if [ "$ROLLING_ROUNDS" -gt 0 ]; then rolling; fi
if [ "$KILLS" -gt 0 ]; then kills; fi
if [ "$STOPS" -gt 0 ]; then stops; fi
if [ "$SKEW_HOLDS" -gt 0 ]; then skew_holds; fi
if [ "$PARTITIONS" -gt 0 ]; then partitions; fi
if [ "$WORKER_KILLS" -gt 0 ]; then worker_kills; fi
if [ "$REDIS_RESTARTS" -gt 0 ]; then redis_restarts; fi
if [ "$TEMPORAL_RESTARTS" -gt 0 ]; then temporal_restarts; fi
if [ "$PRIMARY_SWITCHES" -gt 0 ]; then primary_switches; fi
# quiet period: whatever the last scenario set in motion (reconciler cycles,
# late failovers) happens now, so the end state the checker reads is settled
wait_settled "end" || true
sleep "$QUIET_S"
wait_settled "end (after ${QUIET_S}s quiet)" || true
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$D/meta"
PSI_PCT=""
if [ -n "$PSI0" ]; then
  PSI_PCT=$(awk -v a="$PSI0" -v b="$(psi_us)" -v t="$(( $(now_us) - PSI_T0 ))" 'BEGIN { printf "%.1f", (b - a) * 100 / t }')
fi
echo "cpu_pressure_some_pct=${PSI_PCT:-unknown}" >>"$D/meta"
log "CPU pressure during the run: ${PSI_PCT:-unknown} % of the time some task waited for a CPU"
if [ "$LATENCY_FACTOR" = auto ]; then
  LATENCY_FACTOR=$(awk -v p="${PSI_PCT:-0}" 'BEGIN { p /= 100; if (p > 0.9) p = 0.9; if (p < 0) p = 0; printf "%.2f", 1 / (1 - p) }')
  log "latency targets' slack stretched by $LATENCY_FACTOR (1 / (1 - CPU pressure))"
fi
echo "latency_factor=$LATENCY_FACTOR" >>"$D/meta"
ev settled_end
log "scenarios done; checking"
kill -TERM "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null || true; WATCH_PID=""
extra=(--latency-factor "$LATENCY_FACTOR"); [ "$ENFORCE_TARGETS" = 1 ] && extra+=(--enforce-targets)
set +e
if [ "$MODE" = workflow ]; then
  $PY "$here/wfchecker.py" --dir "$D" --temporal-url "$U" --workflow-type DispatcherWorkflow \
    --stale-threshold-s "$THRESH_S" "${extra[@]}" | tee "$D/report.txt"
  rc=${PIPESTATUS[0]}
else
  $PY "$here/checker.py" check --dir "$D" --temporal-url "$U" "${CHECK_REDIS[@]}" \
    --window-ms "$WINDOW_MS" --stale-threshold-s "$THRESH_S" --final "${extra[@]}" | tee "$D/report.txt"
  rc=${PIPESTATUS[0]}
fi
set -e
log "checker exit $rc${OUT:+; results in $D}"
if [ "$BAD_EXITS" -gt 0 ]; then
  log "FAIL: $BAD_EXITS graceful stops of dispatchd exited non-zero (see above)"
  [ "$rc" = 0 ] && rc=1
fi
exit "$rc"
