#!/usr/bin/env bash
# bench/failover/run.sh - failover with the last will, and graceful handover
# (issue 16), next to an `etcdctl lock` anchor with the same TTL.
#
# Two `dispatchd run` hosts for one dispatcher at the default heartbeat (5 s)
# and stale threshold (15 s), a private Redis and Temporal dev server. Each
# child writes its own "start NS HOST" / "stop NS HOST" lines; every figure is
# read from those lines, never from dispatchd's log:
#   kill9     kill -9 of the owner's dispatchd alone (its guard and host live):
#             the kill -> the standby's child acting (the will's path)
#   graceful  SIGTERM of the owner -> the standby's child acting
#   whole     the owner's dispatchd, guard and child frozen, then SIGKILLed
#             together (a host gone): the kill -> the standby's child acting
#             (no will: the threshold path)
#   etcd      `etcdctl lock --ttl 15` holders running the same child; kill -9
#             of the holder's process group -> the other holder's child acting
# overlap_ms = the old child's stop - the new child's start (> 0: both acted).
# After each event the killed host is started again (it takes over at start,
# the other one stands by again) and the next event waits 0.5-1.5 s.
#
#   ROUNDS (30) GRACEFUL (30) WHOLE (3) ETCD (3) HB (5s) THRESH (15s)
#   OUT (bench/failover/results/<date>)  BUILD_DIR (build)
# Needs etcd for the anchor: DD_INSTALL_BENCH=1 scripts/install-deps.sh.
# Writes OUT/samples.csv (kind,round,ms,overlap_ms), OUT/meta.txt, the logs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${ROUNDS:-30} GRACEFUL=${GRACEFUL:-30} WHOLE=${WHOLE:-3} ETCD=${ETCD:-3}
HB=${HB:-5s} THRESH=${THRESH:-15s}
BUILD_DIR=${BUILD_DIR:-$root/build}
DD=$BUILD_DIR/dispatchd
OUT=${OUT:-$root/bench/failover/results/$(date -u +%Y%m%dT%H%M%SZ)}
[ -x "$DD" ] || { echo "no $DD: build first (BUILD_DIR=build scripts/build.sh)" >&2; exit 1; }
[ "$ETCD" = 0 ] || command -v etcd >/dev/null ||
  { echo "etcd missing: DD_INSTALL_BENCH=1 scripts/install-deps.sh (or ETCD=0)" >&2; exit 1; }
thr_s=${THRESH%s}
mkdir -p "$OUT"
W=$(mktemp -d /tmp/dd-fobench.XXXXXX)
CL=$W/children.log
: >"$CL"
PIDS=()
declare -A HPID=()
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
log() { echo "failover-bench: $*" >&2; }
descendants() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }

