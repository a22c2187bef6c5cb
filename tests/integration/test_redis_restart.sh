# A Redis restart longer than the stale threshold must not make a healthy
# owner look stale (found by the workflow-mode fleet bench: a one-shot
# reconcile 0.1 s after a 2.2 s Redis restart terminated 10 healthy chains).
# While Redis is down nobody can heartbeat, so a record Redis kept counts its
# age from Redis's restart when that is later (store.h,
# dd_store_hb_fresh_since). Here: owner A and standby B on 500ms/2s, Redis
# (with its data on disk) stopped for 3 s and started again, then at once a
# one-shot `dispatchd reconcile`: A's run is not terminated (read from
# Temporal), B does not take over, A heartbeats again. Then kill -9 of A:
# B still fails over (the grace only delays a judgement by at most one
# threshold after a restart).
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
NS=dd-redis-restart # its own namespace (tests/fixtures/temporal.sh says why)
P=rr$$x$RANDOM
W=dispatcher-$P-q
KEY="dd:hb:{$W}"
RP=$(free_port)
REDIS_ARGS=(--appendonly yes --appendfsync always)
start_redis "$RP" "${REDIS_ARGS[@]}"
R="redis://127.0.0.1:$RP/0"
C=(--temporal-url "$U" --namespace "$NS" --redis-url "$R" --heartbeat-interval 500ms
   --stale-threshold 2s --metrics-listen off)
rec() { redis-cli -p "$RP" hget "$KEY" "$1" 2>/dev/null; }
run_status() { curl -fsS "$U/api/v1/namespaces/$NS/workflows/$W?execution.runId=$1" |
  jq -r .workflowExecutionInfo.status; }
redis_pid() { redis-cli -p "$RP" info server 2>/dev/null | sed -n 's/^process_id:\([0-9]*\).*/\1/p'; }

# every `run` takes over at start (R2): B first, then A, so A owns and B stands by
"$DISPATCHD" run --dispatcher "$P/q" "${C[@]}" --server-id B 2>"$T/B.log" &
B=$!; track_dd $B B
check "B owns first" wait_until 30 bash -c "[ \"\$(redis-cli -p $RP hget '$KEY' server_id)\" = B ]"
"$DISPATCHD" run --dispatcher "$P/q" "${C[@]}" --server-id A 2>"$T/A.log" &
A=$!; track_dd $A A
check "A takes over; B stands by" wait_until 30 bash -c "[ \"\$(redis-cli -p $RP hget '$KEY' server_id)\" = A ] && grep -q event=ownership_lost '$T/B.log'"
RUN=$(rec run_id)
nb=$(grep -cE 'event=(takeover|owning) ' "$T/B.log")

# --- Redis down for 3 s (1.5 thresholds), its data kept on disk ----------------------------
rpid=$(redis_pid)
[ -n "$rpid" ] || fail "no redis pid"
kill -TERM "$rpid"
wait_until 15 bash -c "! kill -0 $rpid 2>/dev/null" || fail "redis did not stop"
t_down=$(now_us)
# the outage is the stimulus here, not a wait for an outcome: it must outlast the threshold
wait_until 10 bash -c "[ \$(( \$(date +%s%N) / 1000 - $t_down )) -ge 3000000 ]" || true
start_redis "$RP" "${REDIS_ARGS[@]}"
echo "# after the restart: server_id=$(rec server_id) run_id=$(rec run_id) (was $RUN)"
check "Redis kept the record" [ "$(rec server_id)" = A ]

# --- at once: a one-shot reconcile with the fleet's threshold ------------------------------
out=$("$DISPATCHD" reconcile --temporal-url "$U" --namespace "$NS" --redis-url "$R" \
  --stale-threshold 2s --server-id rec1 2>"$T/rec.log") || true
echo "# reconcile: $out"
check "the reconcile right after the restart terminated nothing" \
  [ "$(jq -r '.terminated // .stats.terminated // 0' <<<"$out")" = 0 ]
check "A's run is still running (Temporal)" [ "$(run_status "$RUN")" = WORKFLOW_EXECUTION_STATUS_RUNNING ]
hb_fresh() { [ $(( $(date +%s%3N) - $(rec hb_ms) )) -lt 1500 ]; }
check "A heartbeats again" wait_until 10 hb_fresh
check "the record still names A and its run" [ "$(rec server_id) $(rec run_id)" = "A $RUN" ]
check "B did not take over again" [ "$(grep -cE 'event=(takeover|owning) ' "$T/B.log")" = "$nb" ]
check "A never lost ownership" bash -c "! grep -q 'event=ownership_lost' '$T/A.log'"

# --- and failover still works: kill -9 of A -------------------------------------------------
kill -KILL $A
expect_exit $A 137 10
check "B fails over within the threshold and a bit" \
  wait_until 10 bash -c "[ \"\$(redis-cli -p $RP hget '$KEY' server_id)\" = B ]"
kill -TERM $B
expect_exit $B 0 60
