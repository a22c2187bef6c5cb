# The loss watch without long polls (docs/scale.md, "The loss watch"; docs/ownership.md,
# "Holding it"): with --long-poll-budget 0 a host holds no long poll, and still
#   (a) learns of a takeover by another host from the takeover notice (dd:taken) within a
#       second or two, far inside the 10 s heartbeat interval (so neither its fenced heartbeat
#       nor a long poll can explain it), and its child stops before the new owner's starts;
#   (b) learns of a run terminated outside dispatchd (the real temporal CLI) from its batched
#       visibility check within one interval and a few seconds;
# (c) a host with a budget switches its long polls off when the fleet (records in Redis)
# reaches the budget, keeps them off at the boundary (hysteresis), and takes them again when
# the fleet shrinks; and (d) an owner in batch mode whose subscription was cut while another
# host took over (the takeover notice published to nobody) lets go as soon as it is
# subscribed again, reading its record then, not at its next heartbeat 90 s later. Judged from the children's own lines (tests/support/overlap.py), Redis,
# Temporal (the temporal CLI and the HTTP API) and /metrics.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
GRPC=$(cat "$DD_FIXTURE_DIR/temporal/grpc")
TEMPORAL=${DD_SOURCE_DIR}/.tools/bin/temporal
RP=$(free_port); start_redis "$RP"
export DISPATCHD_REDIS_URL="redis://127.0.0.1:$RP/0"
P=lw$$x$RANDOM
W="dispatcher-$P-q"
CH=$T/children.log
CHILD=(python3 "$DD_SOURCE_DIR/bench/fleet/child.py" "$CH")
export CHILD_TICK_S=0.02
OVERLAP="python3 $DD_SOURCE_DIR/tests/support/overlap.py"
# a 10 s interval: anything noticed within a few seconds was not the fenced heartbeat
C=(--temporal-url "$U" --heartbeat-interval 10s --stale-threshold 30s --log-level debug)

declare -A MPORT=()
host() { # host NAME DISPATCHER... [-- OPTS...]: a dispatchd host with /metrics on a free port
  local name=$1; shift
  local disp=() opts=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do disp+=(--dispatcher "$1"); shift; done
  [ $# -gt 0 ] && { shift; opts=("$@"); }
  MPORT[$name]=$(free_port)
  "$DISPATCHD" run "${disp[@]}" --server-id "$name" --metrics-listen "127.0.0.1:${MPORT[$name]}" \
    "${opts[@]}" -- "${CHILD[@]}" >"$T/$name.out" 2>>"$T/$name.log" &
  echo $! >"$T/$name.pid"
  track_dd $! "$name"
}
pid_of() { cat "$T/$1.pid"; }
metric() { # metric HOST NAME[{labels}]: its value, from /metrics
  curl -fsS "http://127.0.0.1:${MPORT[$1]}/metrics" | awk -v m="$2" '$1==m {print $2}'
}
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }
rec() { redis-cli -p "$RP" hget "dd:hb:{$1}" "$2"; }
owned_by() { [ "$(rec "$1" server_id)" = "$2" ]; }
# who acted in the last 200 ms, from the children's own ticks
acting() {
  local now; now=$(( $(date +%s%N) / 1000 ))
  awk -v w="$1" -v since=$((now - 200000)) '$3==w && $2>=since {print $5}' "$CH" | sort -u | tr '\n' ' '
}
acts() { [ "$(acting "$1")" = "$2 " ]; }
wall_us() { # wall_us FILE EVENT: wall_us of the last such line
  grep "event=$2 " "$1" | tail -1 | sed -n 's/.* wall_us=\([0-9]*\).*/\1/p'
}

