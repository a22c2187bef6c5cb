#!/usr/bin/env bash
# bench/stack_restart/run.sh - time from `kill -9` of a supervised redis-server
# to PING answering again, for `dispatchd up`, supervisord, s6-supervise and
# runsv, each supervising its own redis-server on its own loopback port.
#
#   TRIALS=30 bench/stack_restart/run.sh            (then report.py on the CSV)
#
# Env: TRIALS (30), STABLE_S (3.5: minimum uptime before a kill, dispatchd's
# 3 s stable period plus margin, used for every supervisor), GAP_MS (500:
# minimum time between two kills of different supervisors), PROBE_INTERVAL_US
# (1000), SUPERVISORS ("dispatchd supervisord s6 runit"), OUT (CSV path,
# default results/restart.csv), DISPATCHD (build/dispatchd), MAX_SECONDS (1800).
#
# The trials are interleaved round-robin (trial 1 of every supervisor, then
# trial 2, ...) so that machine noise hits every supervisor alike. Everything
# runs under a private temp dir with private config / service dirs, on free
# loopback ports; the EXIT trap stops what this script started (by pid).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
TRIALS=${TRIALS:-30}
STABLE_S=${STABLE_S:-3.5}
GAP_MS=${GAP_MS:-500}
PROBE_INTERVAL_US=${PROBE_INTERVAL_US:-1000}
SUPERVISORS=${SUPERVISORS:-"dispatchd supervisord s6 runit"}
OUT=${OUT:-$here/results/restart.csv}
DISPATCHD=${DISPATCHD:-$root/build/dispatchd}
MAX_SECONDS=${MAX_SECONDS:-1800}
read -r -a SUPS <<<"$SUPERVISORS"

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "# $(date -u +%H:%M:%S) $*" >&2; }

REDIS=$(command -v redis-server) || die "redis-server not found"
for s in "${SUPS[@]}"; do
  case $s in
    dispatchd) [ -x "$DISPATCHD" ] || die "$DISPATCHD missing (BUILD_DIR=build scripts/build.sh)";;
    supervisord) command -v supervisord >/dev/null || die "supervisord missing (DD_INSTALL_BENCH=1 scripts/install-deps.sh)";;
    s6) command -v s6-supervise >/dev/null || die "s6-supervise missing (DD_INSTALL_BENCH=1 scripts/install-deps.sh)";;
    runit) command -v runsv >/dev/null || die "runsv missing (DD_INSTALL_BENCH=1 scripts/install-deps.sh)";;
    *) die "unknown supervisor '$s'";;
  esac
done
command -v cc >/dev/null || die "cc missing"

T=$(mktemp -d /tmp/dd-bench-restart.XXXXXX)
declare -A SUP_PID=() PORT=()
PORTS_ALL=()
WATCHDOG=""

# ---- cleanup: everything we started, by pid ------------------------------
descendants() { # pids below $1 (not $1 itself)
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END { n = split(kids[root], q, " "); i = 1
          while (i <= n) { p = q[i++]; print p; m = split(kids[p], c, " "); for (j = 1; j <= m; j++) q[++n] = c[j] } }'
}
port_owners() { # pids listening on 127.0.0.1:$1
  ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}
ours() { # is pid $1 (still) a redis-server / temporal / supervisor process?
  local c; c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  case $c in *redis-server*|*temporal*|*dispatchd*|*supervisord*|*s6-supervise*|*runsv*) return 0;; esac
  return 1
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if [ -n "$WATCHDOG" ]; then
    kill $(descendants "$WATCHDOG") "$WATCHDOG" 2>/dev/null; wait "$WATCHDOG" 2>/dev/null
  fi
  local victims=() p s
  for s in "${!SUP_PID[@]}"; do
    p=${SUP_PID[$s]}
    victims+=("$p" $(descendants "$p"))
  done
  for p in "${PORTS_ALL[@]}"; do victims+=($(port_owners "$p")); done
  # Ask nicely: each supervisor stops its own service.
  [ -d "$T/s6/redis/supervise" ] && timeout 2 s6-svc -dx "$T/s6/redis" 2>/dev/null
  [ -p "$T/runit/redis/supervise/control" ] &&
    timeout 2 bash -c "printf dx >'$T/runit/redis/supervise/control'" 2>/dev/null
  for s in "${!SUP_PID[@]}"; do kill -TERM "${SUP_PID[$s]}" 2>/dev/null; done
  local end=$((SECONDS + 15)) alive
  while [ $SECONDS -lt $end ]; do
    alive=0
    for s in "${!SUP_PID[@]}"; do kill -0 "${SUP_PID[$s]}" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for s in "${!SUP_PID[@]}"; do wait "${SUP_PID[$s]}" 2>/dev/null; done
  for p in "${victims[@]}"; do
    if kill -0 "$p" 2>/dev/null && ours "$p"; then
      echo "run.sh: cleanup: pid $p still alive, SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null
    fi
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "run.sh: kept $T" >&2; else rm -rf "$T"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
# Bounded in time whatever happens.
( sleep "$MAX_SECONDS"; echo "run.sh: MAX_SECONDS=$MAX_SECONDS reached" >&2; kill -TERM $$ ) &
WATCHDOG=$!

