# Redis over TLS (issue 14 item 1), for real: Debian's redis-server with
# --tls-port (no plain port), certificates made here with the openssl CLI,
# results judged with `redis-cli --tls`. Covers: a run owning a dispatcher
# over rediss:// with a db (its record read back by redis-cli), a DNS name
# (localhost), the options from the environment (worker), the wrong CA, a
# name mismatch, a server requiring a client certificate we do not send,
# mTLS with one, each failure named in the one-shot error and in /readyz,
# and the start-up refusals (a missing file, TLS files with redis://).
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
P=rtls$$x$RANDOM
W="dispatcher-$P-q"
KEY="dd:hb:{$W}"
C=$T/certs
mkdir -p "$C"

# --- certificates ------------------------------------------------------------------------------
CERT_DIR=$C
. "$DD_SOURCE_DIR/tests/support/certs.sh"
{ new_ca ca && new_ca otherca &&
  new_cert server ca "IP:127.0.0.1,DNS:localhost" "serverAuth,clientAuth" &&
  new_cert wrongname ca "DNS:other.test" serverAuth &&
  new_cert client ca "DNS:dispatchd-test-client" clientAuth; } || fail "certificates"
ok "certificates made (CA, other CA, server, wrong-name server, client)"

# --- TLS-only redis-servers ---------------------------------------------------------------------
# tls_redis NAME CERT AUTH_CLIENTS: sets PORT_<NAME>
tls_redis() {
  local name=$1 port; port=$(free_port)
  mkdir -p "$T/redis-$name"
  redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$T/redis-$name" --loglevel warning --tls-cert-file "$C/$2.pem" \
    --tls-key-file "$C/$2.key" --tls-ca-cert-file "$C/ca.pem" --tls-auth-clients "$3" \
    >"$T/redis-$name.log" 2>&1 &
  track $!
  printf -v "PORT_$name" '%s' "$port"
  wait_until 15 cli "$port" ping || fail "TLS redis $name on $port did not start within 15 s"
}
# cli PORT ARGS...: redis-cli over TLS with our CA and the client certificate (the judge)
cli() {
  local port=$1; shift
  redis-cli --tls --cacert "$C/ca.pem" --cert "$C/client.pem" --key "$C/client.key" \
    -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}
tls_redis plain server no
tls_redis mtls server yes
tls_redis wrongname wrongname no
check "the TLS redis answers no plain PING (TLS only)" [ "$(redis-cli -p "$PORT_plain" ping 2>&1)" != PONG ]
check "redis-cli --tls without a client certificate is refused by the mTLS server" \
  bash -c "[ \"\$(redis-cli --tls --cacert '$C/ca.pem' -p $PORT_mtls ping 2>&1)\" != PONG ]"

# --- a. run owns a dispatcher over rediss:// with db 3 -----------------------------------------
MP=$(free_port)
"$DISPATCHD" run --dispatcher "$P/q" --server-id tls-h1 --temporal-url "$U" \
  --redis-url "rediss://127.0.0.1:$PORT_plain/3" --redis-ca-file "$C/ca.pem" \
  --heartbeat-interval 300ms --stale-threshold 1500ms --metrics-listen "127.0.0.1:$MP" \
  -- sh -c 'trap "exit 0" TERM; while :; do sleep 0.05; done' >"$T/h1.out" 2>"$T/h1.log" &
h1=$!; track_dd $h1 h1
owner_is() { [ "$(cli "$PORT_plain" -n 3 hget "$KEY" server_id)" = "$1" ]; }
check "a: the owner's record is in db 3, read by redis-cli --tls" wait_until 20 owner_is tls-h1
check "a: and not in db 0" [ "$(cli "$PORT_plain" -n 0 exists "$KEY")" = 0 ]
hb1=$(cli "$PORT_plain" -n 3 hget "$KEY" hb_ms)
check "a: it keeps heartbeating over TLS" wait_until 10 bash -c \
  "[ \"\$(redis-cli --tls --cacert '$C/ca.pem' -p $PORT_plain -n 3 hget '$KEY' hb_ms 2>/dev/null)\" -gt $hb1 ]"
check "a: /readyz is ready" wait_until 10 curl -fsS "http://127.0.0.1:$MP/readyz" -o /dev/null
check "a: the log says connected over TLS" grep -q "event=redis_connected .*addr=tls:127.0.0.1:$PORT_plain db=3" "$T/h1.log"
check "a: status over rediss:// shows it healthy, owned by tls-h1" bash -c \
  "'$DISPATCHD' status --json --redis-url 'rediss://127.0.0.1:$PORT_plain/3' --redis-ca-file '$C/ca.pem' 2>>'$T/cli.log' |
   jq -e --arg w '$W' '.dispatchers[] | select(.workflow_id==\$w) | .state==\"healthy\" and .owner==\"tls-h1\"' >/dev/null"