# --- (a) batch mode: a takeover is told, not long-polled -------------------------------------
host h1 "$P/q" -- "${C[@]}" --long-poll-budget 0
check "h1 owns and its child acts" wait_until 30 bash -c "$(declare -f rec owned_by acting acts); RP=$RP CH=$CH; owned_by $W h1 && acts $W h1"
check "h1 is in batch mode from the start (log)" grep -q 'event=loss_watch_mode .*mode=batch' "$T/h1.log"
check "h1 holds no long poll (dispatchd_loss_watch_long_polls 0)" metric_is h1 dispatchd_loss_watch_long_polls 0
check "  and says batch mode (dispatchd_loss_watch_mode)" metric_is h1 'dispatchd_loss_watch_mode{mode="batch"}' 1
check "h1's visibility check runs (a query answered)" \
  wait_until 30 bash -c "[ \"\$(curl -fsS http://127.0.0.1:${MPORT[h1]}/metrics | awk '\$1==\"dispatchd_loss_watch_queries_total{result=\\\"ok\\\"}\" {print \$2}')\" -ge 1 ]"
check "h1 never sent a long poll (no wait_close request at debug level)" \
  bash -c "! grep -q 'event=temporal_request .*op=wait_close' '$T/h1.log'"
r1=$(rec "$W" run_id)

host h2 "$P/q" -- "${C[@]}" --long-poll-budget 0
check "h2 takes over and its child acts" wait_until 40 bash -c "$(declare -f rec owned_by acting acts); RP=$RP CH=$CH; owned_by $W h2 && acts $W h2"
check "h1 logged ownership_lost, from the takeover notice" \
  wait_until 10 grep -q "event=ownership_lost .*run_id=$r1 close_event=TAKEOVER_NOTICE" "$T/h1.log"
check "h1 read the record before letting go (takeover_heard names h2)" \
  grep -q "event=takeover_heard .*holder=h2" "$T/h1.log"
owning2=$(wall_us "$T/h2.log" owning)
lost1=$(wall_us "$T/h1.log" ownership_lost)
lag_ms=$(( (lost1 - owning2) / 1000 ))
echo "# h2 owned its run at $owning2, h1 lost at $lost1: ${lag_ms} ms (interval 10000 ms)"
check "h1 lost within 3 s of h2's takeover, well under the 10 s interval (${lag_ms} ms)" \
  [ "$lag_ms" -lt 3000 ]
check "h2's child waited for h1's acknowledgement, not for the threshold" \
  bash -c "grep -q 'event=handoff .*reason=\"previous owner stopped acting\"' '$T/h2.log' && ! grep -q event=handoff_timeout '$T/h2.log'"
check "no two children acted at once (overlap.py)" $OVERLAP "$CH"
check "h2 holds no long poll either" metric_is h2 dispatchd_loss_watch_long_polls 0
check "the notice was counted as a loss" metric_is h1 'dispatchd_takeover_notices_total{result="lost"}' 1

# --- (b) batch mode: a run terminated outside dispatchd is found by the visibility check ------
r2=$(rec "$W" run_id)
t0=$(now_us)
"$TEMPORAL" workflow terminate --address "$GRPC" --workflow-id "$W" --run-id "$r2" \
  --reason "an operator" >/dev/null
check "h2 logged ownership_lost with the run's close event (TERMINATED)" \
  wait_until 25 grep -q "event=ownership_lost .*run_id=$r2 close_event=EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED reason=\"an operator\"" "$T/h2.log"
check "  after its visibility check listed the run as closed" \
  grep -q "event=run_closed_heard .*run_id=$r2 source=visibility" "$T/h2.log"
lost2=$(wall_us "$T/h2.log" ownership_lost)
tlag_ms=$(( (lost2 - t0) / 1000 ))
echo "# terminated at $t0, h2 lost at $lost2: ${tlag_ms} ms (interval 10000 ms)"
check "h2 lost within one interval and a few seconds of the terminate (${tlag_ms} ms)" \
  [ "$tlag_ms" -lt 15000 ]
check "h2's child stopped" wait_until 15 bash -c "grep -q '^stop .* $W $r2 h2 ' '$CH'"
check "still no long poll on h2" bash -c "! grep -q 'event=temporal_request .*op=wait_close' '$T/h2.log'"
check "a closed run was counted" metric_is h2 dispatchd_loss_watch_closed_runs_total 1
kill -TERM "$(pid_of h1)" "$(pid_of h2)"
expect_exit "$(pid_of h1)" 0
expect_exit "$(pid_of h2)" 0

