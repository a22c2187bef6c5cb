# End-to-end tests of `dispatchd stack start|stop|status` against real
# redis-server and Temporal dev server processes.
source "$(dirname "$0")/lib.sh"

RP=$(free_port); TP=$(free_port); HP=$(free_port)
S=$T/state
O=(--state-dir "$S" --redis-port "$RP" --temporal-port "$TP" --temporal-http-port "$HP")
dd() { "$DISPATCHD" stack "$@" "${O[@]}"; }

# --- bad input ----------------------------------------------------------
set +e
out=$("$DISPATCHD" stack start nosuch "${O[@]}" 2>&1); rc=$?
set -e
check "unknown service is refused with exit 2" [ $rc -eq 2 ]
check "unknown service is named" grep -q "unknown service 'nosuch'" <<<"$out"
set +e; out=$("$DISPATCHD" stack start --bogus 2>&1); rc=$?; set -e
check "unknown flag is refused with exit 2" [ $rc -eq 2 ]
check "unknown flag is named" grep -q "unknown option '--bogus'" <<<"$out"
set +e; out=$("$DISPATCHD" stack frob 2>&1); rc=$?; set -e
check "unknown action is refused" [ $rc -eq 2 ]
set +e; out=$("$DISPATCHD" stack start temporal "${O[@]}" --temporal-bin /nonexistent/temporal 2>&1); rc=$?; set -e
check "missing temporal CLI fails" [ $rc -ne 0 ]
check "missing temporal CLI says how to install it" grep -q "install-deps.sh" <<<"$out"
set +e; out=$("$DISPATCHD" stack start redis --state-dir /dev/null/x --redis-port "$RP" 2>&1); rc=$?; set -e
check "unwritable state dir fails" [ $rc -ne 0 ]
check "unwritable state dir is named" grep -q "state dir '/dev/null/x' is not writable" <<<"$out"
set +e; out=$("$DISPATCHD" stack start redis "${O[@]}" --redis-port 0 2>&1); rc=$?; set -e
check "port 0 is refused" [ $rc -eq 2 ]

# --- port taken by a foreign process ------------------------------------
hold_port "$RP"
squatter=$HOLDER
set +e; out=$(dd start redis 2>&1); rc=$?; set -e
check "port taken by a foreign process is bad input: exit 2" [ $rc -eq 2 ]
check "the taken port is named" grep -q "port $RP on 127.0.0.1 is already in use by pid $squatter" <<<"$out"
check "the squatter was not touched" kill -0 $squatter
kill $squatter; wait $squatter 2>/dev/null || true
check "no status file is left after the refused start" [ ! -e "$S/redis.status" ]

# --- the Temporal port taken: the whole start is refused (issue 13 item 3) ----
# Both services asked for, Temporal's gRPC port held by a stranger: exit 2
# (no abort), the port and its option named, and redis not started either.
hold_port "$TP"
squatter=$HOLDER
set +e; out=$(dd start 2>&1); rc=$?; set -e
check "temporal port taken: exit 2, not an abort (was 134)" [ $rc -eq 2 ]
check "temporal port taken: the port and the option are named" \
  grep -q "temporal: port $TP on 127.0.0.1 is already in use by pid $squatter.*--temporal-port" <<<"$out"