check "a: a DNS name works too (rediss://localhost: SNI and the name check)" bash -c \
  "'$DISPATCHD' status --redis-url 'rediss://localhost:$PORT_plain/3' --redis-ca-file '$C/ca.pem' 2>>'$T/cli.log' | grep -q '$P/q'"

# the worker takes its TLS options from the environment
DISPATCHD_REDIS_CA_FILE=$C/ca.pem DISPATCHD_REDIS_URL="rediss://127.0.0.1:$PORT_plain/3" \
  "$DISPATCHD" worker --dispatcher "$P/q" --server-id tls-w1 --heartbeat-interval 300ms \
  >"$T/worker.log" 2>&1 &
wpid=$!; track_dd $wpid worker
check "a: a worker registers over TLS (DISPATCHD_REDIS_CA_FILE)" wait_until 15 bash -c \
  "[ \"\$(redis-cli --tls --cacert '$C/ca.pem' -p $PORT_plain -n 3 zscore 'dd:workers:{$W}' tls-w1 2>/dev/null)\" != '' ]"
kill -TERM $wpid
expect_exit $wpid 0
check "a: the worker deregistered" [ "$(cli "$PORT_plain" -n 3 zcard "dd:workers:{$W}")" = 0 ]
# the last will goes over TLS too: kill -9 of the owner alone, its guard (which gets the
# connection settings through the will, TLS files included) stops the child, then makes the
# record stale on the TLS server (docs/ownership.md, "Last will")
r1=$(cli "$PORT_plain" -n 3 hget "$KEY" run_id)
kill -9 $h1
expect_exit $h1 137
check "a: after kill -9 the guard's will reached the TLS server (will_released)" \
  wait_until 15 grep -q "event=will_released .*run_id=$r1 .*mode=expire" "$T/h1.log"
check "a: the will made the record stale (hb_ms 0)" [ "$(cli "$PORT_plain" -n 3 hget "$KEY" hb_ms)" = 0 ]
check "a: status says so (last will, not an age since 1970)" bash -c \
  "'$DISPATCHD' status --redis-url 'rediss://127.0.0.1:$PORT_plain/3' --redis-ca-file '$C/ca.pem' 2>>'$T/cli.log' |
   grep '$P/q' | grep -q 'released .*last will'"
check "a: status --json: released_by_will, no heartbeat age" bash -c \
  "'$DISPATCHD' status --json --redis-url 'rediss://127.0.0.1:$PORT_plain/3' --redis-ca-file '$C/ca.pem' 2>>'$T/cli.log' |
   jq -e --arg w '$W' '.dispatchers[] | select(.workflow_id==\$w) | .released_by_will==true and .state==\"released\" and (has(\"heartbeat_age_ms\")|not)' >/dev/null"
cli "$PORT_plain" -n 3 del "$KEY" >/dev/null

# --- one-shot failures: exit 1, each cause named -------------------------------------------------
# st NAME ARGS...: `dispatchd status` with ARGS; RC and $T/NAME.log
st() {
  local n=$1; shift
  RC=0
  "$DISPATCHD" status "$@" >"$T/$n.out" 2>"$T/$n.log" </dev/null || RC=$?
  echo "# $n: exit $RC: $(head -c 600 "$T/$n.log")"
}
says() { grep -Eqi -- "$1" "$T/$2.log"; }

st b --redis-url "rediss://127.0.0.1:$PORT_plain/0" --redis-ca-file "$C/otherca.pem"
check "b: the wrong CA: exit 1" [ $RC = 1 ]
check "b: named: certificate verification failed, wrong CA, the option to fix" \
  says "TLS: wrong CA: the certificate of 127.0.0.1:$PORT_plain is not signed by a CA we trust .*--redis-ca-file" b

st c --redis-url "rediss://127.0.0.1:$PORT_wrongname/0" --redis-ca-file "$C/ca.pem"
check "c: a certificate for other.test only, reached as 127.0.0.1: exit 1" [ $RC = 1 ]
check "c: named: name mismatch (IP address mismatch)" says "TLS: name mismatch: the certificate of 127.0.0.1:$PORT_wrongname does not name '127.0.0.1' \(certificate verification failed: IP address mismatch" c
st c2 --redis-url "rediss://localhost:$PORT_wrongname/0" --redis-ca-file "$C/ca.pem"
check "c: reached as localhost: named name mismatch (hostname mismatch)" says "TLS: name mismatch: .* does not name 'localhost' \(certificate verification failed: hostname mismatch" c2

