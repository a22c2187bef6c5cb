#!/usr/bin/env bash
# bench/hostile/temporal_mem.sh - resident memory of a process using
# src/temporal against a hostile stand-in Temporal (issue 12, items 3 and 4).
#
#   bench/hostile/temporal_mem.sh              (ANSWERS=1000)
#
# 1. Loss watch: dd_temporal_wait_close() while the stand-in
#    (temporal_standin.py, mode empty) answers every long poll at once,
#    empty. VmRSS of the client is sampled every 0.5 s against the number of
#    answers until ANSWERS were sent; prints the samples, the spread after
#    the first 100 answers, and the poll rate.
# 2. Amplification: one describe, history and wait_close each, answered with
#    16 MiB of "{}," (mode huge); prints the peak RSS each call added. Then
#    history_strings: a 16 MiB page that is accepted (long strings), the
#    largest cost a reply can have.
#
# Builds temporal_mem.c against BUILD (default build/, built already). Loopback
# only; the EXIT trap stops what this script started, by pid.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
ANSWERS=${ANSWERS:-1000}
T=$(mktemp -d /tmp/dd-bench-tmem.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
die() { echo "temporal_mem.sh: $*" >&2; exit 1; }
wait_file() { # wait_file SECONDS FILE, every 50 ms
  local end=$(( $(date +%s%N) + $1 * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do [ -s "$2" ] && return 0; sleep 0.05; done
  return 1
}
L=$BUILD/src
cc -O2 -std=c11 -D_GNU_SOURCE -I"$root/src" -o "$T/temporal_mem" "$here/temporal_mem.c" \
  "$L/temporal/libdd_temporal.a" "$L/http/libdd_http.a" "$L/metrics/libdd_metrics.a" \
  "$L/core/libdd_core.a" $(pkg-config --libs jansson libuv openssl) -lm \
  || die "cannot build temporal_mem.c against $BUILD"

standin() { # standin MODE: starts it, sets PORT and COUNT
  rm -f "$T/port" "$T/count"
  python3 "$here/temporal_standin.py" "$T/port" "$T/count" "$1" &
  PIDS+=($!)
  wait_file 10 "$T/port" || die "stand-in did not start"
  PORT=$(cat "$T/port")
  COUNT=$T/count
}

echo "machine: nproc=$(nproc) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "checkout: $(git -C "$root" describe --always --dirty)  libraries from: $BUILD"
echo "start: $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. loss watch against empty answers at once
standin empty
max_s=$(( ANSWERS / 5 + 60 )) # 10 polls/s expected; bounded either way
"$T/temporal_mem" longpoll "http://127.0.0.1:$PORT" "$max_s" >"$T/longpoll.out" 2>"$T/longpoll.err" &
cpid=$!
PIDS+=($cpid)
echo "answers,rss_kb,t_ms"
t0=$(date +%s%N)
answers=0
while kill -0 "$cpid" 2>/dev/null; do
  answers=$(cat "$COUNT" 2>/dev/null || echo 0)
  rss=$(awk '/VmRSS/{print $2}' "/proc/$cpid/status" 2>/dev/null || echo 0)
  line="$answers,$rss,$(( ($(date +%s%N) - t0) / 1000000 ))"
  echo "$line" >>"$T/samples.csv"
  [ $(( $(wc -l <"$T/samples.csv") % 10 )) = 1 ] && echo "$line" # every 5 s
  [ "$answers" -ge "$ANSWERS" ] && break
  sleep 0.5
done
elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kill -TERM "$cpid" 2>/dev/null || true
wait "$cpid" 2>/dev/null || true
[ "$answers" -ge "$ANSWERS" ] || die "only $answers answers ($(cat "$T/longpoll.err"))"
awk -F, -v n="$answers" -v ms="$elapsed_ms" '
  $1 >= 100 { if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; k++ }
  $1 > 0 && first == "" { first = $2 }
  END { printf "loss watch: %d empty answers in %.1f s (%.1f polls/s); VmRSS first %d kB, after answer 100: min %d kB max %d kB, spread %d kB over %d samples\n",
        n, ms / 1000, n * 1000 / ms, first, min, max, max - min, k }' "$T/samples.csv"
kill -TERM "${PIDS[-1]}" 2>/dev/null || true

# 2. one 16 MiB reply of empty objects per operation
standin huge
for op in describe history wait_close history_strings; do
  "$T/temporal_mem" huge "http://127.0.0.1:$PORT" "$op" 2>/dev/null || true
done
echo "end: $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
