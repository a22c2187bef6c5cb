# Issue 11, workflow mode: dispatchd starts the user's OWN dispatcher workflow
# (--workflow-type) and keeps exactly one chain of it, judged by a real Temporal
# Go SDK worker (dd-interop, tests/interop/main.go) that runs DispatcherWorkflow:
# a long-running workflow that counts `dispatch` signals, records which server id
# started it (input field `server_id`, else memo), continues as new every 2 s
# carrying that state, answers the query `state`, and returns on a `finish` signal.
#
# What is asserted, phase by phase (W = dispatcher-shop-orders%2Dq, the ID of
# shop/orders-q as in docs/ids.md; thresholds 500ms / 2s):
#  1 A starts: the chain's state says started_by=A (from the input field set by
#    --input-server-id-field), the input keeps {"tenant":"t1"}, the memo holds
#    server_id/project/queue, it runs on orders-q as type DispatcherWorkflow.
#  2 >= 5 continue-as-new with no ownership change: same chain (first run id),
#    Redis record still A with the same run id and epoch, no termination of any
#    run of W, no ownership_lost/run_missing/terminate in A's log, one takeover,
#    the dispatch signals counted across runs, no failed workflow task.
#  3 B starts: termination-first takeover (A's chain TERMINATED, closed before
#    B's chain began), B's chain says started_by=B, A hears it lost and stays up.
#  4 kill -9 B with A standing by: A owns again within threshold + 2 s and
#    starts a new chain (started_by=A); B's chain is terminated.
#  5 SIGTERM A (after its chain continued as new at least once, so a
#    termination by run id instead of first run id would miss): exit 0, the
#    chain TERMINATED with reason "released by A", the record deleted, no
#    running run of W.
#  6 E starts W with --input-file; kill -9 E, the only owner of W, while F runs
#    another dispatcher (shop/side-q on --workflow-task-queue orders-q): F's
#    reconciler terminates E's chain
#    (after it continued as new) with reason "stale: no heartbeat from E..." and
#    deletes the record.
#  7 --on-workflow-exit restart: the chain returns on its own (`finish`); it is
#    COMPLETED, not terminated; C starts a new chain within 5 s (started_by=C),
#    keeps the record, and logs `event=workflow_exited ... action=restart`.
#  8 --on-workflow-exit release: D's chain returns; D logs `event=workflow_exited
#    ... action=release`, deletes its record, starts nothing new, and (its only
#    dispatcher released) exits 0 within 10 s.
#  9 legacy: a `dispatchd.dispatcher` marker started by hand (Temporal CLI) on
#    the user's queue with memo server_id/project/queue, as dispatchd before
#    issue 11 left them; `dispatchd run` in marker mode takes it over (that run
#    terminated, the new marker on task queue `dispatchd`), and releases it.
# 10 a run nobody picks up (a queue no worker polls): a warning and a gauge within
#    the threshold, and "picked up" once a worker comes; a type the queue's worker
#    does not register (its tasks fail): the same warning, saying so.
# Every dispatchd started here is stopped by the test and its exit code checked
# (SIGTERM -> 0, kill -9 -> 137); so is the SDK worker (SIGTERM -> 0).
source "$(dirname "$0")/../integration/lib.sh"

DDI=${DD_INTEROP:?set by ctest}
TCLI=${DD_SOURCE_DIR:?}/.tools/bin/temporal
[ -x "$TCLI" ] || TCLI=$(command -v temporal) || fail "temporal CLI not found"
U=$(cat "$DD_FIXTURE_DIR/temporal/url")
G=$(cat "$DD_FIXTURE_DIR/temporal/grpc")
RP=$(free_port); start_redis "$RP"
Q=orders-q
W=dispatcher-shop-orders%2Dq
KEY="dd:hb:{$W}"
# The log line a host writes when the workflow it started ends on its own
# (the C side's contract, asserted in phases 7 and 8).
EXIT_EVENT=event=workflow_exited

"$DISPATCHD" run --help 2>&1 | grep -q -- --workflow-type ||
  fail "this dispatchd has no workflow mode yet (run --workflow-type, issue 11)"

C=(--redis-url "redis://127.0.0.1:$RP/0" --temporal-url "$U" --heartbeat-interval 500ms
   --stale-threshold 2s --metrics-listen off)
WF=(--workflow-type DispatcherWorkflow --input '{"tenant":"t1"}' --input-server-id-field server_id)

