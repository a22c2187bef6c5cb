# The last will (docs/ownership.md, "Last will"): when dispatchd alone dies
# (kill -9) while its host lives, its guard stops the child and only then
# releases the record, fenced by run id and epoch, and tells the standbys;
# a standby's child acts long before the stale threshold. A frozen dispatchd
# and a whole host gone at once keep the threshold path; a late will never
# touches a newer owner's record. Real Redis and Temporal, the default 15 s
# threshold (a pass cannot be the stale timer), children judged from their
# own lines.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
P=wl$$x$RANDOM
W="dispatcher-$P-q"
KEY="dd:hb:{$W}"
THR=15000
C=(--temporal-url "$U" --heartbeat-interval 5s
   --stale-threshold 15s --metrics-listen off)
# the child says when it starts and stops, in its own file, with its host
child="exec >>'$T/children.log'; "'trap '"'"'echo stop $(date +%s%N) $DISPATCHD_SERVER_ID; exit 0'"'"' TERM; echo "start $(date +%s%N) $DISPATCHD_SERVER_ID"; while :; do sleep 0.05; done'
host() { # host NAME [REDIS_URL]: a dispatchd host for P/q (takes over at start)
  "$DISPATCHD" run --dispatcher "$P/q" "${C[@]}" --redis-url "${2:-redis://127.0.0.1:$RP/0}" --server-id "$1" -- sh -c "$child" \
    >"$T/$1.out" 2>>"$T/$1.log" &
  echo $! >"$T/$1.pid"
  track_dd $! "$1"
}
pid_of() { cat "$T/$1.pid"; }
# the host's will process (child/will_proc.h): a child of dispatchd, `dispatchd __will CAP_MS`
will_pid_of() { pgrep -P "$(pid_of "$1")" -f -- ' __will ' | head -1; }
rec() { redis-cli -p "$RP" hget "$KEY" "$1"; }
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
running_children() {
  awk '$1=="start"{on[$3]=1} $1=="stop"{delete on[$3]} END{for(h in on) print h}' "$T/children.log" | sort
}
only_child_is() { [ "$(running_children | tr '\n' ' ')" = "$1 " ]; }
# every start comes after the previous child's stop (by the children's own clocks)
overlaps() { awk '$1=="start"{if (n>0) bad++; n++} $1=="stop"{n--} END{print bad+0}' "$T/children.log"; }
owned_by() { [ "$(rec server_id)" = "$1" ]; }
acting() { wait_until 20 owned_by "$1" && wait_until 20 only_child_is "$1"; }

# h1 first, then h2 takes over at start: h2 owns, h1 stands by
host h1
acting h1 || fail "h1 did not take over and start its child"
host h2
acting h2 || fail "h2 did not take over and start its child"

# --- kill -9 of dispatchd alone: the will releases, the standby acts long before 15 s ----------
# (a record's age counts from Redis's start at the earliest: docs/ownership.md. A Redis up for
# less than a threshold would make the will's stale record wait that long: not the case here.)
redis_up_a_threshold() { [ "$(redis-cli -p "$RP" info server | sed -n 's/^uptime_in_seconds:\([0-9]*\).*/\1/p')" -gt $((THR / 1000)) ]; }
wait_until 30 redis_up_a_threshold || fail "redis did not report its uptime"
r2=$(rec run_id); e2=$(rec epoch); hb2=$(rec hb_ms)
wp2=$(will_pid_of h2)
check "h2 runs one will process" [ -n "$wp2" ]
kill -9 "$(pid_of h2)"
expect_exit "$(pid_of h2)" 137
check "the guard handed its will to the host's will process once its child had stopped" \
  wait_until 10 grep -q "event=will_handed .*run_id=$r2 epoch=$e2" "$T/h2.log"
check "the will process released the record (will_released)" \
  wait_until 10 grep -q "event=will_released .*component=will .*run_id=$r2 epoch=$e2 mode=expire" "$T/h2.log"
check "the child stopped before the will ran" \
  bash -c "grep -n 'event=guard_command_exited\|event=will_released' '$T/h2.log' | tail -2 | head -1 | grep -q guard_command_exited"
