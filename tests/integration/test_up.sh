# End-to-end tests of `dispatchd up`: crash detection and restart, hung
# servers, adoption after the supervisor itself was killed, and shutdown.
source "$(dirname "$0")/lib.sh"

RP=$(free_port); TP=$(free_port); HP=$(free_port)
S=$T/state
O=(--state-dir "$S" --redis-port "$RP" --temporal-port "$TP" --temporal-http-port "$HP"
   --metrics-listen 127.0.0.1:0 --server-id uphost)

# stable SVC: the service's current run is past the supervisor's stable
# period (3 s, from its status file's start time, with margin), so a crash
# now is restarted at once rather than after a backoff.
stable() {
  local s; s=$(jq -r .started_ms "$S/$1.status" 2>/dev/null) || return 1
  [ -n "$s" ] && [ "$s" != null ] && [ $(( $(date +%s%3N) - s )) -gt 3500 ]
}
ready_count() { grep -c "the local stack is ready" "$T/up.out" 2>/dev/null || true; }
start_up() {
  local before; before=$(ready_count); before=${before:-0}
  "$DISPATCHD" up "${O[@]}" >>"$T/up.out" 2>>"$T/up.log" &
  UP=$!
  track_dd $UP up
  wait_until 60 bash -c "[ \$(grep -c 'the local stack is ready' '$T/up.out') -gt $before ]" ||
    fail "up did not become ready"
}

