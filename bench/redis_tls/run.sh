#!/usr/bin/env bash
# bench/redis_tls/run.sh - Redis over TLS against plain TCP, side by side in one run
# (issue 14): one redis-server listening on a plain port and a TLS port, certificates made
# here with openssl, a private Temporal dev server.
#
#  1. Heartbeat round trip: bench/redis_tls/hb_rtt.c (dispatchd's own src/store, TLS through
#     src/net) as the owner of 10 dispatchers heartbeating each every INTERVAL_MS, staggered;
#     BLOCKS blocks of SAMPLES heartbeats per mode, plain and TLS alternating, so both see the
#     same machine. p50/p99 per mode over all its samples.
#  2. Owner CPU: two `dispatchd run` hosts at once, 10 dispatchers each (heartbeat 1 s, the
#     real owner: takeover, heartbeats, the loss watch), one on redis://, one on rediss://;
#     once each owns all 10, CPU (utime+stime from /proc/PID/stat) over WINDOW_S seconds and
#     then the resident set (VmRSS) of each.
#
# Env: BLOCKS (4), SAMPLES (600), INTERVAL_MS (100), WINDOW_S (120), DISPATCHD (build/dispatchd),
#      BUILD (build), OUT (bench/redis_tls/results).
# Output: $OUT/rtt_plain.txt, $OUT/rtt_tls.txt (µs per heartbeat), $OUT/meta.txt,
#         $OUT/summary.md. The machine is shared: the load average before and after each
#         phase goes into meta.txt and the summary.
# Bounded: every wait is bounded (60 s for ownership, 10 s inside hb_rtt per step); the EXIT
# trap stops everything this script started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BLOCKS=${BLOCKS:-4}
SAMPLES=${SAMPLES:-600}
INTERVAL_MS=${INTERVAL_MS:-100}
WINDOW_S=${WINDOW_S:-120}
BUILD=${BUILD:-$root/build}
DISPATCHD=${DISPATCHD:-$BUILD/dispatchd}
OUT=${OUT:-$here/results}
[ -x "$DISPATCHD" ] || { echo "no $DISPATCHD: run BUILD_DIR=build scripts/build.sh" >&2; exit 2; }
mkdir -p "$OUT"
W=$(mktemp -d /tmp/dd-rtls.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  bash "$root/tests/fixtures/temporal.sh" stop "$W/temporal" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
die() { echo "redis_tls/run.sh: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
load() { cut -d' ' -f1 /proc/loadavg; }

# --- the probe, built against this tree's libraries ----------------------------------------
L=$BUILD/src
# shellcheck disable=SC2046
cc -O2 -std=c11 -D_GNU_SOURCE -I"$root/src" -o "$W/hb_rtt" "$here/hb_rtt.c" \
  "$L/store/libdd_store.a" "$L/net/libdd_net.a" "$L/metrics/libdd_metrics.a" \
  "$L/core/libdd_core.a" $(pkg-config --libs hiredis libuv openssl) -lm \
  || die "cannot build hb_rtt.c against $BUILD"

# --- certificates, one redis-server with both ports ----------------------------------------
C=$W/certs; mkdir -p "$C"
CERT_DIR=$C; . "$root/tests/support/certs.sh"
{ new_ca ca && new_cert server ca "IP:127.0.0.1" serverAuth; } || die "cannot make the certificates (see $C/openssl.log)"
RP=$(free_port); TP=$(free_port)
redis-server --port "$RP" --tls-port "$TP" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$W" --tls-cert-file "$C/server.pem" --tls-key-file "$C/server.key" \
  --tls-ca-cert-file "$C/ca.pem" --tls-auth-clients no --loglevel warning \
  >"$W/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do [ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] || die "redis-server did not start"
PLAIN=redis://127.0.0.1:$RP/0
TLS=rediss://127.0.0.1:$TP/0
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "kernel=$(uname -r)"
  echo "openssl=$(openssl version | tr " " _)"
  echo "redis=$(redis-server --version | cut -d' ' -f3)"
  echo "dispatchd_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "blocks=$BLOCKS samples=$SAMPLES interval_ms=$INTERVAL_MS window_s=$WINDOW_S"
  echo "note=shared machine: other sessions' builds, tests and a stress-ng run were running"
} >"$OUT/meta.txt"

# --- 1. heartbeat round trips, alternating ---------------------------------------------------
: >"$OUT/rtt_plain.txt"; : >"$OUT/rtt_tls.txt"
echo "load_rtt_start=$(load)" >>"$OUT/meta.txt"
for b in $(seq 1 "$BLOCKS"); do
  for mode in plain tls; do
    url=$PLAIN; ca=; [ $mode = tls ] && url=$TLS && ca=$C/ca.pem
    HB_CA_FILE=$ca "$W/hb_rtt" "$url" 10 "$INTERVAL_MS" "$SAMPLES" >"$W/rtt.$mode.$b" 2>>"$W/hb_rtt.log" ||
      die "hb_rtt $mode block $b failed: $(tail -n 3 "$W/hb_rtt.log")"
    grep -v '^#' "$W/rtt.$mode.$b" >>"$OUT/rtt_$mode.txt"
    echo "rtt_block=$b mode=$mode $(grep '^#' "$W/rtt.$mode.$b" | tr -d '#')" >>"$OUT/meta.txt"
  done
done
echo "load_rtt_end=$(load)" >>"$OUT/meta.txt"

# --- 2. owner CPU and RSS: two hosts at once ------------------------------------------------
bash "$root/tests/fixtures/temporal.sh" start "$W/temporal" >"$W/temporal.out" 2>&1 ||
  die "temporal did not start: $(tail -n 5 "$W/temporal.out")"
U=$(cat "$W/temporal/url")
host() { # host NAME URL [ARGS...]
  local name=$1 url=$2; shift 2
  local d=() i
  for i in $(seq 1 10); do d+=(--dispatcher "rtls$$$name/q$i"); done
  "$DISPATCHD" run "${d[@]}" --server-id "$name" --temporal-url "$U" --redis-url "$url" "$@" \
    --heartbeat-interval 1s --stale-threshold 5s --metrics-listen off \
    -- sh -c 'exec sleep 100000' >"$W/$name.log" 2>&1 &
  PIDS+=($!)
  echo $! >"$W/$name.pid"
}
host plain "$PLAIN"
host tls "$TLS" --redis-ca-file "$C/ca.pem"
owned() { # owned NAME: all 10 records name it
  local i
  for i in $(seq 1 10); do
    [ "$(redis-cli -p "$RP" hget "dd:hb:{dispatcher-rtls$$$1-q$i}" server_id)" = "$1" ] || return 1
  done
}
for _ in $(seq 1 600); do owned plain && owned tls && break; sleep 0.1; done
owned plain && owned tls || die "the hosts did not own their 10 dispatchers within 60 s"
sleep 5 # past the takeovers' own work
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pp=$(cat "$W/plain.pid"); tp=$(cat "$W/tls.pid")
hz=$(getconf CLK_TCK)
echo "load_cpu_start=$(load)" >>"$OUT/meta.txt"
p0=$(ticks "$pp"); t0=$(ticks "$tp"); s0=$(date +%s%N)
sleep "$WINDOW_S"
p1=$(ticks "$pp"); t1=$(ticks "$tp"); s1=$(date +%s%N)
echo "load_cpu_end=$(load)" >>"$OUT/meta.txt"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
prss=$(rss "$pp"); trss=$(rss "$tp")
owned plain && owned tls || die "a host lost a dispatcher during the window"
grep -q 'event=redis_connected.*addr=tls:' "$W/tls.log" || die "the TLS host never logged a TLS connection"
{
  echo "cpu_plain_ticks=$((p1 - p0)) cpu_tls_ticks=$((t1 - t0)) hz=$hz window_ns=$((s1 - s0))"
  echo "rss_plain_kb=$prss rss_tls_kb=$trss"
} >>"$OUT/meta.txt"

# --- summary ----------------------------------------------------------------------------------
python3 - "$OUT" <<'PY'
import sys, os
out = sys.argv[1]
meta = dict()
for line in open(os.path.join(out, "meta.txt")):
    for kv in line.split():
        if "=" in kv:
            k, v = kv.split("=", 1)
            meta.setdefault(k, v)
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]
rows = []
for mode in ("plain", "tls"):
    xs = [int(l) for l in open(os.path.join(out, "rtt_%s.txt" % mode)) if l.strip()]
    rows.append((mode, len(xs), pct(xs, 50) / 1000.0, pct(xs, 99) / 1000.0, max(xs) / 1000.0))
