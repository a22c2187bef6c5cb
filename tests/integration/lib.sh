# lib.sh - shared helpers for the bash end-to-end tests.
# Every test gets its own state dir and ports; the EXIT trap stops whatever
# the test started (dispatchd processes and any server carrying our state
# dir on its command line), also when an assertion fails.
#
# Exit statuses and sanitizer reports: a test says what it expects of every
# dispatchd it starts in the background (track_dd PID NAME). One the test
# ends itself is checked by expect_exit PID CODE; one still running at the
# end is stopped by cleanup with TERM and must exit 0 (a clean shutdown;
# under ASan a leak turns that into a non-zero status). A tracked dispatchd
# that died on its own, exited with another status or ignored TERM fails the
# test, and so does any sanitizer report in any file under $T: every process
# started from here writes its reports to $T/sanitizer.PID (log_path below),
# wherever its stderr went.
set -euo pipefail

DISPATCHD=${DISPATCHD:?set by ctest}
T=$(mktemp -d "${TMPDIR:-/tmp}/dd-test.XXXXXX")
PASSED=0
FAILED=0
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$T/sanitizer"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T/sanitizer"
# Text that only a sanitizer writes (grep -E).
SANITIZER_RE='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:'

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

PIDS=()
declare -A DDS=()    # tracked dispatchd: pid -> name
declare -A EXITED=() # pid -> exit status, once expect_exit reaped it
# track PID: a helper (redis-server, a proxy, a port holder); cleanup stops it,
# its exit status does not matter.
track() { PIDS+=("$1"); }
# track_dd PID [NAME]: a dispatchd started in the background (see above).
track_dd() { PIDS+=("$1"); DDS[$1]=${2:-dispatchd}; }

# gone PID: the process has exited (gone, or a zombie not reaped yet).
gone() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 0
  [ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}

# expect_exit PID CODE [SECONDS]: the process (one this shell started) exits
# with CODE within SECONDS (default 30; 128+N for signal N: 137 after kill -9,
# 143 for an unhandled TERM). Counts as a check. Fails the test otherwise; a
# process still running then is killed.
expect_exit() {
  local pid=$1 want=$2 t=${3:-30} rc=0 name=${DDS[$1]:-process}
  if ! wait_until "$t" gone "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    EXITED[$pid]=killed
    fail "$name (pid $pid) did not exit within $t s (expected exit $want); killed"
  fi
  wait "$pid" 2>/dev/null || rc=$?
  EXITED[$pid]=$rc
  if [ "$rc" = "$want" ]; then ok "$name (pid $pid) exited $rc"; else fail "$name (pid $pid) exited $rc, expected $want"; fi
}

# start_redis PORT [extra args]: a throwaway redis-server, stopped by cleanup.
start_redis() {
  local port=$1; shift
  mkdir -p "$T/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$T/redis-$port" --loglevel warning "$@" >"$T/redis-$port.log" 2>&1 &
  track $!
  wait_until 15 redis-cli -p "$port" ping || fail "redis on $port did not start within 15 s"
}

# sanitizer_reports: prints every file under $T with a sanitizer report (and
# the report); true when there was one.
sanitizer_reports() {
  local f found=1
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    found=0
    echo "--- sanitizer report in ${f#"$T"/}:" >&2
    grep -E -B2 -A60 -- "$SANITIZER_RE" "$f" | head -n 200 >&2
  done < <(grep -rlIE -- "$SANITIZER_RE" "$T" 2>/dev/null || true)
  return $found
}

cleanup() {
  local rc=$? p st bad=0
  set +e
  trap - EXIT
  # A tracked dispatchd that is gone although nobody expected its exit died
  # on its own during the test.
  local alive=()
  for p in "${!DDS[@]}"; do
    [ -n "${EXITED[$p]+x}" ] && continue
    if gone "$p"; then
      wait "$p" 2>/dev/null; st=$?
      echo "FAIL - ${DDS[$p]} (pid $p) exited $st on its own during the test" >&2
      EXITED[$p]=$st; bad=1
    else
      alive+=("$p")
    fi
  done
  # TERM first so a dispatchd's guard stops its child; then KILL what is
  # left. CONT in case a test stopped one (a stopped process ignores TERM).
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 1 150); do
    local n=0
    for p in "${PIDS[@]}"; do gone "$p" || n=1; done
    [ $n = 0 ] && break
    sleep 0.1
  done
  local killed=" "
  for p in "${PIDS[@]}"; do gone "$p" || { kill -KILL "$p" 2>/dev/null; killed+="$p "; }; done
  for p in "${alive[@]}"; do
    wait "$p" 2>/dev/null; st=$?
    if [[ "$killed" == *" $p "* ]]; then
      echo "FAIL - ${DDS[$p]} (pid $p) did not exit within 15 s of TERM" >&2; bad=1
    elif [ "$st" != 0 ]; then
      echo "FAIL - ${DDS[$p]} (pid $p) exited $st after the final TERM (expected 0)" >&2; bad=1
    fi
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  # dispatchd up first (it stops its children), then anything of ours left.
  pkill -TERM -f -- "--state-dir $T" 2>/dev/null
  for _ in $(seq 1 50); do pgrep -f -- "$T" >/dev/null || break; sleep 0.1; done
  pkill -KILL -f -- "$T" 2>/dev/null
  if sanitizer_reports; then
    echo "FAIL - a sanitizer reported an error (above)" >&2; bad=1
  fi
  if [ $bad = 1 ]; then
    FAILED=$((FAILED + 1))
    for f in "$T"/*.log "$T"/*.out; do
      [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  rm -rf "$T"
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && exit "$rc" || exit 1
}
trap cleanup EXIT

ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() {
  FAILED=$((FAILED + 1)); echo "FAIL - $*" >&2
  # What the processes said, for whoever reads a CI log.
  for f in "$T"/*.log "$T"/*.out; do
    [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 60 "$f" >&2; }
  done
  exit 1
}
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

# wait_until TIMEOUT_S CMD...: retries CMD every 50 ms
wait_until() {
  local t=$1; shift
  local end=$(( $(date +%s%N) + t * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}

# hold_port PORT: a foreign process listening on 127.0.0.1:PORT (tracked, so
# cleanup stops it); its pid is in HOLDER. Returns once the port listens.
hold_port() {
  python3 -c "import socket,time,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',int(sys.argv[1]))); s.listen(); time.sleep(60)" "$1" "$T" &
  HOLDER=$!
  track $HOLDER
  wait_until 5 bash -c "ss -ltn | grep -q ':$1 '" || fail "could not hold port $1"
}

redis_ping() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; }
temporal_ok() { curl -fsS "http://127.0.0.1:$1/api/v1/system-info" >/dev/null; }
status_pid() { jq -r .pid "$1/$2.status" 2>/dev/null; }
now_us() { echo $(( $(date +%s%N) / 1000 )); }

# logfmt_lines FILE: every line of FILE is one well-formed logfmt line
# (ts=... first; key=value pairs, values bare or fully quoted with escapes).
# Prints the first offending lines; true when there are none.
logfmt_lines() {
  python3 - "$1" <<'PY'
import re, sys
pair = r'[a-z_][a-z0-9_.]*=(?:"(?:\\.|[^"\\])*"|[^\s"=\\]+)'
ok = re.compile(r'^ts=\S+(?: ' + pair + r')+$')
bad = [l.rstrip('\n') for l in open(sys.argv[1], errors='replace') if not ok.match(l.rstrip('\n'))]
for l in bad[:5]:
    print('not logfmt: ' + l[:300], file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}