cc -O2 -Wall -o "$T/probe" "$here/probe.c" || die "cannot build probe.c"
PROBE=$T/probe

# ---- ports ---------------------------------------------------------------
read -r -a FREE < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(6):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
i=0
for s in "${SUPS[@]}"; do PORT[$s]=${FREE[$i]}; PORTS_ALL+=("${FREE[$i]}"); i=$((i + 1)); done
TPORT=${FREE[4]}; THTTP=${FREE[5]}
PORTS_ALL+=("$TPORT" "$THTTP")

# The one redis command line (dispatchd builds its own, see RESULTS.md).
redis_cmd() { # port dir
  printf '%s --port %s --bind 127.0.0.1 --save "" --appendonly no --dir %s' "$REDIS" "$1" "$2"
}

# ---- start the four supervisors -------------------------------------------
start_dispatchd() {
  local p=${PORT[dispatchd]}
  mkdir -p "$T/dispatchd"
  "$DISPATCHD" up --state-dir "$T/dispatchd/state" --redis-port "$p" \
    --temporal-port "$TPORT" --temporal-http-port "$THTTP" \
    >"$T/dispatchd/up.out" 2>"$T/dispatchd/up.log" </dev/null &
  SUP_PID[dispatchd]=$!
}
start_supervisord() {
  local d=$T/supervisord p=${PORT[supervisord]}
  mkdir -p "$d/data"
  cat >"$d/supervisord.conf" <<EOF
[supervisord]
nodaemon=true
logfile=$d/supervisord.log
pidfile=$d/supervisord.pid
childlogdir=$d
loglevel=info

[program:redis]
command=$(redis_cmd "$p" "$d/data")
autostart=true
autorestart=true
startsecs=1
startretries=1000
stopsignal=TERM
stopwaitsecs=5
redirect_stderr=true
stdout_logfile=$d/redis.log
EOF
  supervisord -n -c "$d/supervisord.conf" >"$d/supervisord.out" 2>&1 </dev/null &
  SUP_PID[supervisord]=$!
}
start_svdir() { # name runner
  local d=$T/$1 p=${PORT[$1]}
  mkdir -p "$d/redis" "$d/data"
  printf '#!/bin/sh\nexec %s 2>&1\n' "$(redis_cmd "$p" "$d/data")" >"$d/redis/run"
  chmod +x "$d/redis/run"
  "$2" "$d/redis" >"$d/out.log" 2>&1 </dev/null &
  SUP_PID[$1]=$!
}

for s in "${SUPS[@]}"; do
  case $s in
    dispatchd) start_dispatchd;;
    supervisord) start_supervisord;;
    s6) start_svdir s6 s6-supervise;;
    runit) start_svdir runit runsv;;
  esac
  log "started $s (pid ${SUP_PID[$s]}), redis on 127.0.0.1:${PORT[$s]}"
done

now_ms() { local t=$EPOCHREALTIME; echo $(( ${t%.*} * 1000 + 10#${t#*.} / 1000 )); }
declare -A READY=()
for s in "${SUPS[@]}"; do
  pid=$("$PROBE" wait "${PORT[$s]}" 120000) || die "$s: redis did not answer on ${PORT[$s]}"
  READY[$s]=$(now_ms)
  ppid=$(ps -o ppid= -p "$pid" | tr -d ' ')
  [ "$ppid" = "${SUP_PID[$s]}" ] ||
    die "$s: redis pid $pid has parent $ppid, not our supervisor ${SUP_PID[$s]}"
done
if [ -n "${SUP_PID[dispatchd]:-}" ]; then
  end=$((SECONDS + 120))
  until grep -q "the local stack is ready" "$T/dispatchd/up.out"; do
    [ $SECONDS -lt $end ] || die "dispatchd up did not become ready"
    kill -0 "${SUP_PID[dispatchd]}" 2>/dev/null || die "dispatchd up exited: $(tail -5 "$T/dispatchd/up.log")"
    sleep 0.2
  done
fi
log "all supervised redis servers answer"

# ---- metadata --------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
META=${OUT%.csv}.meta
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=TRIALS=$TRIALS STABLE_S=$STABLE_S GAP_MS=$GAP_MS PROBE_INTERVAL_US=$PROBE_INTERVAL_US bench/stack_restart/run.sh"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel=$(uname -r)"
  echo "redis=$("$REDIS" --version)"
  echo "dispatchd=$(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
  echo "supervisord=$(supervisord --version 2>/dev/null)"
  echo "s6=$(dpkg-query -W -f='${Version}' s6 2>/dev/null)"
  echo "runit=$(dpkg-query -W -f='${Version}' runit 2>/dev/null)"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  for s in "${SUPS[@]}"; do
    case $s in
      dispatchd) echo "cmd_dispatchd=$(jq -r .cmd "$T/dispatchd/state/redis.status" 2>/dev/null | sed "s#$T#\$TMP#g") (built by dispatchd, from its status file)";;
      supervisord) echo "cmd_supervisord=$(redis_cmd "${PORT[$s]}" "\$TMP/supervisord/data")";;
      *) echo "cmd_$s=/bin/sh run script: exec $(redis_cmd "${PORT[$s]}" "\$TMP/$s/data")";;
    esac
  done
} >"$META"