cleanup() {
  set +e
  for h in "${!HPID[@]}"; do p=${HPID[$h]}; kill -CONT "$p" $(descendants "$p") 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM -- "-$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  sleep 2
  for h in "${!HPID[@]}"; do kill -KILL "${HPID[$h]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
  # children of a dispatchd killed on purpose live in their own sessions: ours carry $W
  for p in $(pgrep -f -- "$W/child.sh"); do kill -KILL "$p" 2>/dev/null; done
  bash "$root/tests/fixtures/temporal.sh" stop "$W/temporal" >/dev/null 2>&1
  cp "$W"/*.log "$OUT/" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# ---- the servers -------------------------------------------------------------
bash "$root/tests/fixtures/temporal.sh" start "$W/temporal" >/dev/null
U=$(cat "$W/temporal/url")
RP=$(free_port)
mkdir -p "$W/redis"
setsid redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$W/redis" \
  --loglevel warning >"$W/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$W/child.sh" <<EOF
#!/bin/sh
# the dispatcher's work: says when it starts and stops (its own clock). It
# waits with the wait builtin, which a trapped TERM interrupts at once (a
# foreground sleep would hold the trap back until it ends: up to its length
# added to every stop, the child's latency, not dispatchd's)
exec >>'$CL'
trap 'echo "stop \$(date +%s%N) \$DISPATCHD_SERVER_ID"; exit 0' TERM
echo "start \$(date +%s%N) \$DISPATCHD_SERVER_ID"
while :; do sleep 5 & wait \$!; done
EOF
chmod +x "$W/child.sh"

P=fob$$
host() { # host NAME: a dispatchd for P/q; it takes over at start
  "$DD" run --dispatcher "$P/q" --temporal-url "$U" --redis-url "redis://127.0.0.1:$RP/0" \
    --heartbeat-interval "$HB" --stale-threshold "$THRESH" --metrics-listen off \
    --server-id "$1" -- "$W/child.sh" >/dev/null 2>>"$W/$1.log" &
  HPID[$1]=$!
}
# the last line of CL for HOST, and its fields
last_of() { awk -v h="$1" '$3==h{l=$0} END{print l}' "$CL"; }
acting() { local l; l=$(last_of "$1"); [ "${l%% *}" = start ]; }
# start_after HOST NS: HOST's first child start after NS (prints its ns), waiting up to S seconds
start_after() {
  local h=$1 t=$2 s=$3 end v
  end=$(( $(now_ns) + s * 1000000000 ))
  while [ "$(now_ns)" -lt "$end" ]; do
    v=$(awk -v h="$h" -v t="$t" '$1=="start" && $3==h && $2>t {print $2; exit}' "$CL")
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.005
  done
  return 1
}
stop_of() { awk -v h="$1" -v t="$2" '$1=="stop" && $3==h && $2>=t {print $2; exit}' "$CL"; }
wait_for() { local s=$1; shift; local end=$(( $(now_ns) + s * 1000000000 )); while [ "$(now_ns)" -lt "$end" ]; do "$@" && return 0; sleep 0.02; done; return 1; }
owner() { redis-cli -p "$RP" hget "dd:hb:{dispatcher-$P-q}" server_id; }
is_owner() { [ "$(owner)" = "$1" ] && acting "$1"; }
settle() { sleep "$(awk -v r=$RANDOM 'BEGIN{printf "%.3f", 0.5 + r / 32768}')"; }
other() { [ "$1" = a ] && echo b || echo a; }
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]; }

SAMPLES=$OUT/samples.csv
echo "kind,round,ms,overlap_ms" >"$SAMPLES"
sample() { # kind round t_event start_ns old_stop_ns
  local ms ov=""
  ms=$(awk -v a="$3" -v b="$4" 'BEGIN{printf "%.1f", (b - a) / 1e6}')
  [ -n "$5" ] && ov=$(awk -v a="$5" -v b="$4" 'BEGIN{printf "%.1f", (a - b) / 1e6}')
  echo "$1,$2,$ms,$ov" >>"$SAMPLES"
  log "$1 $2: $ms ms (overlap ${ov:-n/a} ms)"
}

{
  echo "commit=$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet -- src || echo +dirty)"
  echo "date=$(date -u +%FT%TZ)"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "hb=$HB thresh=$THRESH rounds=$ROUNDS graceful=$GRACEFUL whole=$WHOLE etcd=$ETCD"
  echo "etcd=$(etcd --version 2>/dev/null | head -1)"
  echo "others=$(pgrep -c -f 'dispatchd|ctest|stress-ng' || true) processes named dispatchd/ctest/stress-ng on the machine at start"
} >"$OUT/meta.txt"

host a
wait_for 30 is_owner a || { log "a did not take over"; exit 1; }
host b
wait_for 30 is_owner b || { log "b did not take over"; exit 1; }
# a record's age counts from Redis's start at the earliest (docs/ownership.md)
up() { [ "$(redis-cli -p "$RP" info server | sed -n 's/^uptime_in_seconds:\([0-9]*\).*/\1/p')" -gt "$thr_s" ]; }
wait_for 60 up
# restart HOST: it takes over at start; wait until it acts alone
restart() {
  host "$1"
  wait_for 30 is_owner "$1" || { log "$1 did not take over again"; exit 1; }
  wait_for 30 bash -c "[ \"\$(awk -v h=$(other "$1") '\$3==h{l=\$1} END{print l}' '$CL')\" != start ]" || true
  settle
}

event() { # kind round
  local kind=$1 r=$2 x y t s st px
  x=$(owner); y=$(other "$x"); px=${HPID[$x]}
  case $kind in
    kill9) t=$(now_ns); kill -KILL "$px" ;;
    graceful) t=$(now_ns); kill -TERM "$px" ;;
    whole) # (a short-lived sleep of the child may be gone already)
      local all=("$px" $(descendants "$px")); kill -STOP "${all[@]}" 2>/dev/null || true
      t=$(now_ns); kill -KILL "${all[@]}" 2>/dev/null || true ;;
  esac
  if ! s=$(start_after "$y" "$t" $((thr_s + 10))); then
    log "$kind $r: $y never acted"; echo "$kind,$r,,," >>"$SAMPLES"
  else
    st=$(stop_of "$x" "$t")
    [ "$kind" = whole ] && st=$t # killed frozen: it stopped at the kill
    sample "$kind" "$r" "$t" "$s" "$st"
  fi
  [ "$kind" = whole ] && echo "stop $t $x" >>"$CL" # (it cannot say so itself)
  wait_for 30 gone "$px" || true
  wait "$px" 2>/dev/null || true
  restart "$x"
}

