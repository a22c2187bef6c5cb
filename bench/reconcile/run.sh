#!/usr/bin/env bash
# Reconcile cycle cost against the number of records: N records in Redis, 1 %
# of them stale (their runs are long gone, so each costs a describe and a
# compare-and-delete), the rest healthy. One `dispatchd reconcile` cycle per
# size; its own duration_ms is the figure. Also a cycle with 0 stale at each
# size, to show that healthy records cost (almost) nothing.
#   bench/reconcile/run.sh [SIZES...]     (default: 1000 10000 100000)
# Needs: build/dispatchd, redis-server, the Temporal CLI in .tools/bin. Loopback only.
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
  rm -rf "$T"
}
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$T" --logfile "$T/redis.log" >/dev/null
DD_SOURCE_DIR=$root bash "$root/tests/fixtures/temporal.sh" start "$T/temporal" >/dev/null
U=$(cat "$T/temporal/url")

populate() { # populate N STALE: N records, STALE of them an hour old
  local n=$1 stale=$2 now; now=$(date +%s%3N)
  redis-cli -p "$RP" flushall >/dev/null
  python3 - "$n" "$stale" "$now" <<'PY' | redis-cli -p "$RP" --pipe >/dev/null
import sys
n, stale, now = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def cmd(*a):
    out = "*%d\r\n" % len(a)
    for x in a:
        x = str(x); out += "$%d\r\n%s\r\n" % (len(x.encode()), x)
    sys.stdout.write(out)
step = n // stale if stale else n + 1
for i in range(n):
    wid = "dispatcher-bench-q%06d" % i
    hb = now - 3600_000 if stale and i % step == 0 else now
    cmd("HSET", "dd:hb:{%s}" % wid, "workflow_id", wid, "run_id", "00000000-0000-0000-0000-%012d" % i,
        "server_id", "bench-host", "project", "bench", "queue", "q%06d" % i,
        "hb_ms", hb, "ttl_ms", 15000, "epoch", 1)
    cmd("ZADD", "dd:hb:index", hb, wid)
PY
}

cycle() { "$D" reconcile --temporal-url "$U" --redis-url "redis://127.0.0.1:$RP/0" \
            --server-id bench --stale-threshold 15s --terminate-rate 0 2>>"$T/reconcile.log"; }

echo "records,stale,duration_ms,candidates,cleaned,errors"
for n in "${SIZES[@]}"; do
  for stale in $((n / 100)) 0; do
    populate "$n" "$stale"
    j=$(cycle)
    left=$(redis-cli -p "$RP" zcard dd:hb:index)
    [ "$left" = $((n - stale)) ] || { echo "expected $((n - stale)) records left, got $left" >&2; exit 1; }
    echo "$n,$stale,$(jq -r '[.duration_ms, .candidates, .cleaned, .errors] | map(tostring) | join(",")' <<<"$j")"
  done
done
