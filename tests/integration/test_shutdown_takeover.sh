# A SIGTERM that arrives while a `dispatchd run` host is taking over must
# leave nothing behind (docs/ownership.md, "Shutdown during a takeover"):
# after exit 0 no owner record in Redis names the host, and no run it
# started is Running in Temporal. Judged with redis-cli and Temporal's HTTP
# API, not from dispatchd's log.
#
# Each host talks to the real Redis and the real Temporal dev server
# through a netfault proxy (tests/support/netfault_proxy.py) whose "latch"
# mode lets one request through and holds its reply, so the TERM lands
# inside the window every time, not by luck:
#   start  the takeover's start request has reached Temporal (the run is
#          Running with our memo), its answer has not come back
#   claim  the owner record's claim has landed in Redis (the record names
#          us), its answer has not come back
#   claim-timeout  the same, but the answer never came: the Redis client
#          gave up on it (2 s command timeout), so the host does not know
#          whether, or with which epoch, the claim landed
#   failover  a standby's takeover after the owner died (kill -9), its start
#          out: also the failover lease it holds must not stay behind
# The TERM goes in, the host says it is shutting down, then the held reply
# is let through (as a slow network would deliver it; within the Redis
# client's 2 s command timeout, so the claim's answer is an answer).
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
TADDR=${U#http://}
NS=default
RP=$(free_port); start_redis "$RP"

proxy() { # proxy NAME: a netfault proxy for host NAME (ports in $T/NAME.ports)
  python3 "$DD_SOURCE_DIR/tests/support/netfault_proxy.py" --route "redis=127.0.0.1:$RP" \
    --route "temporal=$TADDR" --port-file "$T/$1.ports" 2>>"$T/$1.proxy.log" &
  track $!
  # bounded, and generous: a python start-up on a saturated machine took over 5 s
  wait_until 30 test -s "$T/$1.ports" || fail "proxy for $1 did not start within 30 s"
}
pport() { awk -v r="$2" '$1==r{print $2}' "$T/$1.ports"; }
netmode() { # netmode HOST ROUTE pass|latch TEXT
  local c ans; c=$(pport "$1" control)
  exec 7<>"/dev/tcp/127.0.0.1/$c"; echo "mode ${*:2}" >&7; read -r ans <&7; exec 7>&-
  [ "$ans" = ok ] || fail "proxy of $1 refused 'mode ${*:2}': $ans"
}
# the latest run of the ID: "STATUS SERVER_ID" (from its memo), or "none"
latest() {
  local out
  out=$(curl -fsS "$U/api/v1/namespaces/$NS/workflows/$W" 2>/dev/null) || { echo none; return; }
  # the HTTP API shows a json/plain memo field as its value
  jq -r '.workflowExecutionInfo | "\(.status) \(.memo.fields.server_id // "")"' <<<"$out"
}
started_by_us() { [ "$(latest)" = "WORKFLOW_EXECUTION_STATUS_RUNNING $H" ]; }
record_names_us() { [ "$(redis-cli -p "$RP" hget "dd:hb:{$W}" server_id)" = "$H" ]; }
said() { grep -q "event=$2" "$T/$1.log"; }

# scenario NAME ROUTE LATCH WAIT_FOR [EVENT]: one host, one fresh
# dispatcher; the proxy latches on the first request carrying LATCH; once
# WAIT_FOR holds (the request took effect) and the host logged EVENT (if
# given), TERM, then heal.
scenario() {
  local name=$1 route=$2 latch=$3 waitfor=$4 after=${5:-}
  P=stk$$x$RANDOM; W="dispatcher-$P-q"; H="h-$name"
  proxy "$H"
  netmode "$H" "$route" latch "$latch"
  "$DISPATCHD" run --dispatcher "$P/q" --server-id "$H" --metrics-listen off \
    --redis-url "redis://127.0.0.1:$(pport "$H" redis)/0" \
    --temporal-url "http://127.0.0.1:$(pport "$H" temporal)" -- sleep 300 \
    2>"$T/$H.log" &
  local pid=$!
  track_dd "$pid" "$H"
  wait_until 60 "$waitfor" || fail "$name: the latched request did not take effect within 60 s"
  ok "$name: inside the window ($waitfor)"
  if [ -n "$after" ]; then
    wait_until 30 said "$H" "$after" || fail "$name: no $after within 30 s"
    ok "$name: then $after"
  fi
  kill -TERM "$pid"
  wait_until 30 said "$H" shutdown_requested || fail "$name: no shutdown_requested within 30 s"
  netmode "$H" "$route" pass
  expect_exit "$pid" 0 60
  check "$name: no owner record names $H" bash -c '[ "$(redis-cli -p "$1" hget "$2" server_id)" != "$3" ]' _ "$RP" "dd:hb:{$W}" "$H"
  check "$name: no owner record at all" [ "$(redis-cli -p "$RP" exists "dd:hb:{$W}")" = 0 ]
  check "$name: no Running run started by $H (latest: $(latest))" bash -c "[ \"\$1\" != 'WORKFLOW_EXECUTION_STATUS_RUNNING $H' ]" _ "$(latest)"
}

# window 1: the release cancelled the takeover after its start had gone out
scenario start temporal WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING started_by_us
# ... and a takeover stopped by a shutdown is not a failure (takeovers_total{outcome="failed"}
# is the one the runbook says must stay 0)
check "start: the takeover ended as cancelled, not failed" \
  bash -c "grep -q 'event=takeover .*outcome=cancelled' '$T/h-start.log' && ! grep -q 'event=takeover .*outcome=failed' '$T/h-start.log'"
# window 2: the release came while the claim was in flight (the record lands after it)
scenario claim redis INCR record_names_us
# window 3: the claim timed out unanswered, then the release
scenario claim-timeout redis INCR record_names_us redis_timeout

# window 4: a standby's failover takeover (through the failover lease), the
# start out, then TERM: besides the run, the lease must not be left naming
# us (the next standby would wait threshold + 2 x 30 s + 5 s for it)
lease_holder() { redis-cli -p "$RP" get "dd:lease:{failover:$W}"; }
P=stk$$x$RANDOM; W="dispatcher-$P-q"; H=h-failover
KN=(--heartbeat-interval 1s --stale-threshold 3s --metrics-listen off)
proxy "$H"
"$DISPATCHD" run --dispatcher "$P/q" --server-id "$H" "${KN[@]}" \
  --redis-url "redis://127.0.0.1:$(pport "$H" redis)/0" \
  --temporal-url "http://127.0.0.1:$(pport "$H" temporal)" -- sleep 300 2>"$T/$H.log" &
FO=$!; track_dd "$FO" "$H"
wait_until 60 record_names_us || fail "failover: $H did not claim within 60 s"
# another host takes over (every start does); $H becomes a standby
"$DISPATCHD" run --dispatcher "$P/q" --server-id h-other "${KN[@]}" --redis-url "redis://127.0.0.1:$RP/0" \
  --temporal-url "$U" -- sleep 300 2>"$T/h-other.log" &
OTHER=$!; track_dd "$OTHER" h-other
wait_until 60 said "$H" ownership_lost || fail "failover: $H did not lose to h-other within 60 s"
netmode "$H" temporal latch WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING
kill -KILL "$OTHER"; expect_exit "$OTHER" 137
wait_until 60 started_by_us || fail "failover: $H did not start its run within 60 s"
check "failover: $H took over through the lease" [ "$(lease_holder)" = "$H" ]
kill -TERM "$FO"
wait_until 30 said "$H" shutdown_requested || fail "failover: no shutdown_requested within 30 s"
netmode "$H" temporal pass
expect_exit "$FO" 0 60
check "failover: no owner record names $H" bash -c '[ "$(redis-cli -p "$1" hget "$2" server_id)" != "$3" ]' _ "$RP" "dd:hb:{$W}" "$H"
check "failover: the failover lease is not left naming $H (holder: '$(lease_holder)')" [ "$(lease_holder)" != "$H" ]
check "failover: no Running run started by $H (latest: $(latest))" bash -c "[ \"\$1\" != 'WORKFLOW_EXECUTION_STATUS_RUNNING $H' ]" _ "$(latest)"
