# Heartbeats, fencing and failover end to end: real Redis, real Temporal,
# several dispatchd hosts on one machine.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
P=fo$$x$RANDOM
W="dispatcher-$P-q"
KEY="dd:hb:{$W}"
C=(--temporal-url "$U" --redis-url "redis://127.0.0.1:$RP/0" --heartbeat-interval 300ms
   --stale-threshold 1200ms --metrics-listen off)
# The trap is set before "start" is written, so a child stopped right after it
# started still says so; the stop time is taken when it stops.
# (the children append to children.log themselves: their stdout reaches dispatchd's log only
# as child_output lines)
child="exec >>'$T/children.log'; "'trap '"'"'echo stop $(date +%s%N) $DISPATCHD_SERVER_ID; exit 0'"'"' TERM; echo "start $(date +%s%N) $DISPATCHD_SERVER_ID"; while :; do sleep 0.05; done'
host() { # host NAME: start a dispatchd host for P/q
  "$DISPATCHD" run --dispatcher "$P/q" "${C[@]}" --server-id "$1" -- sh -c "$child" \
    >"$T/$1.out" 2>"$T/$1.log" &
  echo $! >"$T/$1.pid"
  track_dd $! "$1"
}
pid_of() { cat "$T/$1.pid"; }
rec() { redis-cli -p "$RP" hget "$KEY" "$1"; }
running_children() { # who started and did not stop yet
  awk '$1=="start"{on[$3]=1} $1=="stop"{delete on[$3]} END{for(h in on) print h}' "$T/children.log" | sort
}

only_child_is() { [ "$(running_children | tr '\n' ' ')" = "$1 " ]; }

# --- bad knobs are refused at startup ----------------------------------------------
set +e
out=$("$DISPATCHD" run --dispatcher a/b "${C[@]}" --stale-threshold 200ms 2>&1); rc=$?
check "threshold below the heartbeat interval is refused" [ $rc -eq 2 ]
check "and the message says which and why" grep -q -- "--stale-threshold (200ms) must be longer than --heartbeat-interval (300ms)" <<<"$out"
out=$("$DISPATCHD" run --dispatcher a/b "${C[@]}" --heartbeat-interval 5x 2>&1); rc=$?
check "an unparsable duration is refused" [ $rc -eq 2 ]
out=$("$DISPATCHD" run --dispatcher a/b "${C[@]}" --redis-url "http://x" 2>&1); rc=$?
check "a malformed Redis URL is refused" [ $rc -eq 2 ]
set -e

# --- the owner claims and heartbeats its record -----------------------------------------
host h1
wait_until 10 grep -q event=record_claimed "$T/h1.log" || fail "h1 did not claim"
check "the record names the owner" [ "$(rec server_id)" = h1 ]
hb_after() { [ "$(rec hb_ms)" -gt "$1" ]; } # hb_after MS: the record's heartbeat is newer
hb1=$(rec hb_ms)
check "the owner refreshes its heartbeat" wait_until 5 hb_after "$hb1"
check "the record is in the index" bash -c "redis-cli -p $RP zscore dd:hb:index '$W' | grep -q ."
js=$("$DISPATCHD" status --json --redis-url "redis://127.0.0.1:$RP/0")
check "status shows the dispatcher healthy with its owner" \
  [ "$(jq -r --arg w "$W" '.dispatchers[] | select(.workflow_id==$w) | "\(.state) \(.owner)"' <<<"$js")" = "healthy h1" ]

# --- three standbys: kill -9 the owner, exactly one takes over within threshold + 2 s ----------
# each new host takes over at start (termination-first); start them one by one,
# the next only once this one's child runs (its handoff is done: a host that
# loses ownership while still waiting for the handoff never starts a child)
for h in h2 h3 h4; do
  host $h
  wait_until 10 bash -c "[ \"\$(redis-cli -p $RP hget '$KEY' server_id)\" = $h ]" || fail "$h did not take over"
  wait_until 10 grep -q event=child_started "$T/$h.log" || fail "$h did not start its child"
