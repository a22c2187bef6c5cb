# Redis 6 ACL users (issue 14 item 2): every command dispatchd runs against
# Redis works as an ACL user holding exactly the rule set docs/redis.md gives
# (read from the docs here), and with one command taken away dispatchd says
# NOPERM, names what it lacked, and does nothing the refused step guards.
source "$(dirname "$0")/lib.sh"

DOC="$(dirname "$0")/../../docs/redis.md"
U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
PW=aclPw-$RANDOM-S3cret
P=acl$$x$RANDOM
W="dispatcher-$P-q"
KEY="dd:hb:{$W}"
R=(--redis-url "redis://127.0.0.1:$RP/0" --redis-username dispatchd)
export DISPATCHD_REDIS_PASSWORD=$PW
export CHILDREN_LOG=$T/children.log
admin() { redis-cli -p "$RP" "$@"; }
as_dd() { redis-cli -p "$RP" --user dispatchd --pass "$PW" --no-auth-warning "$@" 2>&1; }

# --- the user, made from the docs' line -----------------------------------------------------
line=$(grep -m1 '^ACL SETUSER dispatchd ' "$DOC") || fail "docs/redis.md has no 'ACL SETUSER dispatchd' line"
read -ra rules <<<"${line//PASSWORD/$PW}"
check "Redis accepts the docs' rule set" [ "$(admin "${rules[@]}")" = OK ]
check "the user is narrow: no FLUSHALL" grep -q NOPERM <<<"$(as_dd FLUSHALL)"
check "and no key outside dd:*" grep -q NOPERM <<<"$(as_dd GET other:key)"

# --- run (owner, graceful takeover, kill -9 failover), all as that user ---------------------
C=(--temporal-url "$U" "${R[@]}" --heartbeat-interval 300ms --stale-threshold 1200ms
   --metrics-listen off)
child='exec >>"$CHILDREN_LOG"; echo "start $DISPATCHD_SERVER_ID"; trap "exit 0" TERM; while :; do sleep 0.05; done'
host() { # host NAME [DISPATCHER]
  "$DISPATCHD" run --dispatcher "${2:-$P/q}" "${C[@]}" --server-id "$1" -- sh -c "$child" \
    >"$T/$1.out" 2>"$T/$1.log" &
  echo $! >"$T/$1.pid"
  track_dd $! "$1"
}
pid_of() { cat "$T/$1.pid"; }
owner_is() { [ "$(admin hget "$KEY" server_id)" = "$1" ]; }
started() { grep -qx "start $1" "$CHILDREN_LOG" 2>/dev/null; }

host h1
check "h1 claims its record as the ACL user" wait_until 15 owner_is h1
check "and its child starts" wait_until 10 started h1
host h2
check "h2 takes over (handoff through the leases)" wait_until 15 owner_is h2
check "and its child starts" wait_until 10 started h2
kill -9 "$(pid_of h2)"
check "h1 fails over after kill -9 of h2" wait_until 15 owner_is h1
expect_exit "$(pid_of h2)" 137
check "h1's child runs again" wait_until 10 bash -c "[ \$(grep -cx 'start h1' '$CHILDREN_LOG') -ge 2 ]"

# --- worker, workers, status -------------------------------------------------------------------
"$DISPATCHD" worker --dispatcher "$P/q" --server-id w1 "${R[@]}" --heartbeat-interval 300ms \
  >"$T/worker.log" 2>&1 &
wpid=$!; track_dd $wpid worker
check "the worker registers as the ACL user" wait_until 10 grep -q event=worker_registered "$T/worker.log"
check "workers lists it" wait_until 10 bash -c "'$DISPATCHD' workers '$P/q' ${R[*]} 2>>'$T/cli.log' | grep -q w1"
js=$("$DISPATCHD" status --json "${R[@]}" 2>>"$T/cli.log")
check "status shows the dispatcher healthy, owned by h1" \
  [ "$(jq -r --arg w "$W" '.dispatchers[] | select(.workflow_id==$w) | "\(.state) \(.owner)"' <<<"$js")" = "healthy h1" ]
check "the URL's user works too (redis://dispatchd:@host, password from the env)" \
  bash -c "'$DISPATCHD' status --redis-url 'redis://dispatchd:@127.0.0.1:$RP/0' 2>>'$T/cli.log' | grep -q '$P/q'"
kill -TERM $wpid
expect_exit $wpid 0
check "the worker deregistered" [ "$(admin zcard "dd:workers:{$W}")" = 0 ]

