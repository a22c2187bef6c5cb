# Issue 11: dispatchd's marker workflow must not land on the user's task queue.
#
# A real Temporal Go SDK worker (dd-interop, tests/interop/main.go) polls the
# user's queue `billing-emails`, exactly as a user's production worker does. A
# dispatchd host owns billing/billing-emails in marker mode (the default). Then:
#   - 20 ordinary user workflows on that queue all complete,
#   - no workflow on the user's queue ever failed a workflow task (the worker
#     would fail one it has no code for: `unable to find workflow type:
#     dispatchd.dispatcher`, with attempts climbing and a backlog alert),
#   - the marker runs on the queue dispatchd owns (`dispatchd`, the default of
#     --marker-task-queue), as the Temporal CLI sees it.
source "$(dirname "$0")/../integration/lib.sh"

DDI=${DD_INTEROP:?set by ctest}
TCLI=${DD_SOURCE_DIR:?}/.tools/bin/temporal
[ -x "$TCLI" ] || TCLI=$(command -v temporal) || fail "temporal CLI not found"
U=$(cat "$DD_FIXTURE_DIR/temporal/url")
G=$(cat "$DD_FIXTURE_DIR/temporal/grpc")
RP=$(free_port); start_redis "$RP"
Q=billing-emails
W=dispatcher-billing-billing%2Demails   # docs/ids.md: '-' in a part is escaped
SID=marker-host-$$

# --- the user's SDK worker on its own queue -----------------------------------------
"$DDI" worker --address "$G" --task-queue "$Q" --state-file "$T/worker.state" 2>"$T/worker.log" &
WPID=$!; track $WPID
wait_until 20 grep -q event=worker_started "$T/worker.log" || fail "the SDK worker did not start"

# --- dispatchd owns billing/billing-emails (marker mode, every default) -------------
"$DISPATCHD" run --dispatcher "billing/$Q" --redis-url "redis://127.0.0.1:$RP/0" \
  --temporal-url "$U" --server-id "$SID" --metrics-listen off 2>"$T/dispatchd.log" &
DPID=$!; track $DPID
wait_until 20 grep -q event=record_claimed "$T/dispatchd.log" || fail "dispatchd did not take ownership"
check "the Redis record names this host" [ "$(redis-cli -p "$RP" hget "dd:hb:{$W}" server_id)" = "$SID" ]

# --- the user's workload runs untouched ---------------------------------------------
out=$("$DDI" users --address "$G" --task-queue "$Q" --n 20 --timeout 60s 2>"$T/users.out") ||
  fail "not every user workflow completed: $out"
check "20 user workflows started and completed, none failed" \
  [ "$(jq -c '[.started,.completed,.failed]' <<<"$out")" = "[20,20,0]" ]
desc=$("$TCLI" workflow describe --address "$G" -w "$W" -o json)
echo "# the marker, as the Temporal CLI describes it: $(jq -c '{type:.workflowExecutionInfo.type.name, task_queue:.workflowExecutionInfo.taskQueue, status:.workflowExecutionInfo.status}' <<<"$desc")"
# The worker polls the queue all along: a marker on it would have failed its
# first task within milliseconds of the start, long before the 20 completed.
failed=$("$DDI" failed-tasks --address "$G" --task-queue "$Q" 2>"$T/failed-tasks.out")
echo "# WorkflowTaskFailed events on $Q: $failed"
cat "$T/failed-tasks.out"
check "no workflow on the user's queue failed a workflow task" [ "$failed" = 0 ]
check "the SDK worker logged no failed workflow task" bash -c "! grep -q event=workflow_task_failed '$T/worker.log'"

# --- where the marker is, as the Temporal CLI sees it --------------------------------
check "the marker is a dispatchd.dispatcher workflow" \
  [ "$(jq -r .workflowExecutionInfo.type.name <<<"$desc")" = dispatchd.dispatcher ]
check "it is running" [ "$(jq -r .workflowExecutionInfo.status <<<"$desc")" = WORKFLOW_EXECUTION_STATUS_RUNNING ]
check "it runs on task queue 'dispatchd'" [ "$(jq -r .workflowExecutionInfo.taskQueue <<<"$desc")" = dispatchd ]
count() { "$TCLI" workflow count --address "$G" --query "$1" -o json | jq -r '.count // "0"'; }
check "no dispatchd.dispatcher workflow ever ran on the user's queue" \
  [ "$(count "TaskQueue='$Q' AND WorkflowType='dispatchd.dispatcher'")" = 0 ]
check "the user's queue holds just the 20 user workflows" [ "$(count "TaskQueue='$Q'")" = 20 ]

# --- a clean stop: exit 0, and the marker is released ----------------------------------
kill -TERM $DPID
rc=0; wait $DPID || rc=$?
check "dispatchd exits 0 on SIGTERM" [ $rc = 0 ]
chain=$("$DDI" describe-chain --address "$G" --workflow-id "$W")
check "the marker was terminated by the release" \
  [ "$(jq -r '"\(.status) \(.termination_reason)"' <<<"$chain")" = "TERMINATED released by $SID" ]
kill -TERM $WPID
rc=0; wait $WPID || rc=$?
check "the SDK worker exits 0 on SIGTERM" [ $rc = 0 ]