# ---- trials ----------------------------------------------------------------
echo "trial,supervisor,old_pid,new_pid,kill_wall_us,kill_to_ping_us,attempts,kill_to_exit_seen_us,exit_to_restart_us,kill_to_spawned_us,backoff" >"$OUT"
stable_ms=$(awk -v s="$STABLE_S" 'BEGIN { printf "%d", s * 1000 }')
last_kill=0
logval() { # event pid-or-empty file -> wall_us of the first matching line after line $4
  local ev=$1 pid=$2 f=$3 from=$4 pat="event=$1 service=redis"
  [ -n "$pid" ] && pat="$pat pid=$pid "
  tail -n +"$from" "$f" | grep -m1 -- "$pat" | sed -n 's/.*wall_us=\([0-9]*\).*/\1/p'
}
failures=0
for trial in $(seq 1 "$TRIALS"); do
  for s in "${SUPS[@]}"; do
    # Same spacing for every supervisor: up >= STABLE_S since it answered,
    # and GAP_MS since the previous kill of any supervisor.
    while :; do
      now=$(now_ms)
      wait_ms=$(( READY[$s] + stable_ms - now ))
      g=$(( last_kill + GAP_MS - now )); [ $g -gt $wait_ms ] && wait_ms=$g
      [ $wait_ms -le 0 ] && break
      sleep "$(awk -v m="$wait_ms" 'BEGIN { printf "%.3f", m / 1000 }')"
    done
    port=${PORT[$s]}
    old=$("$PROBE" pid "$port") || die "$s: no answer on $port before trial $trial"
    ppid=$(ps -o ppid= -p "$old" | tr -d ' ')
    [ "$ppid" = "${SUP_PID[$s]}" ] || die "$s: pid $old is not a child of our ${SUP_PID[$s]}"
    from=1
    [ "$s" = dispatchd ] && from=$(( $(wc -l <"$T/dispatchd/up.log") + 1 ))
    last_kill=$(now_ms)
    if ! res=$("$PROBE" kill "$port" "$old" 15000 "$PROBE_INTERVAL_US"); then
      log "$s trial $trial: no PING within 15 s ($res)"
      failures=$((failures + 1))
      [ $failures -gt 3 ] && die "too many failed trials"
      "$PROBE" wait "$port" 60000 >/dev/null || die "$s: redis never came back"
      READY[$s]=$(now_ms)
      continue
    fi
    READY[$s]=$(now_ms)
    kw=$(sed -n 's/.*kill_wall_us=\([0-9]*\).*/\1/p' <<<"$res")
    kp=$(sed -n 's/.*kill_to_ping_us=\([0-9]*\).*/\1/p' <<<"$res")
    np=$(sed -n 's/.*new_pid=\([0-9]*\).*/\1/p' <<<"$res")
    at=$(sed -n 's/.*attempts=\([0-9]*\).*/\1/p' <<<"$res")
    kx="" xr="" ks="" bo=""
    if [ "$s" = dispatchd ]; then
      f=$T/dispatchd/up.log
      ex=$(logval service_exited "$old" "$f" "$from")
      rs=$(logval service_restart "" "$f" "$from")
      st=$(logval service_started "$np" "$f" "$from")
      bo=0; tail -n +"$from" "$f" | grep -q "event=service_restart_scheduled service=redis" && bo=1
      [ -n "$ex" ] && kx=$((ex - kw))
      [ -n "$ex" ] && [ -n "$rs" ] && xr=$((rs - ex))
      [ -n "$st" ] && ks=$((st - kw))
    fi
    echo "$trial,$s,$old,$np,$kw,$kp,$at,$kx,$xr,$ks,$bo" >>"$OUT"
    log "trial $trial $s: kill->PING $((kp / 1000)).$(printf %03d $((kp % 1000))) ms${xr:+ (exit->restart ${xr} us)}"
  done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"
[ "${KEEP_LOGS:-0}" = 1 ] && cp "$T/dispatchd/up.log" "${OUT%.csv}.dispatchd.log" 2>/dev/null
log "done: $OUT"