for r in $(seq 1 "$ROUNDS"); do event kill9 "$r"; done
for r in $(seq 1 "$GRACEFUL"); do event graceful "$r"; done
for r in $(seq 1 "$WHOLE"); do event whole "$r"; done
for h in a b; do kill -TERM "${HPID[$h]}" 2>/dev/null || true; done
for h in a b; do wait "${HPID[$h]}" 2>/dev/null || true; done
HPID=()

# ---- the etcd anchor: etcdctl lock holders, same TTL ----------------------------
if [ "$ETCD" -gt 0 ]; then
  EC=$(free_port); EP=$(free_port)
  setsid etcd --name fob --data-dir "$W/etcd" --listen-client-urls "http://127.0.0.1:$EC" \
    --advertise-client-urls "http://127.0.0.1:$EC" --listen-peer-urls "http://127.0.0.1:$EP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
    --initial-cluster "fob=http://127.0.0.1:$EP" --log-level warn >"$W/etcd.log" 2>&1 &
  PIDS+=($!)
  wait_for 30 etcdctl --endpoints="127.0.0.1:$EC" endpoint health >/dev/null 2>&1
  declare -A EPID=()
  holder() { # the lock's holder runs the same child (its own session: killed as a group)
    DISPATCHD_SERVER_ID=$1 setsid etcdctl --endpoints="127.0.0.1:$EC" lock --ttl="$thr_s" \
      fob-anchor "$W/child.sh" </dev/null >>"$W/etcd-holders.log" 2>&1 &
    EPID[$1]=$!
    PIDS+=($!)
  }
  holder ea; wait_for 30 acting ea
  holder eb; sleep 1
  for r in $(seq 1 "$ETCD"); do
    if acting ea; then x=ea; y=eb; else x=eb; y=ea; fi
    t=$(now_ns); kill -KILL -- "-${EPID[$x]}"
    if s=$(start_after "$y" "$t" $((thr_s + 10))); then sample etcd "$r" "$t" "$s" "$t"
    else log "etcd $r: $y never acted"; echo "etcd,$r,,," >>"$SAMPLES"; fi
    # the killed holder's child died with its group: it stopped at the kill
    echo "stop $t $x" >>"$CL"
    holder "$x"; settle
  done
fi
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
python3 "$root/bench/failover/report.py" "$SAMPLES" | tee "$OUT/report.txt"