start_up
check "up prints the redis address" grep -q "redis://127.0.0.1:$RP" "$T/up.out"
check "up prints the temporal address" grep -q "http://127.0.0.1:$HP" "$T/up.out"
check "redis answers" redis_ping "$RP"
check "temporal answers" temporal_ok "$HP"
check "up owns the default dispatcher" wait_until 10 grep -q "event=owning .*dispatcher=dev/default" "$T/up.log"
mport=$(sed -n 's|.*metrics   http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$T/up.out" | head -1)
check "up serves /metrics with the stack gauges" bash -c "curl -fsS http://127.0.0.1:$mport/metrics | grep -q 'dispatchd_stack_up{service=\"redis\"} 1'"
check "and the owner gauge" bash -c "curl -fsS http://127.0.0.1:$mport/metrics | grep -q 'dispatchd_dispatcher_owner{dispatcher=\"dev/default\"} 1'"
# The metrics contract (deploy/metrics.txt, which the dashboard and rules are
# checked against) is exactly what a running dispatchd exports: up runs the
# stack, an owner, heartbeats and the reconciler, so every family is there.
curl -fsS "http://127.0.0.1:$mport/metrics" | awk '/^# TYPE /{print $3, $4}' | sort >"$T/exported"
grep -v '^#' "$DD_SOURCE_DIR/deploy/metrics.txt" | awk '{print $1, $2}' | sort >"$T/contract"
check "every contract metric is exported with its type" bash -c "[ -z \"\$(comm -23 '$T/contract' '$T/exported')\" ]"
check "every exported metric is in the contract" bash -c "[ -z \"\$(comm -13 '$T/contract' '$T/exported')\" ]"
curl -fsS "http://127.0.0.1:$mport/metrics" | sed -n 's/^# HELP //p' | sort >"$T/exported_help"
grep -v '^#' "$DD_SOURCE_DIR/deploy/metrics.txt" | awk '{n=$1; $1=$2=$3=""; sub(/^ +/, ""); print n, $0}' | sort >"$T/contract_help"
check "every exported HELP text is the contract's" bash -c "[ -z \"\$(comm -13 '$T/contract_help' '$T/exported_help')\" ]"
out=$("$DISPATCHD" up "${O[@]}" 2>&1)
check "a second up says it is already running" grep -q "already running (pid $UP)" <<<"$out"

# kill -9 of each server: detected from the exit event in < 1 s, serving again
for svc in redis temporal; do
  wait_until 30 stable $svc || fail "$svc did not stay up past the stable period"
  old=$(status_pid "$S" $svc)
  t0=$(now_us)
  kill -9 "$old"
  wait_until 5 bash -c "grep -q 'event=service_exited service=$svc pid=$old' '$T/up.log'" || fail "$svc exit not seen"
  exited_us=$(grep "event=service_exited service=$svc pid=$old" "$T/up.log" | sed 's/.*wall_us=\([0-9]*\).*/\1/')
  restart_us=$(grep "event=service_restart service=$svc" "$T/up.log" | tail -1 | sed 's/.*wall_us=\([0-9]*\).*/\1/')
  echo "# $svc: kill -> exit seen $(( (exited_us - t0) / 1000 )) ms, kill -> restart issued $(( (restart_us - t0) / 1000 )) ms"
  check "$svc crash detected within 1 s" [ $((exited_us - t0)) -lt 1000000 ]
  check "$svc restart issued within 1 s of the kill" [ $((restart_us - t0)) -lt 1000000 ]
  if [ $svc = redis ]; then
    check "redis serving again" wait_until 5 redis_ping "$RP"
  else
    check "temporal serving again" wait_until 30 temporal_ok "$HP"
  fi
  check "$svc has a new pid" [ "$(status_pid "$S" $svc)" != "$old" ]
done
check "restarts are counted in the log" grep -q "event=service_restart service=redis restarts=1" "$T/up.log"

# crash loop: quick successive crashes back off instead of spinning
wait_until 5 redis_ping "$RP"
kill -9 "$(status_pid "$S" redis)"
wait_until 5 redis_ping "$RP"
kill -9 "$(status_pid "$S" redis)"
check "a crash loop backs off" wait_until 5 grep -q "event=service_restart_scheduled service=redis delay_ms=" "$T/up.log"
check "and still comes back" wait_until 10 redis_ping "$RP"

# hung server: alive but not answering -> restarted by the health probe
wait_until 30 stable redis || fail "redis did not stay up past the stable period"
hung=$(status_pid "$S" redis)
kill -STOP "$hung"
check "a hung redis is detected" wait_until 15 grep -q "event=service_hung service=redis pid=$hung" "$T/up.log"
check "and restarted" wait_until 10 bash -c "[ \"\$(jq -r .pid '$S/redis.status')\" != $hung ] && redis-cli -p $RP ping | grep -q PONG"
check "the hung process is gone" wait_until 5 bash -c "! kill -0 $hung 2>/dev/null"

# the supervisor itself is killed with -9: the servers keep running; a new up adopts them
rpid=$(status_pid "$S" redis); tpid=$(status_pid "$S" temporal)
kill -9 "$UP"
expect_exit "$UP" 137
check "servers survive their supervisor" redis_ping "$RP"
start_up
check "the new up adopted redis" grep -q "event=service_adopted service=redis pid=$rpid" "$T/up.log"
check "the new up adopted temporal" grep -q "event=service_adopted service=temporal pid=$tpid" "$T/up.log"
check "no second redis was started" [ "$(pgrep -fc "redis-server 127.0.0.1:$RP")" = 1 ]
wait_until 30 stable redis || fail "redis did not stay up past the stable period"
t0=$(now_us)
kill -9 "$rpid"
wait_until 5 grep -q "event=service_exited service=redis pid=$rpid" "$T/up.log" || fail "adopted exit not seen"
exited_us=$(grep "event=service_exited service=redis pid=$rpid" "$T/up.log" | tail -1 | sed 's/.*wall_us=\([0-9]*\).*/\1/')
echo "# adopted redis: kill -> exit seen $(( (exited_us - t0) / 1000 )) ms (pidfd)"
check "an adopted server's crash is detected within 1 s (pidfd)" [ $((exited_us - t0)) -lt 1000000 ]
check "and it is restarted" wait_until 5 redis_ping "$RP"

# shutdown: a crash during shutdown is not restarted; nothing is left
rpid=$(status_pid "$S" redis)
kill -TERM "$UP"; kill -9 "$rpid" 2>/dev/null || true
expect_exit "$UP" 0 # up exits 0 after SIGTERM
check "no restart after shutdown began" bash -c "! sed -n '/event=stack_stopping/,\$p' '$T/up.log' | grep -q 'event=service_restart'"
check "no redis left" [ "$(pgrep -fc "redis-server 127.0.0.1:$RP" || true)" = 0 ]
check "no temporal left" [ "$(pgrep -fc -- "$S/temporal/temporal.db" || true)" = 0 ]
check "locks are free" bash -c "flock -n '$S/redis.lock' true && flock -n '$S/temporal.lock' true && flock -n '$S/up.lock' true"
check "the loop closed clean" bash -c "! grep -q loop_not_clean '$T/up.log'"
check "the dispatcher was released before the stack stopped" \
  bash -c "grep -n 'event=released\|event=stack_stopping' '$T/up.log' | tail -2 | head -1 | grep -q event=released"

# workflows survive a restart of the Temporal dev server (database in the state dir)
start_up
"$(dirname "$DISPATCHD")/../.tools/bin/temporal" workflow start --address "127.0.0.1:$TP" \
  --task-queue q --type t --workflow-id persist-check >/dev/null
kill -TERM "$UP"
expect_exit "$UP" 0
# ... this time on a terminal, as a person runs it: stdout and the log share
# the tty (stdout line-buffered), and the banner must come out in one piece.
script -qfec "exec '$DISPATCHD' up ${O[*]}" "$T/tty.out" >/dev/null </dev/null &
SCRIPT=$!
track_dd $SCRIPT "up (on a tty)"
wait_until 60 grep -q "metrics   http://" "$T/tty.out" || fail "up on a tty did not print its banner"
check "a workflow survives a stack restart" \
  "$(dirname "$DISPATCHD")/../.tools/bin/temporal" workflow describe --address "127.0.0.1:$TP" --workflow-id persist-check
banner_whole() { # the banner's lines follow each other, no log line in between
  python3 - "$T/tty.out" <<'PY2'
import sys
lines = [l.rstrip('\r\n') for l in open(sys.argv[1], errors='replace')]
i = next(i for i, l in enumerate(lines) if 'the local stack is ready' in l)
j = next(j for j in range(i, len(lines)) if 'metrics   http://' in lines[j])
bad = [l for l in lines[i + 1:j + 1] if not l.startswith('  ')]
print('\n'.join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY2
}
check "the up banner is not split by log lines on a terminal" banner_whole
UPT=$(pgrep -P "$SCRIPT" | head -1)
kill -INT "$UPT"
expect_exit "$SCRIPT" 0
