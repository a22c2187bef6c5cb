# Sentinel failover with owners and standbys (issue 14, item 4), judged from
# the children's own output (bench/fleet/child.py lines, tests/support/
# overlap.py), Redis (redis-cli) and Temporal (the temporal CLI), not from
# dispatchd's log.
#
# One primary, one replica, three sentinels (quorum 2, down-after 400 ms;
# tests/integration/sentinel_lib.sh). Three `dispatchd run` hosts for two
# dispatchers, all through --redis-sentinel. Then:
#   1. SENTINEL FAILOVER (graceful: the primary is demoted, the replica
#      promoted), and
#   2. kill -9 of the new primary (the sentinels fail over back to the old
#      one, which has been its replica since step 1).
# After each: both dispatchers acted throughout by at most one host at a
# time (no two children of different hosts overlap), each is acted on by
# exactly one host again within the stale threshold + the sentinels' own
# switch time (+ 5 s for a loaded machine), the acting host is the record's
# owner on the new primary, every record's heartbeat moves on there (an owner
# still writing to the old node would keep its child until its deadline: the
# checks then hold for threshold + 2 s, longer than any deadline), and
# Temporal has exactly one running run per dispatcher. Printed: the sentinels' switch time and the time until both
# dispatchers act again, measured from the kill (bench/RESULTS.md).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/sentinel_lib.sh"

G=$(cat "$DD_FIXTURE_DIR/temporal/grpc")
U=$(cat "$DD_FIXTURE_DIR/temporal/url")
TEMPORAL=${DD_SOURCE_DIR}/.tools/bin/temporal
[ -x "$TEMPORAL" ] || TEMPORAL=$(command -v temporal)
NAME=dd$$
sentinel_set "$NAME"
ok "a primary ($RPRI), a replica ($RREP) and three sentinels ($SENTINELS) are up"

P=sen$$x$RANDOM
CH=$T/children.log
export CHILD_TICK_S=0.02
CHILD=(python3 "$DD_SOURCE_DIR/bench/fleet/child.py" "$CH")
OVERLAP="python3 $DD_SOURCE_DIR/tests/support/overlap.py"
THR_S=5
KNOBS=(--heartbeat-interval 1s --stale-threshold "${THR_S}s")
WIDS=("dispatcher-$P-a" "dispatcher-$P-b")

host() { # NAME: a dispatchd host for $P/a and $P/b through the sentinels
  "$DISPATCHD" run --dispatcher "$P/a" --dispatcher "$P/b" --server-id "$1" \
    --metrics-listen off --temporal-url "$U" --redis-sentinel "$SENTINELS" \
    --redis-master-name "$NAME" "${KNOBS[@]}" -- "${CHILD[@]}" 2>"$T/$1.log" &
  track_dd $! "$1"
  echo $! >"$T/$1.pid"
}
primary() { sentinel_master "$S1" "$NAME" | cut -d' ' -f2; }
rec() { redis-cli -p "$(primary)" hget "dd:hb:{$1}" "$2"; }
# who acted on workflow $1 in the last 200 ms, from the children's own ticks
acting() {
  local now; now=$(( $(date +%s%N) / 1000 ))
  awk -v w="$1" -v since=$((now - 200000)) '$3==w && $2>=since {print $5}' "$CH" | sort -u | tr '\n' ' '
}
# exactly one host acts on each dispatcher, and it is the record's owner
all_owned() {
  local w o
  for w in "${WIDS[@]}"; do
    o=$(rec "$w" server_id) || return 1
    [ -n "$o" ] && [ "$(acting "$w")" = "$o " ] || return 1
  done
}
running() { # running runs of workflow $1, as the temporal CLI lists them
  "$TEMPORAL" workflow list --address "$G" -o json \
    --query "WorkflowId=\"$1\" AND ExecutionStatus=\"Running\"" 2>>"$T/temporal.err" | jq 'length'
}
one_running_each() { local w; for w in "${WIDS[@]}"; do [ "$(running "$w")" = 1 ] || return 1; done; }
# the longest stretch (ms) since $2 in which nobody acted on workflow $1
gap_ms() {
  awk -v w="$1" -v since="$2" -v now="$(( $(date +%s%N) / 1000 ))" '
    $3==w && $2>=since { if (last) { g = $2 - last; if (g > max) max = g } last = $2 }
    END { if (!last) max = now - since; printf "%d", max / 1000 }' <(sort -k2,2n "$CH")
}