# --- (c) the budget: long polls off when the fleet reaches it, on again when it shrinks --------
# budget 4: batch at 4 records or more, long polls again below 3 (budget - max(1, budget/10))
# (a Redis of its own: the records of (a) and (b) would count in this fleet)
RP2=$(free_port); start_redis "$RP2"
Q=(--temporal-url "$U" --heartbeat-interval 1s --stale-threshold 3s --redis-url "redis://127.0.0.1:$RP2/0")
host h3 "$P/c1" "$P/c2" -- "${Q[@]}" --long-poll-budget 4
check "h3 (2 dispatchers, fleet of 2 < 4) holds 2 long polls" \
  wait_until 30 metric_is h3 dispatchd_loss_watch_long_polls 2
check "  in long-poll mode" metric_is h3 'dispatchd_loss_watch_mode{mode="long_poll"}' 1
host h4 "$P/c3" -- "${Q[@]}"
host h5 "$P/c4" -- "${Q[@]}"
fleet_is() { [ "$(redis-cli -p "$RP2" zcard dd:hb:index)" = "$1" ]; }
check "the fleet reaches 4 records" wait_until 30 fleet_is 4
check "h3 drops its long polls (gauge 0)" wait_until 10 metric_is h3 dispatchd_loss_watch_long_polls 0
check "  batch mode, said once in the log" \
  bash -c "grep -q 'event=loss_watch_mode .*mode=batch reason=\"fleet at or above the long-poll budget\" fleet_records=4 budget=4' '$T/h3.log'"
check "  a dropped poll is not a loss" bash -c "! grep -q 'event=ownership_lost\|event=loss_watch_retry' '$T/h3.log'"
kill -TERM "$(pid_of h5)"; expect_exit "$(pid_of h5)" 0
check "the fleet is back to 3 records" wait_until 30 fleet_is 3
q0=$(metric h3 'dispatchd_loss_watch_queries_total{result="ok"}')
# three more rounds of the batch check with the fleet at 3 (each round is one query)
check "at 3 records (at the boundary) h3 stays in batch mode for several intervals" \
  wait_until 20 bash -c "[ \"\$(curl -fsS http://127.0.0.1:${MPORT[h3]}/metrics | awk '\$1==\"dispatchd_loss_watch_queries_total{result=\\\"ok\\\"}\" {print \$2}')\" -ge $((q0 + 3)) ]"
check "  (no long poll, batch mode)" \
  bash -c "[ \"\$(grep -c 'event=loss_watch_mode' '$T/h3.log')\" = 2 ] && curl -fsS http://127.0.0.1:${MPORT[h3]}/metrics | grep -qx 'dispatchd_loss_watch_long_polls 0'"
kill -TERM "$(pid_of h4)"; expect_exit "$(pid_of h4)" 0
check "below 3 records h3 takes its long polls again (gauge 2)" \
  wait_until 10 metric_is h3 dispatchd_loss_watch_long_polls 2
check "  long-poll mode, said in the log" \
  grep -q 'event=loss_watch_mode .*mode=long_poll reason="fleet below 90% of the long-poll budget" fleet_records=2' "$T/h3.log"
check "  and h3 still owns both, nothing lost on the way" \
  bash -c "[ \"\$(redis-cli -p $RP2 hget 'dd:hb:{dispatcher-$P-c1}' server_id)\" = h3 ] && [ \"\$(redis-cli -p $RP2 hget 'dd:hb:{dispatcher-$P-c2}' server_id)\" = h3 ] && ! grep -q event=ownership_lost '$T/h3.log'"
# the long polls work again: a takeover of c1 is heard by h3's close event
host h6 "$P/c1" -- "${Q[@]}"
check "a takeover of c1 reaches h3" wait_until 30 grep -q "event=ownership_lost .*dispatcher=$P/c1" "$T/h3.log"
check "no two children acted at once (overlap.py)" $OVERLAP "$CH"