check "the will process exited once its guards were gone" wait_until 10 gone "$wp2"
check "  after saying what it did" grep -q "event=will_process_done .*released=1 fenced=0 failed=0" "$T/h2.log"
check "the standby took over and its child acts" acting h1
# on Redis's clock: h1's claim landed before h2's last heartbeat was a threshold old
check "the standby's claim landed well before the dead owner's record would have gone stale" \
  [ "$(rec hb_ms)" -lt $((hb2 + THR)) ]
check "no two children acted at once" [ "$(overlaps)" = 0 ]
run_status() { curl -fsS "$U/api/v1/namespaces/default/workflows/$W?execution.runId=$1" | jq -r .workflowExecutionInfo.status; }
check "the dead owner's run was terminated (termination-first)" \
  [ "$(run_status "$r2")" = WORKFLOW_EXECUTION_STATUS_TERMINATED ]
check "the new owner did not wait for the dead one's acknowledgement" \
  bash -c "! grep -q 'event=handoff_timeout' '$T/h1.log'"

# the standby's last failover attempt came right after it heard a release on dd:released (not
# from its timer: that one would follow an earlier attempt, or nothing)
told_first() {
  grep -E 'event=(release_heard|failover_attempt)' "$T/$1.log" | tail -2 | head -1 | grep -q event=release_heard
}
check "the standby heard the will on dd:released and went at once" told_first h1

# --- graceful handover (SIGTERM): the same path ------------------------------------------------
host h5
acting h5 || fail "h5 did not take over"
wp5=$(will_pid_of h5)
check "h5 runs one will process" [ -n "$wp5" ]
kill -TERM "$(pid_of h5)"
expect_exit "$(pid_of h5)" 0
check "a clean exit takes the will process along (told bye, no will)" gone "$wp5"
check "  and it neither ran a will nor had to be killed" \
  bash -c "! grep -Eq 'event=(will_handed|will_released|will_process_kill|will_process_active)' '$T/h5.log'"
check "the standby took over the released dispatcher and its child acts" acting h1
check "  told on dd:released, not by its timer" told_first h1
check "  without waiting for an acknowledgement" bash -c "! grep -q 'event=handoff_timeout' '$T/h1.log'"
check "no two children acted at once" [ "$(overlaps)" = 0 ]

# --- a lost notification: a standby that cannot subscribe still takes over, by its timer --------
# (an ACL user that may publish but not subscribe: as if every message were lost)
redis-cli -p "$RP" acl setuser deaf on '>deaf-pw' '~*' resetchannels '&dd:*' '+@all' '-subscribe' >/dev/null
host hs "redis://deaf:deaf-pw@127.0.0.1:$RP/0"
acting hs || fail "hs did not take over"
kill -TERM "$(pid_of h1)"          # hs alone stands by from here
expect_exit "$(pid_of h1)" 0
host h6
acting h6 || fail "h6 did not take over"
check "hs says it is not subscribed" grep -q 'event=release_channel_lost' "$T/hs.log"
hb6=$(rec hb_ms)
kill -9 "$(pid_of h6)"
expect_exit "$(pid_of h6)" 137
check "h6's guard wrote its will" wait_until 10 grep -q 'event=will_released' "$T/h6.log"
check "the deaf standby takes over by its timer" acting hs
check "  before the record would have gone stale by its heartbeat" [ "$(rec hb_ms)" -lt $((hb6 + THR)) ]
check "  without having heard anything" bash -c "! grep -q 'event=release_heard' '$T/hs.log'"
check "no two children acted at once" [ "$(overlaps)" = 0 ]
host h1                            # a subscribed standby again for what follows
acting h1 || fail "h1 did not take over"

# --- the will process killed: dispatchd starts another on the same pipe, and the guard started
# --- before hands its will to the new one ----------------------------------------------------------
host h7
acting h7 || fail "h7 did not take over"
r7=$(rec run_id); e7=$(rec epoch); hb7=$(rec hb_ms)
wp7=$(will_pid_of h7)
check "h7 runs one will process" [ -n "$wp7" ]
kill -9 "$wp7"
check "dispatchd says its will process died" \
  wait_until 10 grep -q "event=will_process_exited .*pid=$wp7 .*signal=9" "$T/h7.log"
