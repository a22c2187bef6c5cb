# Errors name the likely mistake and what to do (issue 13 item 12), against
# the real dev server (its gRPC port is a real gRPC port) and real Redis.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
G=$(cat "$DD_FIXTURE_DIR/temporal/grpc")
PW=errPw-$RANDOM-S3cret
RP=$(free_port); start_redis "$RP" --requirepass "$PW"
dead=$(free_port)
P=er$$x$RANDOM
set +e

# --- --temporal-url ------------------------------------------------------------------------
out=$("$DISPATCHD" takeover "$P" q --temporal-url "http://" 2>&1); rc=$?
check "'http://' is bad input (exit 2)" [ $rc -eq 2 ]
check "and the message says the host is missing and what to give" \
  grep -q "'http://': the host is missing: expected http://HOST:PORT, e.g. http://127.0.0.1:7243" <<<"$out"
out=$("$DISPATCHD" run --dispatcher "$P/q" --temporal-url "http://" --redis-url "redis://127.0.0.1:$dead/0" \
  --metrics-listen off 2>&1); rc=$?
check "run with 'http://' is refused at start (exit 2)" [ $rc -eq 2 ]
check "with the same words, not a generic 'cannot set up'" grep -q "the host is missing" <<<"$out"

out=$("$DISPATCHD" takeover "$P" q --temporal-url "$U/api/v1/" 2>&1); rc=$?
check "a URL ending in /api/v1 is bad input (exit 2)" [ $rc -eq 2 ]
check "and the message gives the URL to use" grep -qF "leave out '/api/v1' (dispatchd adds it): use '$U'" <<<"$out"
check "instead of Temporal's 'Not Found'" bash -c "! grep -q 'Not Found' <<<'$out'"

out=$("$DISPATCHD" takeover "$P" q --temporal-url "http://$G" 2>&1); rc=$?
check "the gRPC port as the HTTP URL fails (exit 1)" [ $rc -eq 1 ]
check "and the message says it is a gRPC port and which one to use" \
  grep -q "that is an HTTP/2 (gRPC) port, such as Temporal's 7233; the URL must name the Temporal HTTP API port (7243 by default" <<<"$out"
"$DISPATCHD" reconcile --temporal-url "http://$G" --redis-url "redis://:$PW@127.0.0.1:$RP/0" >/dev/null 2>"$T/rec.log"; rc=$?
check "a reconcile against the gRPC port fails (exit 1)" [ $rc -eq 1 ]
check "and its log line names the mistake" grep -q 'event=reconcile_error .*HTTP/2 (gRPC) port' "$T/rec.log"

# --- Redis -----------------------------------------------------------------------------------
out=$("$DISPATCHD" status --redis-url "redis://127.0.0.1:$dead/0" 2>&1); rc=$?
check "status with nothing on the Redis port fails (exit 1)" [ $rc -eq 1 ]
check "and asks whether redis-server runs there and how to point at it" \
  grep -q "cannot read dispatchers from redis://127.0.0.1:$dead/0: service unavailable (cannot connect to redis: Connection refused); is redis-server running there?.*--redis-url or DISPATCHD_REDIS_URL" <<<"$out"
check "no empty parentheses" bash -c "! grep -qF '()' <<<'$out'"
out=$("$DISPATCHD" workers "$P/q" --redis-url "redis://127.0.0.1:$dead/0" 2>&1); rc=$?
check "workers says the same (exit 1)" bash -c "[ $rc -eq 1 ] && grep -q 'is redis-server running there?' <<<'$out'"
out=$("$DISPATCHD" status --redis-url "redis://127.0.0.1:$RP/0" 2>&1); rc=$?
check "a missing password fails (exit 1)" [ $rc -eq 1 ]
check "and points to the password options" grep -q "check the password: DISPATCHD_REDIS_PASSWORD or --redis-password-file" <<<"$out"

# --- a password inside the URL ---------------------------------------------------------------
out=$("$DISPATCHD" status --redis-url "redis://:$PW@127.0.0.1:$RP/0" 2>&1); rc=$?
check "a password in --redis-url works (exit 0)" [ $rc -eq 0 ]
check "with a warning that ps shows it, naming the env and file options" \
  grep -q "level=warn event=redis_password_in_url url=redis://\*\*\*@127.0.0.1:$RP/0 note=\"a password inside --redis-url is visible to every local user (ps, /proc/PID/cmdline): put it in DISPATCHD_REDIS_PASSWORD or a file named by --redis-password-file" <<<"$out"
check "the password itself is not printed" bash -c "! grep -qF -- '$PW' <<<'$out'"
out=$(DISPATCHD_REDIS_URL="redis://:$PW@127.0.0.1:$RP/0" "$DISPATCHD" status 2>&1); rc=$?
check "from DISPATCHD_REDIS_URL (not on the command line) it works" [ $rc -eq 0 ]
check "without the warning" bash -c "! grep -q redis_password_in_url <<<'$out'"
out=$(DISPATCHD_REDIS_PASSWORD="$PW" "$DISPATCHD" status --redis-url "redis://127.0.0.1:$RP/0" 2>&1); rc=$?
check "DISPATCHD_REDIS_PASSWORD works without a warning" bash -c "[ $rc -eq 0 ] && ! grep -q redis_password_in_url <<<'$out'"
set -e
"$DISPATCHD" worker --dispatcher "$P/q" --server-id w1 --redis-url "redis://:$PW@127.0.0.1:$RP/0" 2>"$T/w1.log" &
track_dd $! "worker w1"
check "the worker warns too" wait_until 10 grep -q 'event=redis_password_in_url' "$T/w1.log"
check "and registers" wait_until 10 grep -q 'event=worker_registered' "$T/w1.log"
echo "# $PASSED checks passed"
