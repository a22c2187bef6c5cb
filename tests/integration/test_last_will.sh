# `dispatchd last-will`, the unit's ExecStopPost= (docs/systemd.md): when
# dispatchd dies on its own under KillMode=mixed, systemd SIGKILLs the rest of
# the unit's cgroup at once, so no guard's will goes out; once the cgroup is
# empty, last-will makes the dead dispatchd's records stale at once and tells
# the standbys. Here the unit is a fresh cgroup v2 directory: the owner host
# runs in it with RUNTIME_DIRECTORY set (as systemd does), is frozen and
# killed as a whole through cgroup.freeze/cgroup.kill (what systemd's stop
# does), and last-will then runs inside the same, now empty, cgroup. Real
# Redis and Temporal, the default 15 s threshold (a pass cannot be the stale
# timer), children judged from their own lines.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
RURL="redis://127.0.0.1:$RP/0"
P=lw$$x$RANDOM
W="dispatcher-$P-q"
KEY="dd:hb:{$W}"
THR=15000
C=(--temporal-url "$U" --heartbeat-interval 5s --stale-threshold 15s --metrics-listen off)

# the unified (v2) hierarchy: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts
CGM=$(grep ' - cgroup2 ' /proc/self/mountinfo | awk '$4 == "/" {print $5; exit}')
[ -n "$CGM" ] && [ -w "$CGM" ] || fail "no writable cgroup v2 hierarchy (the test needs one, as root)"
new_cgroup() { local g="$CGM/dd-test-$$-$1"; mkdir "$g"; echo "$g"; } # (in $(...): no array)
cg_procs() { cat "$1/cgroup.procs"; }
cg_empty() { [ -z "$(cg_procs "$1")" ]; }
# the test's cgroups go before lib.sh's cleanup (anything left in one is ours: killed)
cg_cleanup() {
  local g
  for g in "$CGM"/dd-test-$$-*; do
    [ -d "$g" ] || continue
    cg_empty "$g" || { echo 0 >"$g/cgroup.freeze"; echo 1 >"$g/cgroup.kill"; }
    for _ in $(seq 1 50); do cg_empty "$g" && break; sleep 0.1; done
    rmdir "$g" 2>/dev/null || echo "could not remove $g" >&2
  done
}
trap 'rc=$?; set +e; cg_cleanup; (exit $rc); cleanup' EXIT

child="exec >>'$T/children.log'; "'trap '"'"'echo stop $(date +%s%N) $DISPATCHD_SERVER_ID; exit 0'"'"' TERM; echo "start $(date +%s%N) $DISPATCHD_SERVER_ID"; while :; do sleep 0.05; done'
# host NAME [CGROUP]: a dispatchd host for P/q (takes over at start). In a
# cgroup: as systemd runs the unit (RUNTIME_DIRECTORY set, the default
# server id hostname-PID); else with --server-id NAME.
host() {
  if [ -n "${2:-}" ]; then
    mkdir -p "$T/rt-$1"
    ( echo "$BASHPID" >"$2/cgroup.procs"
      RUNTIME_DIRECTORY="$T/rt-$1" exec "$DISPATCHD" run --dispatcher "$P/q" "${C[@]}" \
        --redis-url "$RURL" -- sh -c "$child" ) >"$T/$1.out" 2>>"$T/$1.log" &
  else
    "$DISPATCHD" run --dispatcher "$P/q" "${C[@]}" --redis-url "$RURL" --server-id "$1" \
      -- sh -c "$child" >"$T/$1.out" 2>>"$T/$1.log" &
  fi
  echo $! >"$T/$1.pid"
  track_dd $! "$1"
}
pid_of() { cat "$T/$1.pid"; }
# last_will NAME CGROUP OUT: `dispatchd last-will` inside CGROUP with NAME's
# environment, as ExecStopPost= runs it; its exit status in $LW
last_will() {
  LW=0
  ( echo "$BASHPID" >"$2/cgroup.procs"
    RUNTIME_DIRECTORY="$T/rt-$1" exec "$DISPATCHD" last-will --redis-url "$RURL" ) >"$3" 2>&1 || LW=$?
}
rec() { redis-cli -p "$RP" hget "$KEY" "$1"; }
running_children() {
  awk '$1=="start"{on[$3]=1} $1=="stop"{delete on[$3]} END{for(h in on) print h}' "$T/children.log" | sort
}
only_child_is() { [ "$(running_children | tr '\n' ' ')" = "$1 " ]; }
overlaps() { awk '$1=="start"{if (n>0) bad++; n++} $1=="stop"{n--} END{print bad+0}' "$T/children.log"; }
owned_by() { [ "$(rec server_id)" = "$1" ]; }
acting() { wait_until 20 owned_by "$1" && wait_until 20 only_child_is "$1"; }
redis_up_a_threshold() { [ "$(redis-cli -p "$RP" info server | sed -n 's/^uptime_in_seconds:\([0-9]*\).*/\1/p')" -gt $((THR / 1000)) ]; }
told_first() { # the standby's last failover attempt came right after a release it heard
  grep -E 'event=(release_heard|failover_attempt)' "$T/$1.log" | tail -2 | head -1 | grep -q event=release_heard
}

# h1 stands by (outside); h2, the "unit", takes over at start in its cgroup
G=$(new_cgroup h2)
host h1
acting h1 || fail "h1 did not take over and start its child"
host h2 "$G"
p2=$(pid_of h2)
ID2="$(hostname)-$p2"
acting "$ID2" || fail "h2 did not take over and start its child"
check "run wrote its server id to \$RUNTIME_DIRECTORY/server_id" \
  [ "$(cat "$T/rt-h2/server_id" 2>/dev/null)" = "$ID2" ]
