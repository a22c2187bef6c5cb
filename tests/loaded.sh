#!/usr/bin/env bash
# The loaded-machine proof (tests/LOADED.md): a fresh clone of a commit, the
# README's test command run N times in a row under `stress-ng --cpu 2`, the
# load average and CPU pressure (PSI "some") recorded around every run.
#
#   tests/loaded.sh [COMMIT] [RUNS] [OUT_DIR]     defaults: HEAD 5 /tmp/dd-loaded-<commit>
#
# Stops at the first failing run (its log is kept). stress-ng is started and
# stopped by its own pid: it is exec'd by the background job, not wrapped in a
# subshell that a kill would hit instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$root" rev-parse --short "${1:-HEAD}")
runs=${2:-5}
out=${3:-/tmp/dd-loaded-$commit}
case $runs in '' | *[!0-9]*) echo "loaded.sh: RUNS must be a number, got '$runs'" >&2; exit 2 ;; esac
mkdir -p "$out"
clone=$out/clone
rm -rf "$clone"
git clone -q "$root" "$clone"
git -C "$clone" checkout -q "$commit"

psi_total() { awk '/^some/ { sub("total=", "", $5); print $5 }' /proc/pressure/cpu; }

stress_pid=
cleanup() { [ -n "$stress_pid" ] && kill "$stress_pid" 2>/dev/null && wait "$stress_pid" 2>/dev/null; return 0; }
trap cleanup EXIT
stress-ng --cpu 2 --timeout 0 >"$out/stress-ng.log" 2>&1 &
stress_pid=$!

summary=$out/summary.tsv
printf 'run\tresult\tseconds\tcpu_pressure_pct\tload_before\tload_after\n' >"$summary"
for i in $(seq 1 "$runs"); do
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  p0=$(psi_total); t0=$(date +%s%N)
  if (cd "$clone" && ./scripts/test.sh) >"$out/run$i.log" 2>&1; then res=pass; else res=fail; fi
  t1=$(date +%s%N); p1=$(psi_total)
  after=$(cut -d' ' -f1-3 /proc/loadavg)
  secs=$(( (t1 - t0) / 1000000000 ))
  pct=$(( (p1 - p0) / 10 / ((t1 - t0) / 1000000000 > 0 ? (t1 - t0) / 1000000000 : 1) / 1000 ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$res" "$secs" "$pct" "$before" "$after" | tee -a "$summary"
  [ "$res" = pass ] || { echo "loaded.sh: run $i failed: $out/run$i.log" >&2; exit 1; }
done
echo "loaded.sh: $runs of $runs passed on $commit under stress-ng --cpu 2 ($summary)"