host() { # host NAME DISPATCHER [args...]: a dispatchd run host, pid in $T/NAME.pid
  local name=$1 d=$2; shift 2
  "$DISPATCHD" run --dispatcher "$d" "${C[@]}" --server-id "$name" "$@" 2>>"$T/$name.log" &
  echo $! >"$T/$name.pid"
  track $!
}
hpid() { cat "$T/$1.pid"; }
alive() { kill -0 "$(hpid "$1")" 2>/dev/null; }
stop_host() { # stop_host NAME: SIGTERM, and its exit code must be 0
  local rc=0
  kill -TERM "$(hpid "$1")"
  wait "$(hpid "$1")" || rc=$?
  check "$1 exits 0 on SIGTERM" [ $rc = 0 ]
}
rec() { redis-cli -p "$RP" hget "${2:-$KEY}" "$1"; }
owner_is() { [ "$(rec server_id)" = "$1" ]; }
ddi() { local c=$1; shift; "$DDI" "$c" --address "$G" "$@" 2>>"$T/ddi.out"; }
chain() { ddi describe-chain --workflow-id "$W" "$@"; }       # W's latest chain, or the one of --run-id
state() { ddi query-state --workflow-id "$W" | jq -r "$1"; }  # a field of the current run's state
started_by_is() { [ "$(state .started_by)" = "$1" ]; }
running_runs() { "$TCLI" workflow count --address "$G" -o json \
  --query "WorkflowId='${1:-$W}' AND ExecutionStatus='Running'" | jq -r '.count // "0"'; }
cans_at_least() { # cans_at_least N [describe-chain args]
  local n; n=$(chain "${@:2}" | jq -r .continued_as_new_count) && [ "$n" -ge "$1" ]
}
new_chain_by() { # new_chain_by HOST OLD_FIRST_RUN_IDS...: W's latest chain runs, is not an old one, says HOST
  local c f o; c=$(chain) || return 1
  [ "$(jq -r .status <<<"$c")" = RUNNING ] || return 1
  f=$(jq -r .first_run_id <<<"$c")
  for o in "${@:2}"; do [ "$f" != "$o" ] || return 1; done
  started_by_is "$1"
}
first_run() { chain | jq -r .first_run_id; }
ts_ns() { date -d "$1" +%s%N; }
nterm() { chain | jq '.id_terminations | length'; }

# --- the user's SDK worker -------------------------------------------------------------
"$DDI" worker --address "$G" --task-queue "$Q" --cas-every 2s --state-file "$T/worker.state" \
  2>"$T/worker.log" &
WPID=$!; track $WPID
wait_until 20 grep -q event=worker_started "$T/worker.log" || fail "the SDK worker did not start"

# --- 1: A starts the user's workflow ---------------------------------------------------
host A shop/$Q "${WF[@]}"
wait_until 15 grep -q event=record_claimed "$T/A.log" || fail "A did not take ownership"
check "the record names A" owner_is A
check "the workflow answers its state query: started by A" wait_until 15 started_by_is A
st=$(ddi query-state --workflow-id "$W")
echo "# state: $st"
check "A's id came in through the input field" [ "$(jq -r .started_by_source <<<"$st")" = input ]
check "the user's input is kept" [ "$(jq -r .input.tenant <<<"$st")" = t1 ]
ch=$(chain)
echo "# chain: $(jq -c 'del(.run_ids)' <<<"$ch")"
check "the workflow is the user's type on the user's queue" \
  [ "$(jq -r '"\(.type) \(.task_queue) \(.status)"' <<<"$ch")" = "DispatcherWorkflow $Q RUNNING" ]
check "its memo holds server_id, project, queue" \
  [ "$(jq -r '"\(.memo.server_id) \(.memo.project) \(.memo.queue)"' <<<"$ch")" = "A shop $Q" ]
F1=$(jq -r .first_run_id <<<"$ch")
E1=$(rec epoch); R1=$(rec run_id)

