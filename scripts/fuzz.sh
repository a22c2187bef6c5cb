#!/usr/bin/env bash
# Builds the fuzz targets (clang, libFuzzer + ASan + UBSan, in build-fuzz/)
# and runs each one for SECONDS (default 60) on a copy of its checked-in
# corpus, tests/fuzz/corpus/<target>/. Exits non-zero on any finding: a
# crash, a failed property check, UB, a leak, a timeout or running out of
# memory; the input that did it is left in build-fuzz/findings/<target>/
# (copy it into the corpus once fixed: the normal test pass replays it).
#
#   scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="http_parse store_reply"   only these
#   FUZZ_RUNS=10000000                      a number of executions instead of SECONDS
#   FUZZ_MERGE=1                            afterwards, minimize what was found into
#                                           the checked-in corpus (libFuzzer -merge=1)
#   FUZZ_BUILD_DIR=...                      another build dir
#
# Prints one line per target: executions, exec/s, coverage (cov/ft), corpus
# size, findings; the same lines go to build-fuzz/fuzz-summary.tsv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
dir=${FUZZ_BUILD_DIR:-$root/build-fuzz}
command -v clang >/dev/null || { echo "fuzz: clang is missing (scripts/install-deps.sh)" >&2; exit 1; }

CC=clang cmake -S "$root" -B "$dir" -DDD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" --target dd_fuzz_all -j"$(nproc)" >/dev/null

targets=${FUZZ_TARGETS:-$(cd "$dir/fuzz" && ls fuzz_* | sed 's/^fuzz_//')}
limit=(-max_total_time="$secs")
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
summary=$dir/fuzz-summary.tsv
printf 'target\texecs\texec_per_s\tcov\tft\tcorpus\tfindings\tload_start\tload_end\tseconds\n' \
  >"$summary"
failed=0
for t in $targets; do
  bin=$dir/fuzz/fuzz_$t
  seeds=$root/tests/fuzz/corpus/$t
  work=$dir/corpus/$t       # grows while fuzzing; the checked-in seeds stay read-only
  found=$dir/findings/$t
  log=$dir/fuzz-$t.log
  # a finding of an earlier run was reported then (and belongs in the seeds as
  # finding-*): this run counts only its own
  rm -rf "$found"
  mkdir -p "$work" "$found"
  dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  rc=0
  load0=$(cut -d' ' -f1 /proc/loadavg); t0=$SECONDS
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway
  # allocation is a finding too; UB aborts (-fno-sanitize-recover).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" "${limit[@]}" "${dict[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$found/" "$work" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs_run=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  line=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$line")
  speed=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$line")
  [ -n "$secs_run" ] && [ "$secs_run" -gt 0 ] && [ -n "$execs" ] && speed=$((execs / secs_run))
  load1=$(cut -d' ' -f1 /proc/loadavg); took=$((SECONDS - t0))
  nfound=$(find "$found" -type f | wc -l)
  [ $rc -ne 0 ] && [ "$nfound" -eq 0 ] && nfound=1
  printf '%-16s execs %-10s exec/s %-7s cov %-5s ft %-6s corpus %-5s findings %s load %s-%s\n' \
    "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$nfound" "$load0" "$load1"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-}" "${speed:-}" "${cov:-}" \
    "${ft:-}" "${corp:-}" "$nfound" "$load0" "$load1" "$took" >>"$summary"
  if [ $rc -ne 0 ] || [ "$nfound" -gt 0 ]; then
    failed=1
    echo "  finding in $t (exit $rc): $log, inputs in $found/" >&2
    grep -E 'ERROR: |check failed|runtime error|SUMMARY' "$log" | head -5 | sed 's/^/    /' >&2
    continue
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    # Minimize the seeds plus everything new into a fresh directory, then
    # replace the checked-in corpus with it (same files when nothing new).
    # Over FUZZ_MAX_CORPUS files (200): a greedy set cover of the same
    # features, then, if still over, of the same edges without hit counts
    # (the full corpus stays in build-fuzz/corpus for the next run).
    merged=$dir/merged/$t
    rm -rf "$merged"; mkdir -p "$merged"
    ok=0
    "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 "$merged" "$seeds" "$work" \
      >"$dir/merge-$t.log" 2>&1 && ok=1
    for pass in "" "-use_counters=0"; do
      [ $ok = 1 ] && [ "$(ls "$merged" | wc -l)" -gt "${FUZZ_MAX_CORPUS:-200}" ] || break
      rm -rf "$merged.cover"; mkdir -p "$merged.cover"
      "$bin" -set_cover_merge=1 $pass -timeout=10 -rss_limit_mb=2048 "$merged.cover" "$merged" \
        >>"$dir/merge-$t.log" 2>&1 || { ok=0; break; }
      rm -rf "$merged"; mv "$merged.cover" "$merged"
      echo "  set cover ${pass:-of all features}: $(ls "$merged" | wc -l) files"
    done
    if [ $ok = 1 ] && [ -n "$(ls "$merged")" ]; then
      # finding-* files are reproducers of past findings: kept as they are
      find "$seeds" -maxdepth 1 -type f ! -name 'finding-*' -delete
      cp "$merged"/* "$seeds"/
      echo "  merged: $(ls "$seeds" | wc -l) files in tests/fuzz/corpus/$t"
    else
      echo "  merge failed, corpus left as it was: $dir/merge-$t.log" >&2
      failed=1
    fi
  fi
done
exit $failed