check "temporal port taken: nothing was started" grep -q "nothing was started" <<<"$out"
check "temporal port taken: no redis-server left running" [ "$(pgrep -fc "redis-server 127.0.0.1:$RP" || true)" = 0 ]
check "temporal port taken: no status files left" [ ! -e "$S/redis.status" ] && [ ! -e "$S/temporal.status" ]
check "temporal port taken: the squatter was not touched" kill -0 $squatter
kill $squatter; wait $squatter 2>/dev/null || true
# The same when the port is taken only after the start began (the check
# before spawning passed): a redis wrapper takes Temporal's HTTP port, then
# becomes redis-server. The start must still exit 2 and stop the redis it
# started (before the fix: uv_close assertion, rc 134, redis left running).
cat >"$T/redis-squat" <<WRAP
#!/usr/bin/env bash
python3 -c "import socket,time,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',$HP)); s.listen(); open(sys.argv[1],'w').write('1'); time.sleep(60)" "$T/squat.ready" &
for _ in \$(seq 1 100); do [ -e "$T/squat.ready" ] && break; sleep 0.05; done
exec redis-server "\$@"
WRAP
chmod +x "$T/redis-squat"
set +e; out=$(dd start --redis-bin "$T/redis-squat" 2>&1); rc=$?; set -e
check "port taken during the start: exit 2, not an abort" [ $rc -eq 2 ]
check "port taken during the start: the port is named" grep -q "port $HP on 127.0.0.1 is already in use" <<<"$out"
check "port taken during the start: the redis it started is stopped again" grep -q "redis: stopping it again" <<<"$out"
no_redis() { [ "$(pgrep -fc "redis-server 127.0.0.1:$RP" || true)" = 0 ]; }
check "port taken during the start: no redis-server left running" wait_until 5 no_redis
check "port taken during the start: no status files left" [ ! -e "$S/redis.status" ] && [ ! -e "$S/temporal.status" ]
rm -f "$T/squat.ready"

# --- start, idempotent start, status --------------------------------------
dd start >/dev/null
check "redis answers after start" redis_ping "$RP"
check "temporal answers after start" temporal_ok "$HP"
rpid=$(status_pid "$S" redis)
check "redis runs in its own session" [ "$(ps -o sid= -p "$rpid" | tr -d ' ')" = "$rpid" ]
check "redis holds its lock file as fd 3" [ "$(readlink /proc/$rpid/fd/3)" = "$S/redis.lock" ]
out=$(dd start)
check "second start says already running" grep -q "redis: already running (pid $rpid)" <<<"$out"
check "second start did not start another redis" [ "$(pgrep -fc "redis-server 127.0.0.1:$RP")" = 1 ]
js=$(dd status --json)
check "status --json: redis healthy with pid and ports" \
  [ "$(jq -r '.services[] | select(.name=="redis") | "\(.healthy) \(.pid) \(.ports[0])"' <<<"$js")" = "true $rpid $RP" ]
check "status --json: temporal healthy with uptime" \
  jq -e '.services[] | select(.name=="temporal") | .healthy and (.uptime_s >= 0)' <<<"$js"

# --- status with only --state-dir: the ports come from the status files (item 6)
set +e; out=$("$DISPATCHD" stack status --state-dir "$S" 2>&1); rc=$?; set -e
check "status --state-dir without ports: exit 0 for a healthy stack" [ $rc -eq 0 ]
check "status --state-dir without ports: redis healthy on its recorded port" \
  grep -q "^redis .*healthy .*redis://127.0.0.1:$RP" <<<"$out"
check "status --state-dir without ports: temporal healthy on its recorded ports" \
  grep -q "^temporal .*healthy .*http://127.0.0.1:$HP (grpc 127.0.0.1:$TP)" <<<"$out"
js=$("$DISPATCHD" stack status --json --state-dir "$S")
check "status --json --state-dir without ports: the recorded ports" \
  [ "$(jq -r '[.services[] | "\(.name)=\(.healthy):\(.ports|join(","))"] | join(" ")' <<<"$js")" = "redis=true:$RP temporal=true:$HP,$TP" ]
out=$("$DISPATCHD" stack start --state-dir "$S" 2>&1)
check "start --state-dir without ports: already running on the recorded ports" \
  grep -q "redis: already running (pid $rpid) at redis://127.0.0.1:$RP" <<<"$out"
OP=$(free_port)
set +e; out=$("$DISPATCHD" stack status redis --state-dir "$S" --redis-port "$OP" 2>&1); rc=$?; set -e
check "status with another --redis-port: DOWN, exit 1" [ $rc -eq 1 ]
check "status with another --redis-port: points at the recorded port" \
  grep -q "its status file says it runs on port $RP, not $OP" <<<"$out"

# --- identity: a hung server is alive but not healthy ------------------------
kill -STOP "$rpid"
set +e; out=$(dd status redis); rc=$?; set -e
check "stopped (hung) redis is reported unhealthy" [ $rc -eq 1 ]
check "the reason is the probe" grep -q "does not answer" <<<"$out"
kill -CONT "$rpid"

