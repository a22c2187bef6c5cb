# Redis Sentinel, piece by piece, on real servers (issue 14, item 3; the
# failover itself: test_redis_sentinel_failover.sh). No failover happens
# here by accident: the sentinels' down-after is a minute.
#   - the options: both or neither, not with --redis-url, bad lists: exit 2
#   - an unknown master name: exit 2 naming it; no sentinel reachable: exit 1
#     naming each sentinel and what it said
#   - sentinels tried in order, one at a time, bounded: a black-holed first
#     sentinel costs one timeout, then the next one answers
#   - the sentinels' password (requirepass): refused without, works with
#   - a sentinel whose answer is a replica (one that monitors the replica's
#     address: a real sentinel, a wrong answer): dispatchd refuses the node
#     in its handshake and writes nothing to it
#   - READONLY: the primary an owner writes to turns into a replica behind
#     everyone's back (REPLICAOF, as a failover we were not told about would
#     leave it); one log line and one reconnect per switch, not one per
#     operation; the child stops by its deadline and acts again once the
#     node is a primary again
#   - --redis-wait-replicas 1: with the replica frozen (SIGSTOP) the claim is
#     never confirmed and no child starts; once it runs again, the claim
#     counts and the child starts
#   - the +switch-master subscription: the subscribed sentinel goes silent
#     (SIGSTOP: the socket stays open); the keepalive PING notices and the
#     subscription moves to the next sentinel
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/sentinel_lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
NAME=dd$$
SENTINEL_DOWN_MS=60000 sentinel_set "$NAME"
SEN=(--redis-sentinel "$SENTINELS" --redis-master-name "$NAME")
P=snt$$x$RANDOM
CH=$T/children.log
export CHILD_TICK_S=0.05
CHILD=(python3 "$DD_SOURCE_DIR/bench/fleet/child.py" "$CH")
# who acted on workflow $1 in the last 300 ms, from the children's own ticks
acting() {
  local now; now=$(( $(date +%s%N) / 1000 ))
  awk -v w="$1" -v since=$((now - 300000)) '$3==w && $2>=since {print $5}' "$CH" 2>/dev/null | sort -u | tr '\n' ' '
}
acts() { [ "$(acting "$1")" = "$2 " ]; }
nobody_acts() { [ -z "$(acting "$1")" ]; }
metric() { curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }
mport() { sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' "$1" | head -1; }

set +e
# --- options ------------------------------------------------------------------------------
out=$("$DISPATCHD" status --redis-sentinel "$SENTINELS" 2>&1); rc=$?
check "--redis-sentinel without --redis-master-name: exit 2" [ $rc -eq 2 ]
check "and says both or neither" grep -q -- "--redis-sentinel needs --redis-master-name (give both or neither)" <<<"$out"
out=$(DISPATCHD_REDIS_MASTER_NAME=x "$DISPATCHD" workers "$P/q" 2>&1); rc=$?
check "a master name (env) without sentinels: exit 2" [ $rc -eq 2 ]
out=$("$DISPATCHD" status "${SEN[@]}" --redis-url redis://127.0.0.1:1/0 2>&1); rc=$?
check "--redis-sentinel with --redis-url: exit 2" [ $rc -eq 2 ]
check "and says give only one" grep -q "give only one" <<<"$out"
out=$("$DISPATCHD" status "${SEN[@]}" --redis-port 7000 2>&1); rc=$?
check "--redis-sentinel with --redis-port: exit 2" [ $rc -eq 2 ]
out=$("$DISPATCHD" status --redis-db 2 2>&1); rc=$?
check "--redis-db without --redis-sentinel: exit 2" [ $rc -eq 2 ]
out=$("$DISPATCHD" status --redis-sentinel "127.0.0.1:x" --redis-master-name "$NAME" 2>&1); rc=$?
check "a bad sentinel list: exit 2" [ $rc -eq 2 ]
check "naming the entry" grep -q "sentinel '127.0.0.1:x' in the list: bad port" <<<"$out"

# --- discovery ------------------------------------------------------------------------------
out=$("$DISPATCHD" status "${SEN[@]}" --json 2>"$T/st.err"); rc=$?
check "status through the sentinels works (exit 0)" [ $rc -eq 0 ]
check "connected to the primary the sentinels name" grep -q "event=redis_connected addr=127.0.0.1:$RPRI .*master=$NAME role=master" "$T/st.err"
out=$("$DISPATCHD" status --redis-sentinel "$SENTINELS" --redis-master-name nosuch 2>&1); rc=$?
check "an unknown master name: exit 2" [ $rc -eq 2 ]
check "naming it and every sentinel's answer" grep -q "no sentinel of $SENTINELS knows the master name 'nosuch' (check --redis-master-name.*127.0.0.1:$S3: does not know master 'nosuch'" <<<"$out"
# a daemon with an unknown name: keeps asking (the name may be added), not ready, says why
M=$(free_port)
set -e
"$DISPATCHD" run --dispatcher "$P/nosuch" --temporal-url "$U" --server-id ns1 \
  --redis-sentinel "$SENTINELS" --redis-master-name nosuch --metrics-listen "127.0.0.1:$M" \
  --heartbeat-interval 300ms --stale-threshold 1200ms -- "${CHILD[@]}" 2>"$T/nosuch.log" &
track_dd $! nosuch
check "run keeps asking (err=\"unknown master name\", with backoff)" \
  wait_until 20 bash -c "[ \$(grep -c 'event=redis_unavailable .*err=\"unknown master name\"' '$T/nosuch.log') -ge 3 ]"
check "and is not ready, saying why" wait_until 10 bash -c \
  "curl -sS http://127.0.0.1:$M/readyz | grep -q \"knows the master name 'nosuch'\""
set +e
D1=$(free_port); D2=$(free_port)
out=$("$DISPATCHD" status --redis-sentinel "127.0.0.1:$D1,127.0.0.1:$D2" --redis-master-name "$NAME" 2>&1); rc=$?
check "no sentinel reachable: exit 1" [ $rc -eq 1 ]
check "naming each and what to do" grep -q "no sentinel of 127.0.0.1:$D1,127.0.0.1:$D2 named a primary for '$NAME': 127.0.0.1:$D1: cannot connect (Connection refused); 127.0.0.1:$D2: cannot connect (Connection refused)); are the sentinels running there" <<<"$out"
# a black hole first: it accepts and never answers; one timeout, then the next one
hold_port "$D1"
t0=$(date +%s%N)
out=$("$DISPATCHD" status --redis-sentinel "127.0.0.1:$D1,127.0.0.1:$S2" --redis-master-name "$NAME" 2>&1); rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "a silent first sentinel, a good second: exit 0" [ $rc -eq 0 ]
check "after one bounded wait on the first ($ms ms; half the 2 s command timeout)" [ "$ms" -ge 900 ] && [ "$ms" -lt 8000 ]
kill "$HOLDER"
set -e

# --- the sentinels' password ----------------------------------------------------------------
SP=$(free_port)
SENTINEL_EXTRA="requirepass s3cret" start_sentinel "$SP" "$RPRI" "$NAME" 2 60000
set +e
out=$("$DISPATCHD" status --redis-sentinel "127.0.0.1:$SP" --redis-master-name "$NAME" 2>&1); rc=$?
check "a sentinel with a password, none given: exit 1" [ $rc -eq 1 ]
check "saying authentication and where to set it" grep -q "refused authentication.*DISPATCHD_REDIS_SENTINEL_PASSWORD or --redis-sentinel-password-file" <<<"$out"
out=$(DISPATCHD_REDIS_SENTINEL_PASSWORD=s3cret "$DISPATCHD" status --redis-sentinel "127.0.0.1:$SP" --redis-master-name "$NAME" 2>&1); rc=$?
check "with DISPATCHD_REDIS_SENTINEL_PASSWORD: exit 0" [ $rc -eq 0 ]
echo s3cret >"$T/spw"
out=$("$DISPATCHD" status --redis-sentinel "127.0.0.1:$SP" --redis-master-name "$NAME" --redis-sentinel-password-file "$T/spw" 2>&1); rc=$?
check "with --redis-sentinel-password-file: exit 0" [ $rc -eq 0 ]
check "the password is never printed" bash -c "! grep -q s3cret <<<'$out'"
set -e

# --- a sentinel that names a replica -----------------------------------------------------------
# A real sentinel monitoring the replica's address under the name: its answer
# is a replica, as a sentinel behind a failover would give.
SS=$(free_port)
start_sentinel "$SS" "$RREP" stale$$ 1 60000
check "the stale sentinel names the replica" [ "$(sentinel_master "$SS" stale$$)" = "127.0.0.1 $RREP" ]
evals0=$(redis-cli -p "$RREP" info commandstats | grep -c cmdstat_eval || true)
set +e
out=$("$DISPATCHD" status --redis-sentinel "127.0.0.1:$SS" --redis-master-name stale$$ 2>&1); rc=$?
check "status refuses it: exit 1 (got $rc: $out)" [ $rc -eq 1 ]
check "saying it is not the primary" grep -q "redis at 127.0.0.1:$RREP is not the primary (INFO replication: role:slave) although a sentinel named it" <<<"$out"
set -e
"$DISPATCHD" run --dispatcher "$P/stale" --temporal-url "$U" --server-id st1 \
  --redis-sentinel "127.0.0.1:$SS" --redis-master-name stale$$ --metrics-listen off \
  --heartbeat-interval 300ms --stale-threshold 1200ms -- "${CHILD[@]}" 2>"$T/stale.log" &
track_dd $! stale
check "run keeps asking and refusing (event=redis_not_primary, more than once)" \
  wait_until 20 bash -c "[ \$(grep -c event=redis_not_primary '$T/stale.log') -ge 3 ]"
check "it never wrote to the replica (no EVAL in its command stats)" \
  [ "$(redis-cli -p "$RREP" info commandstats | grep -c cmdstat_eval || true)" = "$evals0" ]
check "no child was started" nobody_acts "dispatcher-$P-stale"

# --- a sentinel whose ACL refuses SUBSCRIBE: said by name, not ignored ---------------------------
SACL=$(free_port)
start_sentinel "$SACL" "$RPRI" "$NAME" 1 60000
redis-cli -p "$SACL" ACL SETUSER default -subscribe >/dev/null
"$DISPATCHD" run --dispatcher "$P/acl" --temporal-url "$U" --server-id acl1 \
  --redis-sentinel "127.0.0.1:$SACL" --redis-master-name "$NAME" --metrics-listen off \
  --heartbeat-interval 300ms --stale-threshold 1200ms -- "${CHILD[@]}" 2>"$T/acl.log" &
ACLPID=$!
track_dd $ACLPID acl
check "a refused SUBSCRIBE +switch-master is logged as such and retried" \
  wait_until 20 grep -q "event=sentinel_subscription_lost .*sentinel=127.0.0.1:$SACL error=\"SUBSCRIBE +switch-master refused (NOPERM" "$T/acl.log"
check "and the host still owns its dispatcher through that sentinel" wait_until 20 acts "dispatcher-$P-acl" acl1
kill -TERM "$ACLPID"
expect_exit "$ACLPID" 0

# --- READONLY: the primary turns into a replica behind everyone's back -------------------------
# its own pair: A (primary), B (A's replica), and a sentinel for A that will
# not fail over within the test (down-after 60 s)
A=$(free_port); start_primary "$A"
B=$(free_port); start_replica "$B" "$A"
SA=$(free_port); start_sentinel "$SA" "$A" ro$$ 1 60000
W="dispatcher-$P-ro"
"$DISPATCHD" run --dispatcher "$P/ro" --temporal-url "$U" --server-id ro1 \
  --redis-sentinel "127.0.0.1:$SA" --redis-master-name ro$$ --metrics-listen 127.0.0.1:0 \
  --heartbeat-interval 300ms --stale-threshold 1200ms -- "${CHILD[@]}" 2>"$T/ro.log" &
track_dd $! ro
check "the owner acts through the sentinel" wait_until 30 acts "$W" ro1
wait_until 10 bash -c "[ -n \"\$(sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' '$T/ro.log')\" ]"
MP=$(mport "$T/ro.log")
check "dispatchd_redis_readonly_total starts at 0" [ "$(metric "$MP" dispatchd_redis_readonly_total)" = 0 ]
# B takes A's data as a primary of its own; A follows B: A is a replica now,
# with the owner still connected to it (REPLICAOF keeps normal clients)
redis-cli -p "$B" replicaof no one >/dev/null
redis-cli -p "$A" replicaof 127.0.0.1 "$B" >/dev/null
check "A is a replica now" wait_until 10 bash -c "[ \"\$(redis-cli -p $A info replication | tr -d '\r' | sed -n 's/^role://p')\" = slave ]"
check "the owner hears READONLY (event=redis_readonly)" wait_until 10 grep -q event=redis_readonly "$T/ro.log"
check "and then refuses the node in its handshake (event=redis_not_primary)" wait_until 10 grep -q event=redis_not_primary "$T/ro.log"
check "its child stops by the acting deadline (the writes no longer land)" wait_until 10 nobody_acts "$W"
sleep 2 # a few more heartbeat intervals against the replica
n=$(grep -c event=redis_readonly "$T/ro.log")
check "one READONLY log line per switch, not one per operation ($n)" [ "$n" -eq 1 ]
check "dispatchd_redis_readonly_total counts it" [ "$(metric "$MP" dispatchd_redis_readonly_total)" -ge 1 ]
check "no error storm: at most one reconnect per backoff step ($(grep -c event=redis_unavailable "$T/ro.log") in ~3 s)" \
  [ "$(grep -c event=redis_unavailable "$T/ro.log")" -le 20 ]
# A is a primary again (with B's copy of the data): the owner comes back
redis-cli -p "$A" replicaof no one >/dev/null
check "the owner acts again once A is a primary" wait_until 20 acts "$W" ro1

# --- --redis-wait-replicas --------------------------------------------------------------------
W2="dispatcher-$P-w"
REP_PID=$(redis_pid "$RREP")
kill -STOP "$REP_PID"
"$DISPATCHD" run --dispatcher "$P/w" --temporal-url "$U" --server-id w1 "${SEN[@]}" \
  --redis-wait-replicas 1 --metrics-listen 127.0.0.1:0 --heartbeat-interval 300ms \
  --stale-threshold 1200ms -- "${CHILD[@]}" 2>"$T/w.log" &
WPID=$!
track_dd $WPID w
check "with the replica frozen, WAIT confirms nothing (event=redis_wait_short op=claim)" \
  wait_until 30 grep -q "event=redis_wait_short .*op=claim want=1 acked=0" "$T/w.log"
check "and the claim does not count (event=record_claim_failed)" wait_until 10 grep -q event=record_claim_failed "$T/w.log"
sleep 2
check "no child started" nobody_acts "$W2"
check "not a single line from a child of $W2" bash -c "! grep -q ' $W2 ' '$CH'"
kill -CONT "$REP_PID"
check "once the replica runs again, the claim counts and the child acts" wait_until 30 acts "$W2" w1
wait_until 10 bash -c "[ -n \"\$(sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' '$T/w.log')\" ]"
check "dispatchd_redis_wait_short_total counted the unconfirmed writes" \
  [ "$(metric "$(mport "$T/w.log")" dispatchd_redis_wait_short_total)" -ge 1 ]

# --- the subscription's keepalive ------------------------------------------------------------
check "the owner w1 is subscribed to the first sentinel" grep -q "event=sentinel_subscribed .*sentinel=127.0.0.1:$S1 " "$T/w.log"
S1_PID=$(cat "$T/sentinel-$S1.pid")
kill -STOP "$S1_PID"
check "a silent sentinel: the unanswered PING drops the subscription" \
  wait_until 20 grep -q "event=sentinel_subscription_lost .*sentinel=127.0.0.1:$S1 error=\"no answer to PING\"" "$T/w.log"
check "and it subscribes to the next one" wait_until 20 grep -q "event=sentinel_subscribed .*sentinel=127.0.0.1:$S2 " "$T/w.log"
kill -CONT "$S1_PID"
check "the owner kept acting meanwhile" acts "$W2" w1

# --- the worker sidecar and `workers` through the sentinels ---------------------------------
"$DISPATCHD" worker --dispatcher "$P/w" --server-id wk1 "${SEN[@]}" --heartbeat-interval 300ms \
  2>"$T/wk.log" &
track_dd $! worker
check "a worker registers through the sentinels, and workers lists it through them" \
  wait_until 20 bash -c "'$DISPATCHD' workers '$P/w' ${SEN[*]} --json 2>/dev/null | grep -q wk1"

# --- the last will through the sentinels ---------------------------------------------------
# kill -9 of the owner alone: its guard finds the primary through the sentinels (the will
# carries them, docs/ownership.md "Last will") and makes the record stale there
kill -9 "$WPID"
expect_exit "$WPID" 137
check "the guard's will reached the primary through the sentinels (will_released)" \
  wait_until 20 grep -q "event=will_released .*mode=expire" "$T/w.log"