# --- (d) a notice lost while unsubscribed: the owner looks at its record at resubscription ----
# h7 talks to Redis as ACL user h7; taking its channels away drops its subscription (Redis
# disconnects a subscriber whose channels are no longer allowed; CLIENT KILL makes sure) and
# keeps it from subscribing again, while its commands go on. h8 (the default user) then
# takes over for real and publishes its notice, which h7 cannot hear. A 90 s interval: h7's
# heartbeat and visibility check come 90 s after its start, long after all this.
RP3=$(free_port); start_redis "$RP3"
PW7=h7pw-$RANDOM
r3() { redis-cli -p "$RP3" "$@"; }
check "an ACL user for h7" [ "$(r3 ACL SETUSER h7 on ">$PW7" '~*' '&*' +@all)" = OK ]
D=(--temporal-url "$U" --heartbeat-interval 90s --stale-threshold 270s --long-poll-budget 0)
WR="dispatcher-$P-r"
recd() { r3 hget "dd:hb:{$WR}" "$1"; }
DISPATCHD_REDIS_PASSWORD=$PW7 host h7 "$P/r" -- "${D[@]}" --redis-url "redis://127.0.0.1:$RP3/0" \
  --redis-username h7
check "h7 owns r and its child acts" wait_until 30 bash -c "$(declare -f acting acts); CH=$CH; [ \"\$(redis-cli -p $RP3 hget 'dd:hb:{$WR}' server_id)\" = h7 ] && acts $WR h7"
check "h7 is subscribed" wait_until 10 metric_is h7 dispatchd_release_channel_subscribed 1
r7=$(recd run_id)
check "h7's channels taken away" [ "$(r3 ACL SETUSER h7 resetchannels)" = OK ]
r3 CLIENT KILL USER h7 TYPE pubsub >/dev/null
check "h7 lost its subscription" wait_until 15 grep -q "event=release_channel_lost" "$T/h7.log"
check "  (the gauge says so)" wait_until 10 metric_is h7 dispatchd_release_channel_subscribed 0
host h8 "$P/r" -- "${D[@]}" --redis-url "redis://127.0.0.1:$RP3/0"
check "h8 takes over r (its claim in Redis)" wait_until 40 bash -c "[ \"\$(redis-cli -p $RP3 hget 'dd:hb:{$WR}' server_id)\" = h8 ]"
check "h8's claim landed (its takeover notice is published with it)" wait_until 10 grep -q "event=record_claimed" "$T/h8.log"
sleep 2 # a notice, had h7 heard one, is acted on in milliseconds (part (a))
check "h7, not subscribed, has not heard of it: it still owns" \
  bash -c "! grep -q 'event=ownership_lost' '$T/h7.log'"
t_restore=$(now_us)
check "h7's channels given back" [ "$(r3 ACL SETUSER h7 allchannels)" = OK ]
check "h7 lets go once subscribed again" \
  wait_until 30 grep -q "event=ownership_lost .*run_id=$r7 close_event=TAKEOVER_NOTICE" "$T/h7.log"
check "  having read its record at the resubscription (takeover_heard via=resubscribed)" \
  grep -q "event=takeover_heard .*holder=h8 .*via=resubscribed" "$T/h7.log"
check "  after it subscribed again" \
  bash -c "[ \"\$(grep -c 'event=release_channel_subscribed' '$T/h7.log')\" -ge 2 ]"
lost7=$(wall_us "$T/h7.log" ownership_lost)
rlag_ms=$(( (lost7 - t_restore) / 1000 ))
echo "# channels back at $t_restore, h7 lost at $lost7: ${rlag_ms} ms (reconnect backoff up to 5 s; interval 90000 ms)"
check "h7 lost within 10 s of being able to subscribe again, far inside its 90 s interval (${rlag_ms} ms)" \
  [ "$rlag_ms" -lt 10000 ]
check "  not from its heartbeat (no heartbeat_fenced) nor the visibility check" \
  bash -c "! grep -q 'event=heartbeat_fenced\|event=run_closed_heard' '$T/h7.log'"
check "h8's child acts after h7's stopped" wait_until 30 bash -c "$(declare -f acting acts); CH=$CH; acts $WR h8"
check "no two children acted at once (overlap.py)" $OVERLAP "$CH"
kill -TERM "$(pid_of h7)" "$(pid_of h8)"
expect_exit "$(pid_of h7)" 0
expect_exit "$(pid_of h8)" 0