# --- stop leaves nothing behind -----------------------------------------------
dd stop >/dev/null
check "no redis left after stop" [ "$(pgrep -fc "redis-server 127.0.0.1:$RP" || true)" = 0 ]
check "no temporal left after stop" [ "$(pgrep -fc -- "$S/temporal/temporal.db" || true)" = 0 ]
check "status files removed" [ ! -e "$S/redis.status" ] && [ ! -e "$S/temporal.status" ]
set +e; dd status >/dev/null; rc=$?; set -e
check "status after stop exits 1" [ $rc -eq 1 ]
out=$(dd stop)
check "stop of a stopped stack is a no-op" grep -q "redis: not running" <<<"$out"

# --- grandchildren die with the group ---------------------------------------------
cat >"$T/redis-wrapper" <<WRAP
#!/usr/bin/env bash
# forks a grandchild, then becomes redis-server
sleep 300 &
echo \$! > "$T/grandchild.pid"
exec redis-server "\$@"
WRAP
chmod +x "$T/redis-wrapper"
dd start redis --redis-bin "$T/redis-wrapper" >/dev/null
gc=$(cat "$T/grandchild.pid")
check "grandchild is running" kill -0 "$gc"
dd stop redis >/dev/null
check "grandchild is gone after stop" wait_until 3 bash -c "! kill -0 $gc 2>/dev/null"

# --- crash leftovers: stale status file and a foreign pid ------------------------------
sleep 300 &
foreign=$!; track $foreign
dd start redis >/dev/null
real=$(status_pid "$S" redis)
kill -9 "$real"
wait_until 3 bash -c "! redis-cli -p $RP ping" || true
# Forge the crash leftover so it names a live foreign process: same pid field
# as the foreign sleep, but the recorded start time is redis' (PID reuse).
jq --argjson p "$foreign" '.pid = $p' "$S/redis.status" >"$S/redis.status.x" && mv "$S/redis.status.x" "$S/redis.status"
set +e; out=$(dd status redis); rc=$?; set -e
check "a status file naming a foreign live pid is not healthy" [ $rc -eq 1 ]
check "it is reported as a crash leftover" grep -q "not running" <<<"$out"
dd start redis >/dev/null 2>"$T/restart.err"
check "start after a crash cleans up and starts" redis_ping "$RP"
check "the cleanup is logged with the old pid, as logfmt" \
  grep -Eq "event=stale_state_cleanup .*old_pid=$foreign corrupt=false" "$T/restart.err"
check "start's log is well-formed logfmt" logfmt_lines "$T/restart.err"
check "the foreign process was not killed" kill -0 "$foreign"
kill "$foreign"

# --- corrupt status file ---------------------------------------------------------------
dd stop redis >/dev/null
echo '{"service": "redis", "pid": ' >"$S/redis.status"
set +e; out=$(dd status redis 2>&1); rc=$?; set -e
check "a corrupt status file makes status exit 1" [ $rc -eq 1 ]
check "corrupt status file is reported" grep -q "status file '$S/redis.status' is corrupt" <<<"$out"
dd start redis >/dev/null 2>"$T/corrupt.err"
check "start replaces a corrupt status file" jq -e .pid "$S/redis.status"
check "a corrupt leftover is logged as such" grep -q 'event=stale_state_cleanup .*corrupt=true' "$T/corrupt.err"
check "that log is well-formed logfmt" logfmt_lines "$T/corrupt.err"

# --- racing starts from two terminals ----------------------------------------------------
dd stop >/dev/null
racers=()
for i in 1 2 3; do
  dd start redis >"$T/race.$i" 2>&1 &
  racers+=($!); track_dd $! "stack start racer $i"
done
for p in "${racers[@]}"; do expect_exit "$p" 0; done
check "racing starts: exactly one redis-server" [ "$(pgrep -fc "redis-server 127.0.0.1:$RP")" = 1 ]
check "racing starts: exactly one says started" [ "$(cat "$T"/race.* | grep -c 'redis: started')" = 1 ]
check "racing starts: the others say already running" [ "$(cat "$T"/race.* | grep -c 'already running')" = 2 ]
dd stop >/dev/null