# each host takes over at start (termination-first, by design); start the
# next once the previous acts alone, so h3 owns both and h1, h2 stand by
for h in h1 h2 h3; do
  host $h
  check "$h takes both dispatchers over at start" wait_until 40 bash -c "
    for w in ${WIDS[*]}; do [ \"\$(redis-cli -p $RPRI hget \"dd:hb:{\$w}\" server_id)\" = $h ] || exit 1; done"
  wait_until 20 all_owned || fail "$h does not act alone on both after its start"
done
check "Temporal has one running run per dispatcher" wait_until 15 one_running_each

# scenario NAME ACTION...: runs ACTION (the failover), then checks
scenario() {
  local name=$1; shift
  local old; old=$(primary)
  local t0; t0=$(( $(date +%s%N) / 1000 ))
  "$@"
  wait_until 30 bash -c "p=\$(redis-cli -p $S1 sentinel get-master-addr-by-name $NAME | sed -n 2p); [ -n \"\$p\" ] && [ \"\$p\" != $old ]" \
    || fail "$name: the sentinels did not switch away from $old within 30 s"
  local t_switch; t_switch=$(( $(date +%s%N) / 1000 ))
  local new; new=$(primary)
  check "$name: the sentinels name $new as the primary and it says so" wait_until 15 bash -c "[ \"\$(redis-cli -p $new info replication | tr -d '\r' | sed -n 's/^role://p')\" = master ]"
  local bound=$(( THR_S + (t_switch - t0) / 1000000 + 5 ))
  wait_until "$bound" all_owned || fail "$name: not every dispatcher has exactly one acting child (its owner's) within $bound s: a='$(acting "${WIDS[0]}")' b='$(acting "${WIDS[1]}")'"
  local t_act; t_act=$(( $(date +%s%N) / 1000 ))
  ok "$name: every dispatcher is acted on by exactly its owner again"
  check "$name: Temporal has exactly one running run per dispatcher" wait_until 15 one_running_each
  # the owners write to the new primary: every record's heartbeat moves on there
  local w hb0=()
  for w in "${WIDS[@]}"; do hb0+=("$(rec "$w" hb_ms)"); done
  check "$name: heartbeats land on the new primary $new" wait_until 10 bash -c "
    [ \"\$(redis-cli -p $new hget 'dd:hb:{${WIDS[0]}}' hb_ms)\" -gt ${hb0[0]} ] &&
    [ \"\$(redis-cli -p $new hget 'dd:hb:{${WIDS[1]}}' hb_ms)\" -gt ${hb0[1]} ]"
  # and hold: longer than an acting deadline, exactly one child each throughout
  # (an owner still writing elsewhere would have lost its child by then)
  local end=$(( $(date +%s) + THR_S + 2 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    all_owned || fail "$name: not exactly one acting child each during the hold: a='$(acting "${WIDS[0]}")' b='$(acting "${WIDS[1]}")'"
    sleep 0.5
  done
  ok "$name: exactly one acting child each for $((THR_S + 2)) s after"
  local ov; ov=$($OVERLAP "$CH" --since "$t0") || fail "$name: children of two hosts acted at once: $ov"
  ok "$name: no two children acted at once ($ov)"
  # the standbys' release channel moved with the primary: every host is subscribed there
  # (judged by the new primary itself: PUBSUB NUMSUB)
  check "$name: all three hosts subscribe to dd:released on the new primary $new" wait_until 15 \
    bash -c "[ \"\$(redis-cli -p $new pubsub numsub dd:released | sed -n 2p)\" = 3 ]"
  echo "# $name: sentinels switched $old -> $new in $(( (t_switch - t0) / 1000 )) ms;" \
    "both dispatchers acted by one host again $(( (t_act - t0) / 1000 )) ms after the action" \
    "(ticks checked every 50 ms); longest no-child gap: a $(gap_ms "${WIDS[0]}" "$t0") ms," \
    "b $(gap_ms "${WIDS[1]}" "$t0") ms; load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

graceful() { redis-cli -p "$S1" sentinel failover "$NAME" | grep -q OK; }
scenario "SENTINEL FAILOVER" graceful
check "the old primary $RPRI is a replica now" wait_until 20 bash -c "[ \"\$(redis-cli -p $RPRI info replication | tr -d '\r' | sed -n 's/^role://p')\" = slave ]"
# the demoted primary must have caught up before its new primary dies, or
# the sentinels have no replica good enough to promote
check "the old primary $RPRI has linked to the new one" wait_until 20 bash -c "redis-cli -p $RPRI info replication | grep -q master_link_status:up"
kill9() { kill -KILL "$(redis_pid "$(primary)")"; }
scenario "kill -9 of the new primary" kill9

# kill -9 of the owner (h3) alone: its guards' wills reach the primary through the sentinels,
# and a standby hears the release on the subscription that followed the two switches
owner_pid=$(cat "$T/h3.pid")
kill -9 "$owner_pid"
expect_exit "$owner_pid" 137
check "h3's guards wrote their wills (will_released)" wait_until 15 bash -c "[ \$(grep -c event=will_released '$T/h3.log') -ge 1 ]"
check "a standby heard the release (release_heard), not its timer" \
  wait_until 15 bash -c "grep -q event=release_heard '$T/h1.log' '$T/h2.log'"
check "and both dispatchers are acted on by exactly one standby again" wait_until 20 all_owned
check "no host logged a write to a replica it was refused (READONLY) more than once per switch" \
  bash -c "[ \$(cat $T/h1.log $T/h2.log $T/h3.log | grep -c event=redis_readonly) -le 6 ]"
echo "# primary switches each host heard: $(for h in h1 h2 h3; do printf '%s=%s ' $h "$(grep -c event=redis_primary_switch "$T/$h.log")"; done)"
