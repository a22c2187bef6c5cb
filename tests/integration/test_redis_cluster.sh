# Redis Cluster is refused, clearly (issue 14 item 6): a real redis-server
# with --cluster-enabled yes (one node is enough for cluster_enabled:1).
# One-shot commands exit 2 naming it; the daemons keep running, log the
# error, start nothing and are not ready (docs/redis.md).
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
# the bus port explicitly: by default it is port + 10000, which a free port above 55535 lacks.
# A port free when picked can be taken before redis binds it (another test, an outgoing
# connection's local port: seen once under ASan, "bind: Address already in use" for the bus
# port): such a start is tried again on other ports, three times at most.
cluster_node() {
  local i pid
  for i in 1 2 3; do
    CP=$(free_port)
    mkdir -p "$T/redis-$CP"
    redis-server --port "$CP" --bind 127.0.0.1 --save "" --appendonly no --dir "$T/redis-$CP" \
      --loglevel warning --cluster-enabled yes --cluster-port "$(free_port)" >"$T/redis-$CP.log" 2>&1 &
    pid=$!
    track $pid
    wait_until 15 bash -c "redis-cli -p $CP ping >/dev/null 2>&1 || ! kill -0 $pid 2>/dev/null" || true
    redis-cli -p "$CP" ping >/dev/null 2>&1 && return 0
    grep -q 'Address already in use' "$T/redis-$CP.log" || fail "redis on $CP did not start within 15 s"
    echo "# attempt $i: a port was taken before redis bound it; trying other ports"
  done
  fail "redis (cluster mode) did not start: its ports were taken three times"
}
cluster_node
check "the server is a Cluster node" grep -q cluster_enabled:1 <<<"$(redis-cli -p "$CP" info cluster)"
P=cl$$x$RANDOM
RU="redis://127.0.0.1:$CP/0"
SAYS="is a Redis Cluster node (INFO: cluster_enabled:1): dispatchd supports a standalone Redis or a replicated primary only"

set +e
out=$("$DISPATCHD" status --redis-url "$RU" 2>&1); rc=$?
check "status is refused (exit 2)" [ $rc -eq 2 ]
check "and says why" grep -q "$SAYS" <<<"$out"
out=$("$DISPATCHD" status --redis-url "redis://127.0.0.1:$CP/3" 2>&1); rc=$?
check "with a db too (not SELECT's vaguer error)" [ $rc -eq 2 ]
check "the same words" grep -q "$SAYS" <<<"$out"
out=$("$DISPATCHD" workers "$P/q" --redis-url "$RU" 2>&1); rc=$?
check "workers is refused (exit 2)" [ $rc -eq 2 ]
check "and says why" grep -q "$SAYS" <<<"$out"
out=$("$DISPATCHD" reconcile --temporal-url "$U" --redis-url "$RU" 2>&1); rc=$?
check "reconcile is refused (exit 2)" [ $rc -eq 2 ]
check "and says why" grep -q "is a Redis Cluster node" <<<"$out"
set -e

# the daemon: a logged error, no dispatcher started, not ready, still alive
M=$(free_port)
"$DISPATCHD" run --dispatcher "$P/q" --temporal-url "$U" --redis-url "$RU" --server-id c1 \
  --heartbeat-interval 300ms --stale-threshold 1200ms --metrics-listen "127.0.0.1:$M" \
  -- sh -c 'echo started >"$0"; exec sleep 60' "$T/child-started" >"$T/run.out" 2>"$T/run.log" &
RUN=$!; track_dd $RUN run
refusals() { [ "$(grep -c 'level=error event=redis_cluster_refused' "$T/run.log")" -ge "$1" ]; }
check "run logs the refusal at level error, at every reconnect" wait_until 20 refusals 3
ready() { curl -sS -w ' %{http_code}' "http://127.0.0.1:$M/readyz" 2>/dev/null; }
check "its metrics endpoint is up" wait_until 10 bash -c "curl -fsS http://127.0.0.1:$M/healthz"
r=$(ready || true)
check "/readyz is 503" [ "${r##* }" = 503 ]
check "/readyz says why" grep -q "redis unavailable: redis at 127.0.0.1:$CP is a Redis Cluster node" <<<"$r"
check "no dispatcher was started: no child" [ ! -e "$T/child-started" ]
check "and nothing written to the node" [ "$(redis-cli -p "$CP" dbsize)" = 0 ]
check "the reconnects back off (not a storm)" grep -q 'event=redis_unavailable .*retry_ms=[1-9][0-9]\{2,\}' "$T/run.log"

"$DISPATCHD" worker --dispatcher "$P/q" --server-id w1 --redis-url "$RU" >"$T/worker.log" 2>&1 &
wpid=$!; track_dd $wpid worker
check "the worker logs the refusal too" wait_until 10 grep -q 'level=error event=redis_cluster_refused' "$T/worker.log"
kill -TERM $wpid
expect_exit $wpid 0
kill -TERM $RUN
expect_exit $RUN 0