st d --redis-url "rediss://127.0.0.1:$PORT_mtls/0" --redis-ca-file "$C/ca.pem"
check "d: mTLS required, no client certificate: exit 1" [ $RC = 1 ]
check "d: named: the server requires a client certificate, none was given, the options" \
  says "TLS: client certificate required: 127.0.0.1:$PORT_mtls asks for one and none was given .*give one with --redis-cert-file and --redis-key-file|TLS: client certificate missing\? 127.0.0.1:$PORT_mtls closed the connection right after the handshake .*give one with --redis-cert-file and --redis-key-file" d

st e --redis-url "rediss://127.0.0.1:$PORT_mtls/0" --redis-ca-file "$C/ca.pem" \
  --redis-cert-file "$C/client.pem" --redis-key-file "$C/client.key"
check "e: mTLS with the client certificate: exit 0" [ $RC = 0 ]
st e2 --redis-url "rediss://127.0.0.1:$PORT_plain/0"
check "e: without --redis-ca-file the system store does not know our CA: exit 1, named" \
  bash -c "[ $RC = 1 ] && grep -q 'wrong CA' '$T/e2.log'"

st f --redis-url "rediss://127.0.0.1:$PORT_plain/0" --redis-ca-file "$T/no-such-ca.pem"
check "f: a missing CA file: exit 2, naming the file" bash -c "[ $RC = 2 ] && grep -q 'no-such-ca.pem' '$T/f.log'"
st g --redis-url "redis://127.0.0.1:$PORT_plain/0" --redis-ca-file "$C/ca.pem"
check "g: TLS files with redis://: exit 2, says rediss://" bash -c "[ $RC = 2 ] && grep -q 'rediss://' '$T/g.log'"
st h --redis-url "redis://127.0.0.1:$PORT_plain/0"
check "h: redis:// against the TLS port fails (exit 1)" [ $RC = 1 ]

# --- a daemon with the wrong CA: not ready, /readyz says why; the right files later work --------
MP2=$(free_port)
"$DISPATCHD" run --dispatcher "$P/q2" --server-id tls-h2 --temporal-url "$U" \
  --redis-url "rediss://127.0.0.1:$PORT_mtls/0" --redis-ca-file "$C/ca.pem" \
  --metrics-listen "127.0.0.1:$MP2" -- sh -c 'trap "exit 0" TERM; while :; do sleep 0.05; done' \
  >"$T/h2.out" 2>"$T/h2.log" &
h2=$!; track_dd $h2 h2
readyz_says() { curl -sS "http://127.0.0.1:$MP2/readyz" 2>/dev/null | grep -q "$1"; }
check "i: a daemon without a client certificate is not ready; /readyz names the cause" \
  wait_until 15 readyz_says "TLS: client certificate \(required\|missing\)"
check "i: its log names it too (redis_unavailable, Permission denied)" \
  grep -Eq 'event=redis_unavailable .*(err="Permission denied".*client certificate required|client certificate missing)' "$T/h2.log"
check "i: it claimed nothing" [ "$(cli "$PORT_mtls" exists "dd:hb:{dispatcher-$P-q2}")" = 0 ]
kill -TERM $h2
expect_exit $h2 0

# --- j. redis:// and unix:// never initialise OpenSSL ----------------------------------------------
# gdb breaks on OpenSSL's initialisers: never reached for a plain URL, reached for rediss://
# (so the check can fail).
if command -v gdb >/dev/null; then
  RP=$(free_port); start_redis "$RP" --unixsocket "$T/redis.sock"
  ssl_init() { # URL [ARGS...]: prints the breakpoint hit if OpenSSL was initialised
    # (LeakSanitizer cannot run under ptrace: off for these runs of the ASan build)
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout 120 gdb -batch -nx -ex 'set breakpoint pending on' -ex 'break OPENSSL_init_ssl' \
      -ex 'break OPENSSL_init_crypto' -ex run --args "$DISPATCHD" status \
      --redis-url "$@" </dev/null 2>&1 | grep -E '^Breakpoint [0-9],' | head -1
  }
  check "j: redis:// does not initialise OpenSSL" [ -z "$(ssl_init "redis://127.0.0.1:$RP/0")" ]
  check "j: unix:// does not initialise OpenSSL" [ -z "$(ssl_init "unix://$T/redis.sock")" ]
  check "j: rediss:// does (the check can see it)" \
    [ -n "$(ssl_init "rediss://127.0.0.1:$PORT_plain/0" --redis-ca-file "$C/ca.pem")" ]
else
  echo "# j: skipped (no gdb)"
fi
