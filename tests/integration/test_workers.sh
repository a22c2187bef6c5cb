# Worker registry end to end: sidecars register and heartbeat, the owner
# evicts dead ones (batched, fenced), and the dispatcher's history tells.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
P=wk$$x$RANDOM
W="dispatcher-$P-q"
"$DISPATCHD" run --dispatcher "$P/q" --temporal-url "$U" --redis-url "$R" --server-id owner1 \
  --heartbeat-interval 300ms --stale-threshold 1200ms --metrics-listen 127.0.0.1:0 2>"$T/owner.log" &
track_dd $! owner1
wait_until 10 grep -q event=record_claimed "$T/owner.log" || fail "owner did not claim"
mport=$(sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' "$T/owner.log")

worker() { "$DISPATCHD" worker --dispatcher "$P/q" --server-id "$1" --redis-url "$R" --heartbeat-interval 300ms 2>"$T/$1.log" & echo $! >"$T/$1.pid"; track_dd "$(cat "$T/$1.pid")" "worker $1"; }
worker w1; worker w2
js() { "$DISPATCHD" workers "$P/q" --redis-url "$R" --json; }
check "both workers are registered" wait_until 5 bash -c "[ \"\$('$DISPATCHD' workers '$P/q' --redis-url '$R' --json | jq -r '[.workers[].server_id] | sort | join(\",\")')\" = w1,w2 ]"
check "workers shows the owner" [ "$(js | jq -r '"\(.state) \(.owner)"')" = "owned owner1" ]
check "status lists them under the dispatcher" bash -c "'$DISPATCHD' status --redis-url '$R' | grep -A3 '$P/q' | grep -q 'worker .*w2'"
check "the owner counts them" wait_until 5 bash -c "curl -fsS http://127.0.0.1:$mport/metrics | grep -q '^dispatchd_workers_registered 2'"

# a worker that dies is evicted once its heartbeat is older than the threshold
t0=$(now_us)
kill -9 "$(cat "$T/w2.pid")"
expect_exit "$(cat "$T/w2.pid")" 137
check "a dead worker is evicted" wait_until 5 grep -q 'event=workers_evicted .*w2' "$T/owner.log"
t1=$(now_us)
echo "# eviction $(( (t1 - t0) / 1000 )) ms after kill -9 (threshold 1200 ms, interval 300 ms)"
check "within threshold + 2 intervals + 1 s" [ $((t1 - t0)) -lt 2800000 ]
check "it is gone from the registry" [ "$(js | jq -r '[.workers[].server_id] | join(",")')" = w1 ]
check "the live worker was never evicted" bash -c "! grep -q 'event=workers_evicted .*w1' '$T/owner.log'"
check "evictions are counted" bash -c "curl -fsS http://127.0.0.1:$mport/metrics | grep -q '^dispatchd_worker_evictions_total 1'"
run=$(sed -n 's/.*event=owning.* run_id=\([^ ]*\).*/\1/p' "$T/owner.log" | tail -1)
sig=$(curl -fsS "$U/api/v1/namespaces/default/workflows/$W/history?execution.runId=$run" |
      jq -r '[.history.events[] | select(.eventType=="EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") | .workflowExecutionSignaledEventAttributes.signalName] | join(",")')
check "registrations and evictions are signals in the dispatcher's history" bash -c "[[ '$sig' == *workers*workers* ]]"

# a clean exit deregisters at once
kill -TERM "$(cat "$T/w1.pid")"
expect_exit "$(cat "$T/w1.pid")" 0
check "a stopped worker deregisters" [ "$(js | jq -r '.workers | length')" = 0 ]
check "and says so" grep -q event=worker_deregistered "$T/w1.log"

# a worker for a dispatcher nobody owns is registered and shown as waiting
"$DISPATCHD" worker --dispatcher "$P/lonely" --server-id w3 --redis-url "$R" 2>"$T/w3.log" &
track_dd $! "worker w3"
check "a worker of an unowned dispatcher registers" wait_until 5 grep -q event=worker_registered "$T/w3.log"
check "and is shown as waiting" [ "$("$DISPATCHD" workers "$P/lonely" --redis-url "$R" --json | jq -r .state)" = waiting ]

# bad input
set +e
out=$("$DISPATCHD" workers "$P/nosuch" --redis-url "$R" 2>&1); rc=$?
check "an unknown dispatcher fails" [ $rc -eq 1 ]
check "and says it is unknown" grep -q "unknown dispatcher '$P/nosuch'" <<<"$out"
out=$("$DISPATCHD" worker --dispatcher "$P/q" --redis-url "$R" 2>&1); rc=$?
check "a worker without --server-id is refused" [ $rc -eq 2 ]
dead=$(free_port)
out=$("$DISPATCHD" workers "$P/q" --redis-url "redis://127.0.0.1:$dead/0" 2>&1); rc=$?
check "Redis down: workers exits 1" [ $rc -eq 1 ]
set -e