check "  and starts another after a back-off" \
  wait_until 10 bash -c "[ \$(grep -c 'event=will_process_started' '$T/h7.log') = 2 ]"
wp7b=$(will_pid_of h7)
kill -9 "$(pid_of h7)"
expect_exit "$(pid_of h7)" 137
check "the guard (started before the restart) handed its will over" \
  wait_until 10 grep -q "event=will_handed .*run_id=$r7 epoch=$e7" "$T/h7.log"
check "  and the new will process released the record" \
  wait_until 10 grep -q "event=will_released .*component=will .*run_id=$r7 epoch=$e7 mode=expire" "$T/h7.log"
check "the standby took over long before the threshold" acting h1
check "  (its claim came before the record would have gone stale)" [ "$(rec hb_ms)" -lt $((hb7 + THR)) ]
check "no two children acted at once" [ "$(overlaps)" = 0 ]
check "the new will process exited" wait_until 10 gone "$wp7b"

# --- no will process at dispatchd's death (killed while dispatchd was frozen, then dispatchd
# --- killed): the guard's hand-over fails (EPIPE) and it runs its will itself ---------------------
host h8
acting h8 || fail "h8 did not take over"
r8=$(rec run_id); e8=$(rec epoch); hb8=$(rec hb_ms)
wp8=$(will_pid_of h8)
check "h8 runs one will process" [ -n "$wp8" ]
kill -STOP "$(pid_of h8)"     # (frozen: it cannot start another)
kill -9 "$wp8"
wait_until 10 gone "$wp8" || fail "h8's will process did not go"
kill -9 "$(pid_of h8)"
expect_exit "$(pid_of h8)" 137
check "the guard could not hand its will over" \
  wait_until 10 grep -q "event=will_hand_over_failed .*run_id=$r8 epoch=$e8" "$T/h8.log"
check "  and released the record itself" \
  wait_until 10 grep -q "event=will_released .*component=guard .*run_id=$r8 epoch=$e8 mode=expire" "$T/h8.log"
check "the standby took over long before the threshold" acting h1
check "  (its claim came before the record would have gone stale)" [ "$(rec hb_ms)" -lt $((hb8 + THR)) ]
check "no two children acted at once" [ "$(overlaps)" = 0 ]

# --- SIGSTOP of the owner's dispatchd: no will, the threshold path -------------------------------
taken_over() { o=$(rec server_id); [ -n "$o" ] && [ "$o" != "$1" ]; }
host h3
acting h3 || fail "h3 did not take over"
r3=$(rec run_id); hb3=$(rec hb_ms)
kill -STOP "$(pid_of h3)"
check "a standby takes over the frozen owner only at the threshold" wait_until 40 taken_over h3
S=$(rec server_id)
check "  (its claim came after the record was a threshold old)" [ "$(rec hb_ms)" -ge $((hb3 + THR)) ]
# (by the standby, or by a reconciler that cleaned it first: the standby then found no record)
check "  the record was judged stale" \
  bash -c "cat '$T'/*.log | grep -q 'event=owner_stale .*run_id=$r3\|event=stale_terminate .*run_id=$r3'"
check "the frozen owner's guard stopped its child at the deadline" \
  grep -q 'reason="no heartbeat landed in time' "$T/h3.log"
check "and wrote no will" bash -c "! grep -Eq 'event=will_(handed|released|fenced|failed)' '$T/h3.log'"
check "$S's child acts alone" wait_until 20 only_child_is "$S"
kill -CONT "$(pid_of h3)"
check "the woken ex-owner learns it lost" wait_until 10 grep -q event=ownership_lost "$T/h3.log"
check "no two children acted at once" [ "$(overlaps)" = 0 ]

# --- the whole host at once (every process frozen, then killed): no will --------------------------
host h4
acting h4 || fail "h4 did not take over"
hb4=$(rec hb_ms)
p4=$(pid_of h4)
all=("$p4" $(descendants "$p4"))
check "h4 has its guard and child" [ "${#all[@]}" -ge 3 ]
kill -STOP "${all[@]}"
kill -KILL "${all[@]}"
# (its child was killed frozen and cannot say so: this line says it)
echo "stop $(date +%s%N) h4" >>"$T/children.log"
expect_exit "$p4" 137
check "a standby takes over the dead host only at the threshold" wait_until 40 taken_over h4
check "  (its claim came after the record was a threshold old)" [ "$(rec hb_ms)" -ge $((hb4 + THR)) ]
check "no guard wrote a will" bash -c "! grep -Eq 'event=will_(handed|released|fenced|failed)' '$T/h4.log'"
X=$(rec server_id)
check "$X's child acts alone" wait_until 20 only_child_is "$X"
check "no two children acted at once" [ "$(overlaps)" = 0 ]

