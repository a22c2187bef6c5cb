# Configuration from the environment and the port options of the read-only
# commands, against a real Redis and the fixture's Temporal (issue 13):
#  - item 8: DISPATCHD_DISPATCHER is a comma-separated list; any --dispatcher
#    flag replaces that list (flags override the environment, README);
#  - item 6: `status` and `workers` take --redis-port (a local Redis on
#    127.0.0.1:PORT, as for `up`); against --redis-url a flag beats the
#    environment, and at the same level they must agree.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
CLOSED=$(free_port)
P=ce$$x$RANDOM
unset DISPATCHD_DISPATCHER DISPATCHD_REDIS_URL DISPATCHD_REDIS_PORT
st() { "$DISPATCHD" status --json "$@" 2>>"$T/status.log"; }
# owned NAME...: status (via --redis-port) lists exactly these dispatchers, healthy
owned() {
  local want; want=$(printf '%s\n' "$@" | sort | paste -sd' ')
  [ "$(st --redis-port "$RP" | jq -r '[.dispatchers[] | select(.state=="healthy") | "\(.project)/\(.queue)"] | sort | join(" ")')" = "$want" ]
}
runner() { # NAME ARGS...: a `run` host in the background, its log in $T/NAME.log
  local name=$1; shift
  "$DISPATCHD" run --temporal-url "$U" --redis-url "$R" --server-id "$name" --metrics-listen off \
    --heartbeat-interval 300ms --stale-threshold 1200ms "$@" 2>"$T/$name.log" &
  RUNNER=$!
  track_dd $RUNNER "run $name"
}

# --- item 6: status and workers with --redis-port --------------------------------
out=$("$DISPATCHD" status --redis-port "$RP" 2>&1) || true
check "status --redis-port reads the local Redis on that port" grep -q "no dispatchers in redis://127.0.0.1:$RP/0" <<<"$out"

# --- item 8: a list in the environment -----------------------------------------------
DISPATCHD_DISPATCHER="$P/a, $P/b" runner envhost
check "DISPATCHD_DISPATCHER='$P/a, $P/b' is two dispatchers, both owned" wait_until 30 owned "$P/a" "$P/b"
check "the log says both came from the environment" \
  [ "$(grep -c "event=dispatcher_configured .*source=environment" "$T/envhost.log")" = 2 ]
check "no dispatcher named after the whole list" bash -c "! grep -q 'dispatcher=\"$P/a, $P/b\"' '$T/envhost.log'"
check "workers --redis-port: the owner of one of them" \
  [ "$("$DISPATCHD" workers "$P/b" --redis-port "$RP" --json | jq -r '"\(.state) \(.owner)"')" = "owned envhost" ]
kill -TERM $RUNNER; expect_exit $RUNNER 0
check "released on TERM" wait_until 10 owned

# --- item 8: flags override the environment ---------------------------------------------
DISPATCHD_DISPATCHER="$P/e1,$P/e2" runner flaghost --dispatcher "$P/f"
FLAGHOST=$RUNNER
check "with --dispatcher, only the flag's dispatcher is owned" wait_until 30 owned "$P/f"
check "the log names only the flag's dispatcher" \
  [ "$(grep "event=dispatcher_configured" "$T/flaghost.log" | sed 's/.*dispatcher=\([^ ]*\) source=\([a-z]*\).*/\1 \2/')" = "$P/f flag" ]
check "no workflow was started for the environment's list" \
  bash -c "! curl -fsS '$U/api/v1/namespaces/default/workflows/dispatcher-$P-e1' >/dev/null 2>&1"
check "and no record for it" bash -c "! '$DISPATCHD' workers '$P/e1' --redis-port $RP >/dev/null 2>&1"
# even an invalid environment list is ignored when a flag is given
DISPATCHD_DISPATCHER="not-a-dispatcher,,," runner flaghost2 --dispatcher "$P/g"
check "an invalid list in the environment is ignored under --dispatcher" wait_until 30 owned "$P/f" "$P/g"

# --- item 6: --redis-port against --redis-url ------------------------------------------
export -f st; export RP T DISPATCHD
check "--redis-port and a --redis-url naming the same server agree" \
  bash -c "st --redis-port $RP --redis-url redis://127.0.0.1:$RP/0 >/dev/null"
check "the --redis-port flag beats DISPATCHD_REDIS_URL from the environment" \
  bash -c "DISPATCHD_REDIS_URL=redis://127.0.0.1:$CLOSED/0 st --redis-port $RP | jq -e '.dispatchers | length == 2' >/dev/null"
check "the --redis-url flag beats DISPATCHD_REDIS_PORT from the environment" \
  bash -c "DISPATCHD_REDIS_PORT=$CLOSED st --redis-url $R | jq -e '.dispatchers | length == 2' >/dev/null"
set +e; out=$("$DISPATCHD" workers "$P/f" --redis-port "$RP" --redis-url "redis://127.0.0.1:$CLOSED/0" 2>&1); rc=$?; set -e
check "--redis-port and --redis-url naming different servers: exit 2" [ $rc = 2 ]
check "... and both are named" grep -q -- "--redis-port $RP and --redis-url 'redis://127.0.0.1:$CLOSED/0' name different Redis servers" <<<"$out"
check "the --help of status lists --redis-port" bash -c "'$DISPATCHD' status --help | grep -q -- '--redis-port PORT'"
check "the --help of workers lists --redis-port" bash -c "'$DISPATCHD' workers --help | grep -q -- '--redis-port PORT'"
for p in $RUNNER $FLAGHOST; do kill -TERM $p; expect_exit $p 0; done
