# TLS to Temporal, for real: certificates made here with openssl, a
# TLS-terminating proxy (tests/support/tls_proxy.py, python3 stdlib) in front
# of the fixture's Temporal dev server, and the real CLI making one call
# (`dispatchd takeover`). Covers server verification (our CA, no CA, a wrong
# CA, a name mismatch), mTLS (required client certificate missing, wrong,
# given) and missing files.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
UPSTREAM=${U#http://}
NS=default
PROXY=$DD_SOURCE_DIR/tests/support/tls_proxy.py
P=tls$$x$RANDOM
C=$T/certs
mkdir -p "$C"

# --- certificates ----------------------------------------------------------------------
CERT_DIR=$C
. "$DD_SOURCE_DIR/tests/support/certs.sh"
{ new_ca ca && new_ca otherca &&
  new_cert server ca "IP:127.0.0.1,DNS:localhost" serverAuth &&
  new_cert wrongname ca "DNS:other.test" serverAuth &&
  new_cert client ca "DNS:dispatchd-test-client" clientAuth &&
  new_cert strayclient otherca "DNS:dispatchd-test-client" clientAuth; } || fail "certificates"
cat "$C/client.pem" "$C/client.key" >"$C/client-combined.pem"
ok "certificates generated (CA, other CA, server, wrong-name server, client, stray client)"

# --- proxies -----------------------------------------------------------------------------
# start_proxy NAME ARGS...: sets PORT_<NAME>
start_proxy() {
  local name=$1; shift
  python3 "$PROXY" --upstream "$UPSTREAM" --port-file "$T/$name.port" "$@" \
    >"$T/proxy-$name.out" 2>"$T/proxy-$name.log" &
  track $!
  wait_until 10 test -s "$T/$name.port" || fail "proxy $name did not start"
  printf -v "PORT_$name" '%s' "$(cat "$T/$name.port")"
}
start_proxy plain --cert "$C/server.pem" --key "$C/server.key"
start_proxy mtls --cert "$C/server.pem" --key "$C/server.key" --client-ca "$C/ca.pem"
start_proxy wrongname --cert "$C/wrongname.pem" --key "$C/wrongname.key"
# the proxy itself works (curl as an independent client)
check "proxy serves Temporal over TLS" \
  curl -fsS --cacert "$C/ca.pem" "https://127.0.0.1:$PORT_plain/api/v1/namespaces/$NS" -o /dev/null
check "mTLS proxy serves Temporal with a client certificate" \
  curl -fsS --cacert "$C/ca.pem" --cert "$C/client.pem" --key "$C/client.key" \
  "https://127.0.0.1:$PORT_mtls/api/v1/namespaces/$NS" -o /dev/null

# --- helpers -------------------------------------------------------------------------------
# tk QUEUE ARGS...: one takeover of ($P, QUEUE) (queue names without '-', which the
# workflow id would escape); stdout in $T/QUEUE.out, stderr in
# $T/QUEUE.log; sets RC and MS (wall time).
tk() {
  local q=$1; shift
  local t0; t0=$(date +%s%N)
  RC=0
  "$DISPATCHD" takeover "$P" "$q" --server-id tls-test --temporal-timeout 3s "$@" \
    >"$T/$q.out" 2>"$T/$q.log" </dev/null || RC=$?
  MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "# $q: exit $RC in $MS ms; stderr: $(tr '\n' ' ' <"$T/$q.log" | cut -c1-400)"
}
# started Q: the takeover printed outcome "started" and the run really is running
started() {
  local q=$1 out wid rid st
  out=$(cat "$T/$q.out")
  [ "$(jq -r .outcome <<<"$out" 2>/dev/null)" = started ] || return 1
  # the workflow id as printed is already escaped for Temporal; escape it once more for the URL
  wid=$(jq -r '.workflow_id | @uri' <<<"$out"); rid=$(jq -r .run_id <<<"$out")
  [ -n "$rid" ] && [ "$rid" != null ] || return 1
  st=$(curl -fsS "$U/api/v1/namespaces/$NS/workflows/$wid?execution.runId=$rid" |
    jq -r .workflowExecutionInfo.status)
  [ "$st" = WORKFLOW_EXECUTION_STATUS_RUNNING ]
}
# not_started Q: no workflow of that queue exists
not_started() {
  ! curl -fsS "$U/api/v1/namespaces/$NS/workflows/dispatcher-$P-$1" >/dev/null 2>&1
}
says() { grep -Eqi -- "$1" "$T/$2.log"; }
fast() { [ "$MS" -lt "${1:-5000}" ]; }
VERIFY='certificate.*verif|verif.*certificate'

# --- a. https with our CA ------------------------------------------------------------------
tk aok --temporal-url "https://127.0.0.1:$PORT_plain" --temporal-ca-file "$C/ca.pem"
check "a: https with --temporal-ca-file succeeds" [ $RC -eq 0 ]
check "a: the workflow was really started (JSON + describe over plain HTTP)" started aok
tk alocalhost --temporal-url "https://localhost:$PORT_plain" --temporal-ca-file "$C/ca.pem"
check "a: https://localhost (DNS name in the SAN) succeeds" [ $RC -eq 0 ]
check "a: and started its workflow" started alocalhost

# --- b. no CA file: the system store does not know our CA --------------------------------
tk bnoca --temporal-url "https://127.0.0.1:$PORT_plain"
check "b: without --temporal-ca-file it fails" [ $RC -ne 0 ]
check "b: stderr mentions certificate verification" says "$VERIFY" bnoca
check "b: it fails fast, not retried until the deadline (< 5 s)" fast 5000
check "b: no workflow was started" not_started bnoca

# --- c. the wrong CA -------------------------------------------------------------------
tk cotherca --temporal-url "https://127.0.0.1:$PORT_plain" --temporal-ca-file "$C/otherca.pem"
check "c: an unrelated CA fails" [ $RC -ne 0 ]
check "c: stderr mentions certificate verification" says "$VERIFY" cotherca
check "c: it fails fast (< 5 s)" fast 5000
check "c: no workflow was started" not_started cotherca

# --- d. mTLS -------------------------------------------------------------------------------
tk dnocert --temporal-url "https://127.0.0.1:$PORT_mtls" --temporal-ca-file "$C/ca.pem"
check "d: a required client certificate missing: it fails" [ $RC -ne 0 ]
check "d: and says a certificate is the problem" says 'certificate' dnocert
check "d: it fails fast (< 5 s)" fast 5000
check "d: no workflow was started" not_started dnocert
tk dstray --temporal-url "https://127.0.0.1:$PORT_mtls" --temporal-ca-file "$C/ca.pem" \
  --temporal-cert-file "$C/strayclient.pem" --temporal-key-file "$C/strayclient.key"
check "d: a client certificate from another CA: it fails" [ $RC -ne 0 ]
check "d: and says a certificate is the problem" says 'certificate|unknown ca' dstray
check "d: no workflow was started" not_started dstray
tk dcert --temporal-url "https://127.0.0.1:$PORT_mtls" --temporal-ca-file "$C/ca.pem" \
  --temporal-cert-file "$C/client.pem" --temporal-key-file "$C/client.key"
check "d: with --temporal-cert-file and --temporal-key-file it succeeds" [ $RC -eq 0 ]
check "d: and the workflow was really started" started dcert
tk dcombined --temporal-url "https://127.0.0.1:$PORT_mtls" --temporal-ca-file "$C/ca.pem" \
  --temporal-cert-file "$C/client-combined.pem"
check "d: certificate and key in one file (no --temporal-key-file) succeeds" [ $RC -eq 0 ]
check "d: and the workflow was really started" started dcombined

# --- e. the server certificate names another host ------------------------------------------
tk ename --temporal-url "https://127.0.0.1:$PORT_wrongname" --temporal-ca-file "$C/ca.pem"
check "e: a certificate for other.test only fails for 127.0.0.1" [ $RC -ne 0 ]
check "e: stderr is about the host name / verification" \
  says 'host ?name|mismatch|does not match|verif' ename
check "e: it fails fast (< 5 s)" fast 5000
check "e: no workflow was started" not_started ename

# --- f. missing files ----------------------------------------------------------------------
for opt in cert key ca; do
  missing=$T/no-such-$opt-file.pem
  args=(--temporal-url "https://127.0.0.1:$PORT_mtls" --temporal-ca-file "$C/ca.pem"
        --temporal-cert-file "$C/client.pem" --temporal-key-file "$C/client.key")
  case $opt in
  cert) args[5]=$missing ;;
  key) args[7]=$missing ;;
  ca) args[3]=$missing ;;
  esac
  tk "f$opt" "${args[@]}"
  check "f: --temporal-$opt-file missing: it fails" [ $RC -ne 0 ]
  check "f: --temporal-$opt-file missing: the message names the file" says "no-such-$opt-file\.pem" "f$opt"
  check "f: --temporal-$opt-file missing: it fails at once (< 3 s)" fast 3000
  check "f: --temporal-$opt-file missing: no workflow was started" not_started "f$opt"
done

# the proxies are still up (no case above killed one): the failures were the client's verdicts
check "proxies are still running" curl -fsS --cacert "$C/ca.pem" \
  "https://127.0.0.1:$PORT_plain/api/v1/namespaces/$NS" -o /dev/null
