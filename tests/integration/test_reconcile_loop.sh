# `dispatchd reconcile --loop` on its own, as an SRE would run it next to the
# hosts: JSON per cycle, --metrics-listen for Prometheus (/metrics, /healthz,
# /readyz), a stale record cleaned, a clean exit on SIGTERM; bad input refused.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
P=rl$$x$RANDOM
# A namespace of its own (made by the fixture): this reconciler sweeps every
# 5 s, and a sweep terminates every dispatcher of its namespace that has no
# record in this test's Redis - in "default", every other test's.
NS=dd-reconcile-loop

# --- bad input ---------------------------------------------------------------------------
set +e
"$DISPATCHD" reconcile --temporal-url "$U" --namespace "$NS" --redis-url "$R" --metrics-listen 127.0.0.1:0 \
  >"$T/once.out" 2>"$T/once.err"
rc=$?
set -e
check "--metrics-listen without --loop is a usage error (exit 2)" [ $rc -eq 2 ]
check "and says it needs --loop" grep -q -- "--metrics-listen needs --loop" "$T/once.err"

busy=$(free_port)
hold_port "$busy"
set +e
timeout 20 "$DISPATCHD" reconcile --loop --temporal-url "$U" --namespace "$NS" --redis-url "$R" \
  --metrics-listen "127.0.0.1:$busy" >"$T/busy.out" 2>"$T/busy.err"
rc=$?
set -e
check "a taken --metrics-listen port is bad input (exit 2), without hanging" [ $rc -eq 2 ]
check "and names the address" grep -q "127.0.0.1:$busy" "$T/busy.err"

# --- a stale dispatcher for the loop to clean: a real owner, then kill -9 -------------------
"$DISPATCHD" run --dispatcher "$P/q" --temporal-url "$U" --namespace "$NS" --redis-url "$R" --server-id gone \
  --heartbeat-interval 300ms --stale-threshold 1500ms --metrics-listen off 2>"$T/owner.log" &
owner=$!
track_dd $owner "run (owner)"
wait_until 10 grep -q event=record_claimed "$T/owner.log" || fail "owner did not claim"
run=$(sed -n 's/.*event=owning.* run_id=\([^ ]*\).*/\1/p' "$T/owner.log" | tail -1)
kill -9 "$owner"
expect_exit "$owner" 137

# --- the loop, with metrics ----------------------------------------------------------------
"$DISPATCHD" reconcile --loop --temporal-url "$U" --namespace "$NS" --redis-url "$R" --server-id rec1 \
  --stale-threshold 1500ms --reconcile-interval 1s --metrics-listen 127.0.0.1:0 \
  >"$T/loop.out" 2>"$T/loop.log" &
loop=$!
track_dd $loop "reconcile --loop"
wait_until 10 grep -q event=metrics_listening "$T/loop.log" || fail "no metrics_listening"
mport=$(sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' "$T/loop.log")
M="http://127.0.0.1:$mport"
check "/healthz answers" curl -fsS "$M/healthz" -o /dev/null
check "a JSON line per cycle on stdout" wait_until 10 bash -c "[ \$(grep -c '\"result\"' '$T/loop.out') -ge 2 ]"
check "/readyz is 200 after a clean cycle" wait_until 10 curl -fsS "$M/readyz" -o /dev/null
cycles() { curl -fsS "$M/metrics" | sed -n 's/^dispatchd_reconcile_cycles_total{result="ok"} //p'; }
c1=$(cycles)
check "the stale run is terminated and its record cleaned" \
  wait_until 15 bash -c "grep -q '\"cleaned\":1' '$T/loop.out'"
st=$(curl -fsS "$U/api/v1/namespaces/$NS/workflows/dispatcher-$P-q?execution.runId=$run" |
     jq -r .workflowExecutionInfo.status)
check "the dead owner's run is terminated in Temporal" [ "$st" = WORKFLOW_EXECUTION_STATUS_TERMINATED ]
check "the record is gone from Redis" [ "$(redis-cli -p "$RP" exists "dd:hb:{dispatcher-$P-q}")" = 0 ]
check "cycles are counted on /metrics" wait_until 5 bash -c "[ \"\$(curl -fsS '$M/metrics' | sed -n 's/^dispatchd_reconcile_cycles_total{result=\"ok\"} //p')\" -gt '${c1:-0}' ]"
check "cleanups are counted on /metrics" bash -c "curl -fsS '$M/metrics' | grep -q '^dispatchd_stale_cleanups_total 1'"

# --- Redis down: the cycle fails, /readyz says so; back up: ready again ----------------------
redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1 || true
check "/readyz is 503 with a reason while cycles fail" \
  wait_until 10 bash -c "curl -s '$M/readyz' | grep -q 'last reconcile cycle failed'"
start_redis "$RP"
check "/readyz is 200 again once Redis is back" wait_until 15 curl -fsS "$M/readyz" -o /dev/null

# --- SIGTERM: a clean exit, the port closed ------------------------------------------------
kill -TERM "$loop"
expect_exit "$loop" 0 # SIGTERM ends the loop with exit 0
check "the metrics port is closed" bash -c "! curl -fsS -m 2 '$M/healthz' -o /dev/null 2>/dev/null"