# --- 2: continue-as-new is not a loss ----------------------------------------------------
for _ in 1 2 3; do ddi signal --workflow-id "$W" --name dispatch; done
check "the chain continued as new >= 5 times" wait_until 30 cans_at_least 5
ch=$(chain)
echo "# after: $(jq -c '{first_run_id, current_run_id, continued_as_new_count, status}' <<<"$ch")"
check "it is still the chain A started" [ "$(jq -r .first_run_id <<<"$ch")" = "$F1" ]
check "and it is running" [ "$(jq -r .status <<<"$ch")" = RUNNING ]
check "no run of W was ever terminated" [ "$(jq '.id_terminations | length' <<<"$ch")" = 0 ]
check "the record still names A, with the same epoch (no new claim)" [ "$(rec server_id) $(rec epoch)" = "A $E1" ]
# The chain is read after the record: the chain continues as new every 2 s and the
# record follows it, so a chain read before the record may not know its run yet.
RR=$(rec run_id); ch=$(chain)
echo "# record run_id at the claim: $R1, now: $RR"
in_chain() { jq -e --arg r "$1" '.run_ids | index($r) != null' <<<"$ch" >/dev/null; }
check "and it holds a run id of this chain" in_chain "$RR"
check "and A keeps heartbeating" [ $(( $(date +%s%3N) - $(rec hb_ms) )) -lt 2000 ]
check "A never thought it lost the workflow" bash -c "! grep -E 'event=(ownership_lost|run_missing|terminate) ' '$T/A.log'"
check "A took over exactly once" [ "$(grep -c 'event=takeover ' "$T/A.log")" = 1 ]
st=$(ddi query-state --workflow-id "$W")
check "the state carried across the runs: started by A, 3 dispatches, generation >= 5" \
  [ "$(jq -r '"\(.started_by) \(.dispatches) \(.generation >= 5)"' <<<"$st")" = "A 3 true" ]
check "no workflow task of W failed" [ "$(ddi failed-tasks --workflow-id "$W")" = 0 ]

# --- 3: B takes over, termination-first ------------------------------------------------------
host B shop/$Q "${WF[@]}"
check "B owns the record" wait_until 15 owner_is B
check "a new chain runs, started by B" wait_until 15 new_chain_by B "$F1"
F2=$(first_run)
old=$(chain --run-id "$F1"); new=$(chain --run-id "$F2")
check "A's chain was terminated" [ "$(jq -r '"\(.status) \(.terminated_count)"' <<<"$old")" = "TERMINATED 1" ]
check "before B's chain began" \
  [ "$(ts_ns "$(jq -r .close_time <<<"$old")")" -le "$(ts_ns "$(jq -r .start_time <<<"$new")")" ]
check "B's memo names B" [ "$(jq -r .memo.server_id <<<"$new")" = B ]
check "A learns it lost" wait_until 5 grep -q event=ownership_lost "$T/A.log"
check "A stays up as a standby" alive A
check "exactly one run of W runs" [ "$(running_runs)" = 1 ]

# --- 4: kill -9 B, A takes over within threshold + 2 s ---------------------------------------
t0=$(now_us)
kill -9 "$(hpid B)"
rc=0; wait "$(hpid B)" || rc=$?
check "B died of SIGKILL" [ $rc = 137 ]
wait_until 10 owner_is A || fail "A did not take over from the killed B"
t1=$(now_us)
echo "# failover after kill -9: $(( (t1 - t0) / 1000 )) ms (threshold 2000 ms)"
check "failover within threshold + 2 s" [ $((t1 - t0)) -lt 4000000 ]
check "A's new chain runs, started by A" wait_until 10 new_chain_by A "$F1" "$F2"
F3=$(first_run)
check "B's chain was terminated" [ "$(chain --run-id "$F2" | jq -r .status)" = TERMINATED ]
check "exactly one run of W runs" [ "$(running_runs)" = 1 ]

# --- 5: SIGTERM A releases: the chain is terminated, scoped to its first run id ----------------
check "A's chain continued as new before the release" wait_until 10 cans_at_least 1 --run-id "$F3"
stop_host A
ch=$(chain --run-id "$F3")
echo "# released: $(jq -c '{status, termination_reason, continued_as_new_count}' <<<"$ch")"
check "A's chain was terminated with reason 'released by A'" \
  [ "$(jq -r '"\(.status) \(.termination_reason)"' <<<"$ch")" = "TERMINATED released by A" ]
check "the record is gone" [ -z "$(rec server_id)" ]
check "no run of W runs" [ "$(running_runs)" = 0 ]

# --- 6: the reconciler follows the chain of a crashed owner ----------------------------------
SIDE=dispatcher-shop-side%2Dq
host F shop/side-q "${WF[@]}" --workflow-task-queue "$Q"
wait_until 15 grep -q event=record_claimed "$T/F.log" || fail "F did not take ownership of shop/side-q"
side=$(ddi describe-chain --workflow-id "$SIDE")
check "--workflow-task-queue puts F's workflow on the worker's queue" \
  [ "$(jq -r '"\(.type) \(.task_queue)"' <<<"$side")" = "DispatcherWorkflow $Q" ]