check "  and says so" grep -q "event=server_id_file_written .*path=$T/rt-h2/server_id" "$T/h2.log"
check "h2's dispatchd, guard, will process and child are all in its cgroup" \
  [ "$(cg_procs "$G" | wc -l)" -ge 4 ]

# --- while dispatchd lives: last-will refuses and touches nothing ------------------------------
before="$(rec server_id)/$(rec run_id)/$(rec epoch)"
last_will h2 "$G" "$T/lw-alive.out"
check "last-will refuses while the unit's processes live (exit 1, got $LW)" [ "$LW" = 1 ]
check "  saying which are still in the cgroup and what to do" \
  grep -q "refusing: other processes are still in cgroup /dd-test-$$-h2: .*$p2 (dispatchd).*ExecStopPost=" "$T/lw-alive.out"
check "  before reading Redis" bash -c "! grep -q event=last_will_start '$T/lw-alive.out'"
check "the live owner's record is untouched" \
  [ "$(rec server_id)/$(rec run_id)/$(rec epoch)" = "$before" ]
check "  and still heartbeats (hb_ms not the released 0)" [ "$(rec hb_ms)" -gt 0 ]

# --- the unit dies as systemd's stop kills it: the whole cgroup at once, no will -----------------
wait_until 30 redis_up_a_threshold || fail "redis did not report its uptime"
r2=$(rec run_id); e2=$(rec epoch)
echo 1 >"$G/cgroup.freeze"
check "the unit's cgroup froze" wait_until 10 grep -qx 'frozen 1' "$G/cgroup.events"
hb2=$(rec hb_ms)
echo 1 >"$G/cgroup.kill"
# (its child was killed frozen and cannot say so: this line says it)
echo "stop $(date +%s%N) $ID2" >>"$T/children.log"
expect_exit "$p2" 137
check "the unit's cgroup is empty" wait_until 10 cg_empty "$G"
echo 0 >"$G/cgroup.freeze"
check "no guard wrote a will" bash -c "! grep -Eq 'event=will_(handed|released|fenced|failed)' '$T/h2.log'"
check "the dead owner's record is still there, unreleased" \
  [ "$(rec server_id)/$(rec run_id)/$(rec epoch)" = "$ID2/$r2/$e2" ]

# --- ExecStopPost=: last-will in the empty cgroup releases it; the standby goes at once ---------
redis_ms() { redis-cli -p "$RP" time | awk 'NR==1{s=$1} NR==2{printf "%.0f\n", s*1000 + int($1/1000)}'; }
lw_at=$(redis_ms)
last_will h2 "$G" "$T/lw.out"
check "last-will ran (exit 0, got $LW)" [ "$LW" = 0 ]
# (behaviour first: a last-will that releases nothing fails here, at the threshold path)
check "the standby took over and its child acts" acting h1
check "  its claim landed well before the dead owner's record would have gone stale" \
  [ "$(rec hb_ms)" -lt $((hb2 + THR)) ]
check "  within 5 s of last-will's start (Redis's clock)" [ $(( $(rec hb_ms) - lw_at )) -lt 5000 ]
echo "  (on Redis's clock: the claim $(( $(rec hb_ms) - lw_at )) ms after last-will started," \
  "$(( $(rec hb_ms) - hb2 )) ms after the dead owner's last heartbeat; threshold $THR ms)"
check "  told on dd:released" told_first h1
check "  without waiting for an acknowledgement" bash -c "! grep -q 'event=handoff_timeout' '$T/h1.log'"
check "no two children acted at once" [ "$(overlaps)" = 0 ]
check "last-will ran with the server id run wrote" grep -q "event=last_will_start server_id=$ID2 from=$T/rt-h2/server_id" "$T/lw.out"
check "  released the record, fenced by its run id and epoch" \
  grep -q "event=last_will_released workflow_id=$W run_id=$r2 epoch=$e2 mode=expire" "$T/lw.out"
check "  and said what it did" grep -q "event=last_will_done server_id=$ID2 released=1 fenced=0 failed=0" "$T/lw.out"

# --- again (the will process may have released some already): nothing to do, exit 0 -------------
after="$(rec server_id)/$(rec run_id)/$(rec epoch)"
last_will h2 "$G" "$T/lw-again.out"
check "a second last-will exits 0 (got $LW)" [ "$LW" = 0 ]
check "  finding no record of the dead server id" \
  grep -q "event=last_will_done server_id=$ID2 released=0 fenced=0 failed=0 .*note=\"no record" "$T/lw-again.out"
check "  and leaves the new owner's record alone" \
  [ "$(rec server_id)/$(rec run_id)/$(rec epoch)" = "$after" ]

# --- a clean stop: the unit released its record itself; last-will finds none ---------------------
G3=$(new_cgroup h3)
host h3 "$G3"
p3=$(pid_of h3)
acting "$(hostname)-$p3" || fail "h3 did not take over"
kill -TERM "$p3"
expect_exit "$p3" 0
check "h3's cgroup is empty after its clean stop" wait_until 20 cg_empty "$G3"
check "the standby took over the released dispatcher" acting h1
last_will h3 "$G3" "$T/lw-clean.out"
check "last-will after a clean stop exits 0 (got $LW)" [ "$LW" = 0 ]
check "  with nothing to release" grep -q "event=last_will_done .*released=0 .*note=\"no record" "$T/lw-clean.out"
check "no two children acted at once" [ "$(overlaps)" = 0 ]