# --- reconcile: h1 dies, its stale record and run are cleaned up as the ACL user ------------------
run1=$(admin hget "$KEY" run_id)
kill -9 "$(pid_of h1)"
expect_exit "$(pid_of h1)" 137
reconcile_clears() {
  "$DISPATCHD" reconcile --temporal-url "$U" "${R[@]}" --stale-threshold 1200ms \
    >>"$T/reconcile.out" 2>>"$T/reconcile.log" || return 1
  [ "$(admin exists "$KEY")" = 0 ]
}
check "reconcile (exit 0) deletes the stale record" wait_until 20 reconcile_clears
check "and terminated the dead owner's run" \
  [ "$(curl -fsS "$U/api/v1/namespaces/default/workflows/$W?execution.runId=$run1" | jq -r .workflowExecutionInfo.status)" = WORKFLOW_EXECUTION_STATUS_TERMINATED ]
check "no NOPERM anywhere so far" bash -c "! grep -l 'NOPERM\|redis_noperm\|can.t run this command' '$T'/*.log"

# --- wrong password, user without a password ----------------------------------------------------
set +e
out=$(DISPATCHD_REDIS_PASSWORD=wrong-$PW "$DISPATCHD" status "${R[@]}" 2>&1); rc=$?
check "a wrong password fails (exit 1)" [ $rc -eq 1 ]
check "and says WRONGPASS and to check the user and its password" \
  grep -q "WRONGPASS.*check the user and its password: --redis-username" <<<"$out"
out=$(env -u DISPATCHD_REDIS_PASSWORD "$DISPATCHD" status "${R[@]}" 2>&1); rc=$?
check "a user without a password is refused (exit 2)" [ $rc -eq 2 ]
check "and named" grep -q -- "--redis-username: redis user 'dispatchd' has no password" <<<"$out"
set -e

# --- one command less: NOPERM, named, and no child without a claim ---------------------------------
admin acl setuser dispatchd -incr >/dev/null   # the claim script's epoch
P2=${P}n
host h3 "$P2/q"
noperms() { [ "$(grep -c 'event=redis_noperm .*op=claim' "$T/h3.log")" -ge "$1" ]; }
check "without INCR the claim is refused with NOPERM" wait_until 15 noperms 3
check "and the log names the operation, its commands and the user" \
  grep -q 'level=error event=redis_noperm .*op=claim uses="EVAL (TIME INCR DEL HSET ZADD) on dd:hb:{wid} dd:hb:index dd:epoch:{wid}" user=dispatchd' "$T/h3.log"
check "no record was written" [ "$(admin exists "dd:hb:{dispatcher-$P2-q}")" = 0 ]
check "and h3's child never started (three claims refused)" bash -c "! grep -qx 'start h3' '$CHILDREN_LOG'"
admin acl setuser dispatchd -zrangebyscore >/dev/null
set +e
out=$("$DISPATCHD" status "${R[@]}" 2>&1); rc=$?
set -e
check "status without ZRANGEBYSCORE fails (exit 1)" [ $rc -eq 1 ]
check "and says which step, what it uses, and where the rules are" \
  grep -q "Operation not permitted (redis ACL user 'dispatchd' may not run 'list' (EVAL (TIME INFO ZRANGEBYSCORE ZCARD ZCOUNT) on dd:hb:index.*docs/redis.md" <<<"$out"
kill -TERM "$(pid_of h3)"
expect_exit "$(pid_of h3)" 0

# --- no SUBSCRIBE: the standbys' channel is refused by name, ownership goes on -----------------
admin acl setuser dispatchd +incr +zrangebyscore -subscribe >/dev/null
P3=${P}s
host h4 "$P3/q"
check "without SUBSCRIBE the subscription is refused, named as such (not a protocol error)" \
  wait_until 15 grep -q 'event=redis_subscribe_unavailable .*err="Operation not permitted" error="redis refused SUBSCRIBE: NOPERM.*the ACL user needs +subscribe and the channels &dd:\*: docs/redis.md' "$T/h4.log"
check "and h4 still owns its dispatcher (the stale timer is the fallback)" \
  wait_until 15 bash -c "[ \"\$(redis-cli -p $RP hget 'dd:hb:{dispatcher-$P3-q}' server_id)\" = h4 ]"
check "no protocol error was logged" bash -c "! grep -q 'protocol error' '$T/h4.log'"
kill -TERM "$(pid_of h4)"
expect_exit "$(pid_of h4)" 0