echo '{"tenant":"t2"}' >"$T/input.json"
host E shop/$Q --workflow-type DispatcherWorkflow --input-file "$T/input.json" --input-server-id-field server_id
check "E owns W" wait_until 15 owner_is E
check "E's chain runs, started by E" wait_until 15 new_chain_by E "$F1" "$F2" "$F3"
F5=$(first_run)
check "--input-file gave the input" [ "$(state .input.tenant)" = t2 ]
check "E's chain continued as new" wait_until 10 cans_at_least 1 --run-id "$F5"
kill -9 "$(hpid E)"
rc=0; wait "$(hpid E)" || rc=$?
check "E died of SIGKILL" [ $rc = 137 ]
chain_terminated() { [ "$(chain --run-id "$1" | jq -r .status)" = TERMINATED ]; }
check "F's reconciler terminated E's chain" wait_until 20 chain_terminated "$F5"
reason=$(chain --run-id "$F5" | jq -r .termination_reason)
echo "# reconciler's reason: $reason"
check "as stale, naming E" grep -q '^stale: no heartbeat from E' <<<"$reason"
no_record() { [ -z "$(rec server_id)" ]; }
check "and deleted the record" wait_until 10 no_record
check "no run of W runs" [ "$(running_runs)" = 0 ]
stop_host F
check "F's release terminated its own chain" \
  [ "$(ddi describe-chain --workflow-id "$SIDE" | jq -r '"\(.status) \(.termination_reason)"')" = "TERMINATED released by F" ]

# --- 7: the workflow ends on its own, --on-workflow-exit restart -----------------------------
host C shop/$Q "${WF[@]}" --on-workflow-exit restart
check "C owns W" wait_until 15 owner_is C
check "C's chain runs, started by C" wait_until 15 new_chain_by C "$F1" "$F2" "$F3" "$F5"
F6=$(first_run)
nt=$(nterm)
t0=$(now_us)
ddi signal --workflow-id "$W" --name finish
chain_status_is() { [ "$(chain --run-id "$1" | jq -r .status)" = "$2" ]; }
check "the chain completed on its own" wait_until 10 chain_status_is "$F6" COMPLETED
check "a new chain is started, by C" wait_until 5 new_chain_by C "$F1" "$F2" "$F3" "$F5" "$F6"
echo "# restarted after the workflow returned: $(( ($(now_us) - t0) / 1000 )) ms"
check "the completed chain was not terminated" [ "$(chain --run-id "$F6" | jq -r .terminated_count)" = 0 ]
check "nothing was terminated meanwhile" [ "$(nterm)" = "$nt" ]
check "C logged the exit and the restart" grep -q "$EXIT_EVENT .*action=restart" "$T/C.log"
check "C still owns W" owner_is C
check "exactly one run of W runs" [ "$(running_runs)" = 1 ]
stop_host C

# --- 8: the workflow ends on its own, --on-workflow-exit release ------------------------------
F7=$(first_run)
host D shop/$Q "${WF[@]}" --on-workflow-exit release
check "D owns W" wait_until 15 owner_is D
check "D's chain runs, started by D" wait_until 15 new_chain_by D "$F1" "$F2" "$F3" "$F5" "$F6" "$F7"
F8=$(first_run)
nt=$(nterm)
ddi signal --workflow-id "$W" --name finish
check "the chain completed on its own" wait_until 10 chain_status_is "$F8" COMPLETED
gone() { ! alive "$1"; }
check "D exits once it released its only dispatcher" wait_until 10 gone D
rc=0; wait "$(hpid D)" || rc=$?
check "D's exit code is 0" [ $rc = 0 ]
check "D logged the exit and the release" grep -q "$EXIT_EVENT .*action=release" "$T/D.log"
check "the record is gone" [ -z "$(rec server_id)" ]
sleep 2
check "no new chain was started" [ "$(first_run) $(running_runs)" = "$F8 0" ]
check "nothing was terminated" [ "$(nterm)" = "$nt" ]

check "no workflow task of W ever failed" [ "$(ddi failed-tasks --workflow-id "$W")" = 0 ]
check "the worker logged no failed task" bash -c "! grep -q event=workflow_task_failed '$T/worker.log'"