# --- a late will (its guard frozen while a newer owner claimed) leaves the record alone ----------
px=$(pid_of "$X")
gc=($(descendants "$px"))
ex=$(rec epoch)
kill -STOP "${gc[@]}" 2>/dev/null || true # (a short-lived sleep may be gone already)
kill -9 "$px"
expect_exit "$px" 137
check "a standby takes over at the threshold (the frozen guard wrote nothing yet)" \
  wait_until 40 taken_over "$X"
Y=$(rec server_id)
new=$Y/$(rec run_id)/$(rec epoch)
check "  with a newer epoch" [ "$(rec epoch)" -gt "$ex" ]
kill -CONT "${gc[@]}" 2>/dev/null || true
check "the woken guard's will was fenced" \
  wait_until 10 grep -q "event=will_fenced .*epoch=$ex holder=$Y" "$T/$X.log"
check "the newer owner's record is untouched" [ "$(rec server_id)/$(rec run_id)/$(rec epoch)" = "$new" ]
# its deadline long past, the woken guard KILLed its child (no stop line): gone is gone
all_gone() { local p; for p in "$@"; do gone "$p" || return 1; done; }
check "the woken guard's child is gone" wait_until 10 all_gone "${gc[@]}"
echo "stop $(date +%s%N) $X" >>"$T/children.log"
check "$Y's child acts alone" wait_until 20 only_child_is "$Y"

# --- a will process that does not go after "bye" (frozen) is killed 2 s later: the clean exit
# --- stays clean and leaves nothing behind --------------------------------------------------------
wpy=$(will_pid_of "$Y")
check "$Y runs one will process" [ -n "$wpy" ]
kill -STOP "$wpy"
kill -TERM "$(pid_of "$Y")"
expect_exit "$(pid_of "$Y")" 0
check "dispatchd killed its frozen will process" grep -q "event=will_process_kill .*pid=$wpy" "$T/$Y.log"
check "  which is gone" wait_until 10 gone "$wpy"

# --- a SIGUSR2 from the child to its own group (which its guard leads) is not dispatchd's death:
# --- the guard goes on guarding, and no will is handed over while dispatchd lives --------------------
cat >"$T/usr2.sh" <<'EOS'
exec >>"$CHILDREN_LOG"
trap '' USR2
trap 'echo stop $(date +%s%N) $DISPATCHD_SERVER_ID; exit 0' TERM
echo "start $(date +%s%N) $DISPATCHD_SERVER_ID"
kill -USR2 0
echo "$(date +%s%3N)" >"$USR2_MARK"
while :; do sleep 0.05; done
EOS
CHILDREN_LOG=$T/children.log USR2_MARK=$T/usr2.mark "$DISPATCHD" run --dispatcher "$P/q" "${C[@]}" \
  --redis-url "redis://127.0.0.1:$RP/0" --server-id h9 -- sh "$T/usr2.sh" >"$T/h9.out" 2>>"$T/h9.log" &
echo $! >"$T/h9.pid"
track_dd $! h9
acting h9 || fail "h9 did not take over"
check "h9's child sent SIGUSR2 to its group" wait_until 10 test -s "$T/usr2.mark"
# a heartbeat that landed after the signal (Redis's clock) shows a full interval went by
hb_after_usr2() { [ "$(rec hb_ms)" -gt "$(( $(cat "$T/usr2.mark") + 100 ))" ]; }
check "h9 heartbeats on after the signal" wait_until 15 hb_after_usr2
check "  its child still acts, alone" only_child_is h9
check "  its guard did not take the signal for dispatchd's death" \
  bash -c "! grep -Eq 'event=(guard_stopping|will_handed|will_released|will_dropped)' '$T/h9.log'"
