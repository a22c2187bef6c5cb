#!/usr/bin/env bash
# bench/takeover/modes.sh - takeover latency, marker mode vs workflow mode,
# side by side in one run (issue 11's benchmark: workflow mode p95 within 1.2x).
#
# Against a private Temporal dev server on loopback: ROUNDS alternating pairs of
# `dispatchd takeover` (one termination-first start each; a previous run is there
# from the second round on, so every measured call replaces one): the marker of
# bench/m, then the workflow-mode dispatcher bench/w (--workflow-type
# BenchDispatcher with an input, no worker needed: a takeover is describe + start).
# latency_ms is dispatchd's own figure (first request to the started run).
#
# Env: ROUNDS (200), DISPATCHD (build/dispatchd), OUT (bench/takeover/results).
# Output: $OUT/modes.csv (mode,round,latency_ms), $OUT/modes.md (summary).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-200}
DISPATCHD=${DISPATCHD:-$root/build/dispatchd}
OUT=${OUT:-$here/results}
[ -x "$DISPATCHD" ] || { echo "no $DISPATCHD: run BUILD_DIR=build scripts/build.sh" >&2; exit 2; }
mkdir -p "$OUT"
T=$(mktemp -d /tmp/dd-modes.XXXXXX)
cleanup() { DD_SOURCE_DIR=$root bash "$root/tests/fixtures/temporal.sh" stop "$T/temporal" || true; rm -rf "$T"; }
trap cleanup EXIT
DD_SOURCE_DIR=$root bash "$root/tests/fixtures/temporal.sh" start "$T/temporal" >/dev/null
U=$(cat "$T/temporal/url")
tk() { timeout 60 "$DISPATCHD" takeover "$@" --temporal-url "$U" --log-level error; }
for i in 1 2 3 4 5; do tk bench warm >/dev/null; done   # warm up the server and caches
echo "mode,round,latency_ms" >"$OUT/modes.csv"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq 1 "$ROUNDS"); do
  m=$(tk bench m --server-id "b$i" | jq -r .latency_ms)
  w=$(tk bench w --server-id "b$i" --workflow-type BenchDispatcher --input '{"tenant":"t"}' \
        --input-server-id-field server_id | jq -r .latency_ms)
  echo "marker,$i,$m" >>"$OUT/modes.csv"
  echo "workflow,$i,$w" >>"$OUT/modes.csv"
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$OUT/modes.csv" "$load0" "$load1" "$(git -C "$root" rev-parse --short HEAD)" >"$OUT/modes.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def pct(xs, p):
    xs = sorted(xs); k = (len(xs) - 1) * p / 100; f = int(k); c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)
d = {m: [float(r["latency_ms"]) for r in rows if r["mode"] == m] for m in ("marker", "workflow")}
print("| mode | n | p50 ms | p95 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|")
for m, xs in d.items():
    print("| %s | %d | %.1f | %.1f | %.1f | %.1f |" % (m, len(xs), pct(xs, 50), pct(xs, 95), pct(xs, 99), max(xs)))
print()
print("workflow / marker: p50 %.2fx, p95 %.2fx (goal: p95 <= 1.2x)" % (
    pct(d["workflow"], 50) / pct(d["marker"], 50), pct(d["workflow"], 95) / pct(d["marker"], 95)))
print()
print("commit %s; loadavg %s at start, %s at end" % (sys.argv[4], sys.argv[2], sys.argv[3]))
PY
cat "$OUT/modes.md"