# --- 9: legacy: a marker on the user's queue, left by a dispatchd before issue 11 ---------------
WL=dispatcher-legacy-orders%2Dq
KL="dd:hb:{$WL}"
"$TCLI" workflow start --address "$G" --type dispatchd.dispatcher --task-queue "$Q" --workflow-id "$WL" \
  --input '{"project":"legacy","queue":"orders-q","server_id":"old-host"}' \
  --memo 'server_id="old-host"' --memo 'project="legacy"' --memo 'queue="orders-q"' >"$T/legacy-start.out"
LR=$("$TCLI" workflow describe --address "$G" -w "$WL" -o json | jq -r .workflowExecutionInfo.execution.runId)
host L legacy/$Q
check "L owns the legacy dispatcher" wait_until 15 bash -c "[ \"\$(redis-cli -p $RP hget '$KL' server_id)\" = L ]"
lc=$(ddi describe-chain --workflow-id "$WL" --run-id "$LR")
check "the hand-started marker was terminated" [ "$(jq -r .status <<<"$lc")" = TERMINATED ]
check "L's log names the run it replaced" grep -q "event=takeover .*previous_run_id=$LR" "$T/L.log"
desc=$("$TCLI" workflow describe --address "$G" -w "$WL" -o json)
echo "# L's marker: $(jq -c '{type:.workflowExecutionInfo.type.name, task_queue:.workflowExecutionInfo.taskQueue, status:.workflowExecutionInfo.status}' <<<"$desc")"
check "L's marker runs on task queue 'dispatchd'" \
  [ "$(jq -r '"\(.workflowExecutionInfo.type.name) \(.workflowExecutionInfo.taskQueue) \(.workflowExecutionInfo.status)"' <<<"$desc")" = "dispatchd.dispatcher dispatchd WORKFLOW_EXECUTION_STATUS_RUNNING" ]
stop_host L
check "L's release terminated its marker" \
  [ "$(ddi describe-chain --workflow-id "$WL" | jq -r '"\(.status) \(.termination_reason)"')" = "TERMINATED released by L" ]

# --- 10: a run no worker picks up (a queue nobody polls): said, not silent ----------------
# Temporal accepts the start; dispatchd must say within the stale threshold (2 s) that
# no worker took the first workflow task, and say so again when one does.
NQ=nobody-q-$$
MP=$(free_port)
host N idle/$NQ --workflow-type DispatcherWorkflow --metrics-listen "127.0.0.1:$MP"
metric() { curl -fsS "http://127.0.0.1:$MP/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
check "N owns idle/$NQ" wait_until 15 grep -q event=record_claimed "$T/N.log"
check "N warns that no worker picked up the first workflow task" \
  wait_until 10 grep -q "event=workflow_task_not_picked_up .*task_queue=$NQ" "$T/N.log"
check "the gauge says so" [ "$(metric "dispatchd_workflow_task_unpicked{dispatcher=\"idle/$NQ\"}")" = 1 ]
check "and the counter counted it once" [ "$(metric dispatchd_workflow_task_unpicked_total)" = 1 ]
"$DDI" worker --address "$G" --task-queue "$NQ" --cas-every 60s 2>"$T/worker2.log" &
W2=$!; track $W2
check "once a worker polls the queue, N says the task was picked up" \
  wait_until 15 grep -q "event=workflow_task_picked_up" "$T/N.log"
check "and the gauge is back at 0" [ "$(metric "dispatchd_workflow_task_unpicked{dispatcher=\"idle/$NQ\"}")" = 0 ]
check "the warning was said once" [ "$(grep -c event=workflow_task_not_picked_up "$T/N.log")" = 1 ]
stop_host N
# a type no worker of the queue registers: the worker takes the task and fails it
host X typo/$NQ --workflow-type DispatcherWorkflw --metrics-listen off
check "X says the workers fail its tasks (type not registered?)" \
  wait_until 20 grep -q "event=workflow_task_not_picked_up .*workflow_type=DispatcherWorkflw.*fail them" "$T/X.log"
stop_host X
kill -TERM $W2
rc=0; wait $W2 || rc=$?
check "the second SDK worker exits 0 on SIGTERM" [ $rc = 0 ]

kill -TERM $WPID
rc=0; wait $WPID || rc=$?
check "the SDK worker exits 0 on SIGTERM" [ $rc = 0 ]
