# No secret leaks: with a Redis password and a Temporal API key configured,
# no log line, metric, status output or error message contains them.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
PW=redisPw-$RANDOM-S3cret
KEY=tk-$RANDOM-ApiKeySecret
BADPW=wrongPw-$RANDOM-S3cret
RP=$(free_port); start_redis "$RP" --requirepass "$PW"
R="redis://127.0.0.1:$RP/0"
P=sec$$x$RANDOM
OUT=$T/all-output
export DISPATCHD_TEMPORAL_API_KEY=$KEY

# the password from the environment
DISPATCHD_REDIS_PASSWORD=$PW "$DISPATCHD" run --dispatcher "$P/q" --temporal-url "$U" --redis-url "$R" \
  --server-id s1 --heartbeat-interval 300ms --stale-threshold 1s --metrics-listen 127.0.0.1:0 \
  --log-level debug >>"$OUT" 2>"$T/run.log" &
RUN=$!; track_dd $RUN run
check "run works with the password and the API key" wait_until 10 grep -q event=record_claimed "$T/run.log"
mport=$(sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' "$T/run.log")
curl -fsS "http://127.0.0.1:$mport/metrics" >>"$OUT"
curl -fsS "http://127.0.0.1:$mport/readyz" >>"$OUT" || true
# the password from a file
printf '%s\n' "$PW" >"$T/pwfile"
"$DISPATCHD" status --redis-url "$R" --redis-password-file "$T/pwfile" >>"$OUT" 2>&1
"$DISPATCHD" status --json --redis-url "$R" --redis-password-file "$T/pwfile" >>"$OUT" 2>&1
"$DISPATCHD" workers "$P/q" --redis-url "$R" --redis-password-file "$T/pwfile" >>"$OUT" 2>&1
"$DISPATCHD" worker --dispatcher "$P/q" --server-id w1 --redis-url "$R" --redis-password-file "$T/pwfile" \
  --log-level debug >"$T/worker.log" 2>&1 &
wpid=$!; track_dd $wpid worker
check "the worker registers with the password" wait_until 10 grep -q event=worker_registered "$T/worker.log"
kill -TERM $wpid
expect_exit $wpid 0
cat "$T/worker.log" >>"$OUT"
"$DISPATCHD" takeover "$P" q2 --temporal-url "$U" --log-level debug >>"$OUT" 2>&1
check "status read the records with the password" grep -q "$P/q" "$OUT"

# errors: a wrong password in the URL, in the environment, a dead Temporal with the key
set +e
"$DISPATCHD" status --redis-url "redis://:$BADPW@127.0.0.1:$RP/0" >>"$OUT" 2>&1; rc1=$?
DISPATCHD_REDIS_PASSWORD=$BADPW "$DISPATCHD" workers "$P/q" --redis-url "$R" >>"$OUT" 2>&1; rc2=$?
"$DISPATCHD" status --redis-url "redis://:$BADPW@127.0.0.1:99999/0" >>"$OUT" 2>&1; rc3=$?
dead=$(free_port)
"$DISPATCHD" takeover "$P" q3 --temporal-url "http://127.0.0.1:$dead" --log-level debug >>"$OUT" 2>&1; rc4=$?
set -e
check "a wrong password in the URL fails (exit 1)" [ $rc1 -eq 1 ]
check "a wrong password in the environment fails (exit 1)" [ $rc2 -eq 1 ]
check "and says authentication failed" grep -qi "auth\|WRONGPASS\|permission" "$OUT"
check "a malformed URL with a password fails" [ $rc3 -eq 2 ]
check "a dead Temporal fails" [ $rc4 -eq 1 ]
kill -TERM $RUN
expect_exit $RUN 0
cat "$T/run.log" >>"$OUT"

check "output was captured" [ "$(wc -l <"$OUT")" -gt 20 ]
check "the Redis password appears nowhere" bash -c "! grep -qF -- '$PW' '$OUT'"
check "the wrong password appears nowhere" bash -c "! grep -qF -- '$BADPW' '$OUT'"
check "the API key appears nowhere" bash -c "! grep -qF -- '$KEY' '$OUT'"
check "the process list does not carry them either" bash -c "! ps -eo args | grep -v grep | grep -qF -- '$PW'"