m = {}
for line in open(os.path.join(out, "meta.txt")):
    for kv in line.split():
        if "=" in kv:
            k, v = kv.split("=", 1); m[k] = v
cpu_rtt = {"plain": 0.0, "tls": 0.0}
for line in open(os.path.join(out, "meta.txt")):
    if line.startswith("rtt_block="):
        kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
        cpu_rtt[kv["mode"]] += float(kv["cpu_ms"])
hz = float(m["hz"]); win = float(m["window_ns"]) / 1e9
cp = float(m["cpu_plain_ticks"]) / hz / win * 100; ct = float(m["cpu_tls_ticks"]) / hz / win * 100
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write("# Redis TLS vs plain (bench/redis_tls/run.sh)\n\n")
    f.write("commit %s, %s, %s CPUs, %s; load %s -> %s (round trips), %s -> %s (CPU window)\n\n" % (
        m["dispatchd_commit"], m["date_utc"], m["nproc"], m["openssl"].replace("_", " "),
        m["load_rtt_start"], m["load_rtt_end"], m["load_cpu_start"], m["load_cpu_end"]))
    f.write("| heartbeat round trip (10 dispatchers, hb_rtt) | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n")
    for r in rows:
        f.write("| %s | %d | %.3f | %.3f | %.3f |\n" % r)
    f.write("\nhb_rtt's own CPU while heartbeating (user+sys, all blocks): plain %.1f ms, TLS %.1f ms: TLS/plain %.2f\n" % (
        cpu_rtt["plain"], cpu_rtt["tls"], cpu_rtt["tls"] / cpu_rtt["plain"]))
    f.write("\n| owner of 10 dispatchers (`dispatchd run`, 1 s heartbeats) | CPU over %.0f s | RSS |\n|---|---|---|\n" % win)
    f.write("| redis:// | %.2f %% (%s ticks) | %.2f MB |\n" % (cp, m["cpu_plain_ticks"], int(m["rss_plain_kb"]) / 1024.0))
    f.write("| rediss:// | %.2f %% (%s ticks) | %.2f MB |\n" % (ct, m["cpu_tls_ticks"], int(m["rss_tls_kb"]) / 1024.0))
    f.write("\nTLS/plain CPU: %s; TLS/plain p50: %.2f, p99: %.2f\n" % (
        ("%.2f" % (ct / cp)) if cp > 0 else "n/a (plain 0 ticks)", rows[1][2] / rows[0][2], rows[1][3] / rows[0][3]))
print(open(os.path.join(out, "summary.md")).read())
PY
