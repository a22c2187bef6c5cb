# --id-prefix (issue 11) against the real dev server and Redis: `run` starts
# its workflow under the prefix (read back with the temporal CLI), a host with
# another prefix on the same Redis exits 2 without starting anything in
# Temporal (it would be a second dispatcher for the same project/queue), and
# bad prefixes are refused with exit 2 by every command that takes one.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
NS=default
P=pfx$$x$RANDOM
RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
desc() { curl -fsS "$U/api/v1/namespaces/$NS/workflows/$1"; }
running() { [ "$(desc "$1" 2>/dev/null | jq -r .workflowExecutionInfo.status)" = WORKFLOW_EXECUTION_STATUS_RUNNING ]; }
absent() { ! curl -fsS -o /dev/null "$U/api/v1/namespaces/$NS/workflows/$1" 2>/dev/null; }
run_dd() { # NAME ARGS...: a `run` host in the background, pid in $DD
  local name=$1; shift
  "$DISPATCHD" run --dispatcher "$P/q" --temporal-url "$U" --redis-url "$R" \
    --heartbeat-interval 200ms --stale-threshold 2s --metrics-listen off "$@" \
    >"$T/$name.out" 2>"$T/$name.log" &
  DD=$!; track_dd $DD "$name"
}

# --- a fleet on its own prefix ------------------------------------------------------
run_dd a --server-id hostA --id-prefix acme-
A=$DD
check "the owner starts acme-<project>-<queue>" wait_until 30 running "acme-$P-q"
check "and nothing under the default prefix" absent "dispatcher-$P-q"
check "the fleet's prefix is recorded in Redis" [ "$(redis-cli -p "$RP" get dd:id_prefix)" = acme- ]
check "the record is keyed by the prefixed ID" \
  [ "$(redis-cli -p "$RP" hget "dd:hb:{acme-$P-q}" server_id)" = hostA ]

# --- a host left on the default prefix: refused, nothing started ---------------------
run_dd b --server-id hostB
B=$DD
expect_exit $B 2 30
check "it says which prefix the fleet uses" grep -q 'event=id_prefix_mismatch.*fleet_id_prefix=acme-' "$T/b.log"
check "it started no dispatcher-<project>-<queue> workflow" absent "dispatcher-$P-q"
check "the fleet's owner is untouched" \
  [ "$(redis-cli -p "$RP" hget "dd:hb:{acme-$P-q}" server_id)" = hostA ]

# the worker side uses the same ID
"$DISPATCHD" worker --dispatcher "$P/q" --server-id w1 --redis-url "$R" --id-prefix acme- \
  --heartbeat-interval 200ms >"$T/w.out" 2>"$T/w.log" &
W=$!; track_dd $W worker
registered() { "$DISPATCHD" workers "$P/q" --json --id-prefix acme- --redis-url "$R" 2>>"$T/workers.log" |
  jq -e '.workers | map(.server_id) | index("w1") != null' >/dev/null; }
check "a worker with the fleet's prefix registers under the prefixed ID" wait_until 15 registered
kill -TERM $W
expect_exit $W 0 30

kill -TERM $A
expect_exit $A 0 60
check "SIGTERM released the prefixed run" bash -c "! curl -fsS '$U/api/v1/namespaces/$NS/workflows/acme-$P-q' | jq -e '.workflowExecutionInfo.status == \"WORKFLOW_EXECUTION_STATUS_RUNNING\"' >/dev/null"

# --- bad prefixes: exit 2 with the rule, from every command that takes one ------------
refuses() { # PREFIX CMD ARGS...
  local bad=$1 rc=0; shift
  timeout 20 "$DISPATCHD" "$@" --id-prefix "$bad" >"$T/bad.out" 2>"$T/bad.err" </dev/null || rc=$?
  check "'$1' refuses --id-prefix '$bad' with exit 2 (got $rc) and says why" \
    bash -c "[ $rc = 2 ] && grep -q 'id prefix' '$T/bad.err'"
}
for bad in a-b- "" é- "$(printf 'a%.0s' $(seq 64))-" nodash; do
  refuses "$bad" run --dispatcher "$P/q" --redis-url "$R" --temporal-url "$U"
  refuses "$bad" takeover "$P" q --temporal-url "$U"
  refuses "$bad" worker --dispatcher "$P/q" --server-id w9 --redis-url "$R"
  refuses "$bad" workers "$P/q" --redis-url "$R"
done
check "no bad prefix reached Temporal" absent "a-b-$P-q"
