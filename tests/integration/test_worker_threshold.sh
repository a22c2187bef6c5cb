# A worker on the default 5 s heartbeat in a 1 s / 3 s fleet (issue 13 item 7):
# before, the owner evicted it and it re-registered every ~5 s (a `workers`
# signal each time) and the worker said nothing. Now it reads the owner's
# threshold (the record's ttl_ms) with every heartbeat and beats at a third of
# it, and an eviction (forced here with SIGSTOP) is logged on its side.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
P=wt$$x$RANDOM
W="dispatcher-$P-q"
"$DISPATCHD" run --dispatcher "$P/q" --temporal-url "$U" --redis-url "$R" --server-id owner1 \
  --heartbeat-interval 1s --stale-threshold 3s --metrics-listen 127.0.0.1:0 2>"$T/owner.log" &
track_dd $! owner1
wait_until 20 grep -q event=record_claimed "$T/owner.log" || fail "owner did not claim"
mport=$(sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' "$T/owner.log")

# no --heartbeat-interval: the default 5 s, longer than the owner's 3 s threshold
"$DISPATCHD" worker --dispatcher "$P/q" --server-id w1 --redis-url "$R" 2>"$T/w1.log" &
WPID=$!; track_dd $WPID "worker w1"
check "the worker registers" wait_until 10 grep -q event=worker_registered "$T/w1.log"
check "it learns the owner's threshold and says what it does about it" \
  wait_until 10 grep -q 'level=warn event=worker_interval_adjusted .*configured_interval_ms=5000 owner_threshold_ms=3000 interval_ms=1000' "$T/w1.log"

# Watch the worker's score in Redis (Redis's clock) over 4 thresholds: the
# span is the property (no eviction in it), and is measured, not slept.
t_end=$(( $(date +%s) + 12 )); max_gap=0; last=""; missing=0
while [ "$(date +%s)" -lt "$t_end" ]; do
  s=$(redis-cli -p "$RP" zscore "dd:workers:{$W}" w1 2>/dev/null || true)
  if [ -z "$s" ]; then missing=$((missing + 1));
  elif [ -n "$last" ] && [ "${s%.*}" != "${last%.*}" ]; then
    g=$(( ${s%.*} - ${last%.*} )); [ $g -gt $max_gap ] && max_gap=$g; last=$s
  elif [ -z "$last" ]; then last=$s; fi
  sleep 0.1
done
echo "# largest gap between the worker's heartbeats: ${max_gap} ms; polls that found it missing: $missing"
check "the worker heartbeats well within the owner's threshold" test "$max_gap" -gt 0 -a "$max_gap" -lt 2000
check "it was never missing from the registry" [ "$missing" -eq 0 ]
check "the owner never evicted it" bash -c "! grep -q 'event=workers_evicted' '$T/owner.log'"
m=$(curl -fsS "http://127.0.0.1:$mport/metrics")
check "and counts no eviction" grep -q '^dispatchd_worker_evictions_total 0' <<<"$m"
run=$(sed -n 's/.*event=owning.* run_id=\([^ ]*\).*/\1/p' "$T/owner.log" | tail -1)
nsig() {
  curl -fsS "$U/api/v1/namespaces/default/workflows/$W/history?execution.runId=$run" |
    jq '[.history.events[] | select(.eventType=="EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") | select(.workflowExecutionSignaledEventAttributes.signalName=="workers")] | length'
}
n=$(nsig)
echo "# workers signals in the dispatcher's history after 12 s: $n (was 9 in 21 s before the fix)"
check "one workers signal: the registration, no flapping" [ "$n" = 1 ]

# An eviction is logged on the worker's side: stop it past the threshold.
kill -STOP $WPID
check "a stopped worker is evicted by the owner" wait_until 15 grep -q 'event=workers_evicted .*w1' "$T/owner.log"
kill -CONT $WPID
check "the worker says it was evicted and registered again" \
  wait_until 10 grep -q 'level=warn event=worker_evicted .*owner_threshold_ms=3000' "$T/w1.log"
check "it is back in the registry" wait_until 5 bash -c "[ -n \"\$(redis-cli -p $RP zscore 'dd:workers:{$W}' w1)\" ]"

# A worker configured faster than a third of the threshold keeps its interval.
"$DISPATCHD" worker --dispatcher "$P/q" --server-id w2 --redis-url "$R" --heartbeat-interval 500ms \
  2>"$T/w2.log" &
track_dd $! "worker w2"
check "a fast worker registers" wait_until 10 grep -q event=worker_registered "$T/w2.log"
check "and is left alone" bash -c "! grep -q worker_interval_adjusted '$T/w2.log'"
echo "# $PASSED checks passed"
