# `dispatchd worker` with the Redis password in its URL (redis://:pw@host),
# against a real redis-server with requirepass: it registers, deregisters on
# SIGTERM and exits 0 (a sanitized build's report would fail that), and the
# password appears in none of its output.
source "$(dirname "$0")/lib.sh"

PW=wkPw-$RANDOM-S3cret
RP=$(free_port); start_redis "$RP" --requirepass "$PW"
R="redis://:$PW@127.0.0.1:$RP/0"
P=wu$$x$RANDOM
workers() { "$DISPATCHD" workers "$P/q" --json --redis-url "$R" 2>>"$T/workers.log"; }
registered() { workers | jq -e '.workers | map(.server_id) | index("w1") != null' >/dev/null; }

"$DISPATCHD" worker --dispatcher "$P/q" --server-id w1 --redis-url "$R" \
  --heartbeat-interval 200ms >"$T/worker.out" 2>"$T/worker.log" &
W=$!; track $W
check "the worker registers with the password from its URL" wait_until 10 registered
kill -TERM $W
rc=0; wait $W || rc=$?
check "it exits 0 on SIGTERM (exit $rc)" [ $rc -eq 0 ]
check "it deregistered" grep -q event=worker_deregistered "$T/worker.log"
not() { ! "$@"; }
check "and is gone from the registry" not registered
check "the password appears in none of its output" \
  bash -c "! grep -qF -- '$PW' '$T/worker.log' '$T/worker.out' '$T/workers.log'"
