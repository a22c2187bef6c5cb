# `dispatchd worker` with the Redis password in the URL: the sidecar got the
# masked URL meant for messages ("redis://***@host"), which does not parse,
# so it exited 2 with "missing ':' before the password". It must register,
# and the password must stay out of its output.
source "$(dirname "$0")/lib.sh"

PW=urlPw-$RANDOM-S3cret
RP=$(free_port); start_redis "$RP" --requirepass "$PW"
"$DISPATCHD" worker --dispatcher p$$/q --server-id w1 --redis-url "redis://:$PW@127.0.0.1:$RP/0" \
  --heartbeat-interval 200ms >"$T/w.log" 2>&1 &
track $!
check "the worker registers with the password from the URL" \
  wait_until 5 grep -q event=worker_registered "$T/w.log"
check "and does not print it" bash -c "! grep -qF -- '$PW' '$T/w.log'"
