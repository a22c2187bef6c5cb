# lib.sh - shared helpers for the bash end-to-end tests.
# Every test gets its own state dir and ports; the EXIT trap stops whatever
# the test started (dispatchd processes and any server carrying our state
# dir on its command line), also when an assertion fails.
set -euo pipefail

DISPATCHD=${DISPATCHD:?set by ctest}
T=$(mktemp -d /tmp/dd-test.XXXXXX)
PASSED=0
FAILED=0

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

PIDS=()
track() { PIDS+=("$1"); }

# start_redis PORT [extra args]: a throwaway redis-server, stopped by cleanup.
start_redis() {
  local port=$1; shift
  mkdir -p "$T/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$T/redis-$port" --loglevel warning "$@" >"$T/redis-$port.log" 2>&1 &
  track $!
  wait_until 5 redis-cli -p "$port" ping || fail "redis on $port did not start"
}

cleanup() {
  local rc=$?
  # TERM first so a dispatchd's guard stops its child; then KILL what is left.
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # dispatchd up first (it stops its children), then anything of ours left.
  pkill -TERM -f -- "--state-dir $T" 2>/dev/null || true
  for _ in $(seq 1 50); do pgrep -f -- "$T" >/dev/null || break; sleep 0.1; done
  pkill -KILL -f -- "$T" 2>/dev/null || true
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