done
check "only h4's child runs" wait_until 5 only_child_is h4
# Graceful takeovers hand off: the new owner's child starts only after the
# old owner's child stopped (the old owner acknowledges through Redis).
overlaps() { awk '$1=="start"{if (n>0) bad++; n++} $1=="stop"{n--} END{print bad+0}' "$T/children.log"; }
check "no two children ever acted at once during the takeovers" [ "$(overlaps)" = 0 ]
check "each new owner waited for the handoff" [ "$(cat "$T"/h2.log "$T"/h3.log "$T"/h4.log | grep -c 'event=handoff .*reason="previous owner stopped acting"')" = 3 ]
r4=$(rec run_id)
t0=$(now_us)
kill -9 "$(pid_of h4)"
wait_until 10 bash -c "o=\$(redis-cli -p $RP hget '$KEY' server_id); [ -n \"\$o\" ] && [ \"\$o\" != h4 ]" || fail "no failover"
t1=$(now_us)
new=$(rec server_id)
echo "# failover after kill -9: $(( (t1 - t0) / 1000 )) ms (threshold 1200 ms), new owner $new"
check "failover within threshold + 2 s" [ $((t1 - t0)) -lt 3200000 ]
expect_exit "$(pid_of h4)" 137
# A second, wrong failover would come from a standby that still saw the record
# stale: give them a threshold of the new owner's heartbeats (timed by the
# record itself, so a slow machine gets a longer window) before counting.
check "the new owner heartbeats a threshold past the failover" wait_until 10 hb_after $(( t1 / 1000 + 1200 ))
check "exactly one standby took over" [ "$(cat "$T"/h1.log "$T"/h2.log "$T"/h3.log | grep -c 'event=failover ')" = 1 ]
check "the killed owner's child was stopped by its guard" wait_until 5 grep -q "^stop .* h4$" "$T/children.log"
check "exactly one child runs after the failover" wait_until 5 only_child_is "$new"
check "Temporal has exactly one running run of the ID" \
  [ "$(curl -fsS "$U/api/v1/namespaces/default/workflows/$W" | jq -r .workflowExecutionInfo.status)" = WORKFLOW_EXECUTION_STATUS_RUNNING ]
run_status() { curl -fsS "$U/api/v1/namespaces/default/workflows/$W?execution.runId=$1" | jq -r .workflowExecutionInfo.status; }
run_terminated() { [ "$(run_status "$1")" = WORKFLOW_EXECUTION_STATUS_TERMINATED ]; }
check "the dead owner's run was terminated" wait_until 5 run_terminated "$r4"
check "and it was not the run that runs now" [ "$r4" != "$(rec run_id)" ]

# --- a paused owner (SIGSTOP past the threshold) is fenced when it wakes up -------------------
paused=$new
pr=$(rec run_id)
kill -STOP "$(pid_of "$paused")"
# (the reconciler may delete the stale record before a standby claims it:
# wait for a live successor's record, not just for the paused owner's to go)
wait_until 10 bash -c "o=\$(redis-cli -p $RP hget '$KEY' server_id); [ -n \"\$o\" ] && [ \"\$o\" != '$paused' ]" || fail "no failover from the paused owner"
succ=$(rec server_id); sr=$(rec run_id); se=$(rec epoch)
# Its guard heard nothing from the frozen dispatchd for threshold - interval:
# the child stopped while dispatchd was still frozen, so only the successor acts.
check "the frozen owner's guard stopped its child" wait_until 5 only_child_is "$succ"
hb_cont=$(rec hb_ms)
kill -CONT "$(pid_of "$paused")"
check "the woken ex-owner learns it lost" wait_until 5 grep -q event=ownership_lost "$T/$paused.log"
check "and stops its child" wait_until 5 only_child_is "$succ"
# the record read next is one the successor wrote after the ex-owner woke
check "the successor heartbeats after the wake-up" wait_until 5 hb_after "$hb_cont"
check "its late writes did not touch the new owner's record" [ "$(rec server_id) $(rec run_id) $(rec epoch)" = "$succ $sr $se" ]
check "the new owner keeps heartbeating" [ "$(( $(date +%s%3N) - $(rec hb_ms) ))" -lt 1200 ]

# --- an owner that cannot write heartbeats stops acting (self-fencing) -----------------------
owner=$(rec server_id)
RPID=$(redis-cli -p "$RP" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
kill -STOP "$RPID"
check "an owner cut off from Redis suspends its child" wait_until 10 grep -q event=acting_suspended "$T/$owner.log"
no_child_runs() { [ -z "$(running_children)" ]; }
check "its child stopped" wait_until 5 no_child_runs
kill -CONT "$RPID"
# Back online, either the owner's next heartbeat lands first (it resumes) or a
# standby saw the record stale first (it takes over, the owner is fenced):
# both are right, as long as exactly the record's owner acts.
owner_acts() { o=$(rec server_id); [ -n "$o" ] && only_child_is "$o"; }
check "after Redis returns exactly the record's owner acts" wait_until 15 owner_acts
# (an ex-owner learns it lost from its next fenced heartbeat or its long-poll:
# wait for it rather than read the log once)
check "the suspended owner resumed or learned it lost" wait_until 10 \
  bash -c "sed -n '/event=acting_suspended/,\$p' '$T/$owner.log' | grep -q 'event=acting_resumed\|event=ownership_lost'"

# --- clean release leaves nothing behind --------------------------------------------------------
for h in h1 h2 h3; do kill -TERM "$(pid_of $h)"; done
for h in h1 h2 h3; do expect_exit "$(pid_of $h)" 0; done
check "after every host released, the record is gone" [ -z "$(rec server_id)" ]
check "and the index entry too" [ -z "$(redis-cli -p "$RP" zscore dd:hb:index "$W")" ]
