# A child command that can never start, the guard's reports and the log
# stream, and metrics that do not mislead (issue 13 items 4, 10, 11), on the
# real Temporal dev server (the ctest fixture's) and a real redis-server;
# judged with the temporal CLI, redis-cli and /metrics.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
GRPC=$(cat "$DD_FIXTURE_DIR/temporal/grpc")
TEMPORAL=${DD_SOURCE_DIR}/.tools/bin/temporal
[ -x "$TEMPORAL" ] || TEMPORAL=$(command -v temporal)
P=cp$$x$RANDOM
RP=$(free_port); start_redis "$RP"
R=(--redis-url "redis://127.0.0.1:$RP/0")
FAST=(--heartbeat-interval 500ms --stale-threshold 2s)
describe() { "$TEMPORAL" workflow describe --address "$GRPC" --workflow-id "$1" -o json 2>/dev/null; }
record() { redis-cli -p "$RP" exists "dd:hb:{$1}"; }
scrape() { curl -fsS "http://127.0.0.1:$1/metrics"; }
metric() { scrape "$1" | awk -v n="$2" '$1 == n {print $2}'; } # PORT 'name{labels}'
# run_host NAME PORT ARGS... -- CMD: a `dispatchd run` in the background, log in $T/NAME.log
run_host() {
  local name=$1 port=$2; shift 2
  "$DISPATCHD" run --temporal-url "$U" "${R[@]}" "${FAST[@]}" --server-id "$name" \
    --metrics-listen "127.0.0.1:$port" "$@" >"$T/$name.out" 2>"$T/$name.log" &
  HOST_PID=$!
  track_dd $HOST_PID "$name"
}

# --- item 4: a command that cannot start is refused at start (exit 2) ------------------
touch "$T/noexec"
refuse() { # WHAT EXPECT CMD
  local out rc
  # bounded: a dispatchd that does not refuse would run (and restart the command) forever
  set +e; out=$(timeout 30 "$DISPATCHD" run --dispatcher "$P/refused" --temporal-url "$U" \
                "${R[@]}" --metrics-listen off -- "$3" 2>&1); rc=$?; set -e
  check "-- $1: exit 2" [ $rc = 2 ]
  check "-- $1: says why ($2)" grep -q -- "$2" <<<"$out"
}
refuse "a missing path" "no such file" /nonexistent/cmd
refuse "a name not in PATH" "not found in PATH" "nosuchcmd-$$"
refuse "a directory" "it is a directory" "$T"
refuse "a file without x bit" "not an executable file" "$T/noexec"
no_run() { ! describe "$1" >/dev/null; }
check "nothing was started for a refused command" no_run "dispatcher-$P-refused"
set +e; out=$(timeout 30 "$DISPATCHD" run --dispatcher "$P/x" --child-max-restarts -1 -- true 2>&1); rc=$?; set -e
check "--child-max-restarts -1 is refused with exit 2" [ $rc = 2 ]

# --- items 4 and 10: `-- true` on one host: released after the quick exits -------------
M1=$(free_port)
wid1="dispatcher-$P-t"
run_host h1 "$M1" --dispatcher "$P/t" --child-max-restarts 2 -- true
H1=$HOST_PID
wait_until 30 curl -fsS "http://127.0.0.1:$M1/metrics" || fail "h1 serves no /metrics"
# (item 10) from the very first scrape: every outcome the runbook and alerts query
first=$(scrape "$M1")
check "takeovers_total{outcome=\"failed\"} is 0 from the start" \
  grep -qx 'dispatchd_takeovers_total{outcome="failed"} 0' <<<"$first"
check "and so is outcome=\"cancelled\" (a shutdown, not a failure)" \
  grep -qx 'dispatchd_takeovers_total{outcome="cancelled"} 0' <<<"$first"
check "child_up exists from the start" grep -q "^dispatchd_child_up{dispatcher=\"$P/t\"} " <<<"$first"
check "child_restarts_total exists from the start" \
  grep -q "^dispatchd_child_restarts_total{dispatcher=\"$P/t\"} [0-9]" <<<"$first"
wait_until 60 grep -q "event=standing_by" "$T/h1.log" || fail "h1 never released its failing child"
check "the release is logged with the quick exits" \
  grep -q "event=child_failing_released .*quick_exits=3 .*compete_again_in_ms=30000" "$T/h1.log"
check "it restarted twice before (child_restarts_total 2)" \
  [ "$(metric "$M1" "dispatchd_child_restarts_total{dispatcher=\"$P/t\"}")" = 2 ]
check "the release is counted (child_releases_total 1)" \
  [ "$(metric "$M1" "dispatchd_child_releases_total{dispatcher=\"$P/t\"}")" = 1 ]
check "child_up is 0" [ "$(metric "$M1" "dispatchd_child_up{dispatcher=\"$P/t\"}")" = 0 ]
check "dispatcher_owner is 0" [ "$(metric "$M1" "dispatchd_dispatcher_owner{dispatcher=\"$P/t\"}")" = 0 ]
check "the record is gone from Redis" [ "$(record "$wid1")" = 0 ]
d1=$(describe "$wid1")
check "the run was terminated (temporal CLI)" \
  [ "$(jq -r '.workflowExecutionInfo.status' <<<"$d1")" = WORKFLOW_EXECUTION_STATUS_TERMINATED ]
set +e; ready=$(curl -sS -w ' %{http_code}' "http://127.0.0.1:$M1/readyz"); set -e
check "/readyz is 503 while it backs off" [ "${ready##* }" = 503 ]
check "/readyz says why" grep -q "child command kept exiting at once; released" <<<"$ready"
check "h1 does not take it back during its back-off (it logged when it will)" \
  bash -c "! grep -q 'event=failover_attempt' '$T/h1.log'"
# (item 10) the normal 404 of a fresh takeover's describe is not an error
m=$(scrape "$M1")
check "the fresh takeover's describe counts as not_found" \
  grep -Eq '^dispatchd_temporal_calls_total\{op="describe",outcome="not_found"\} [1-9]' <<<"$m"
printf '%s\n' "$m" >"$T/h1.metrics"
check "... and not as an error" bash -c "! grep -q 'op=\"describe\",outcome=\"error\"' '$T/h1.metrics'"
check "the released loss watch counts as cancelled, not error" \
  bash -c "! grep -q 'op=\"wait_close\",outcome=\"error\"' '$T/h1.metrics'"
# (item 10) process_* metrics, read from /proc
pid_start=$(awk '{print $22}' "/proc/$H1/stat")
btime=$(awk '/^btime/{print $2}' /proc/stat)
want_start=$(( btime + pid_start / $(getconf CLK_TCK) ))
got_start=$(awk '$1 == "process_start_time_seconds" {printf "%d", $2}' <<<"$m")
delta=$(( got_start - want_start ))
check "process_start_time_seconds is the process's start ($got_start vs $want_start)" [ "${delta#-}" -le 1 ]
check "process_open_fds is near /proc/PID/fd's count" \
  bash -c "n=\$(ls /proc/$H1/fd | wc -l); g=\$(awk '\$1==\"process_open_fds\"{print \$2}' '$T/h1.metrics'); [ \$((g - n)) -le 3 ] && [ \$((n - g)) -le 3 ]"
check "process_max_fds is the soft limit" \
  [ "$(awk '$1=="process_max_fds"{print $2}' <<<"$m")" = "$(awk '/Max open files/{print $4}' "/proc/$H1/limits")" ]
check "process_resident_memory_bytes, _virtual_memory_bytes, _cpu_seconds_total are there" \
  bash -c "for n in process_resident_memory_bytes process_virtual_memory_bytes process_cpu_seconds_total; do awk -v n=\$n '\$1==n && \$2 >= 0 {f=1} END{exit !f}' '$T/h1.metrics' || exit 1; done"
# (item 10) HELP and TYPE of every exported family are deploy/metrics.txt's
help_matches() {
  python3 - "$DD_SOURCE_DIR/deploy/metrics.txt" "$T/h1.metrics" <<'PY'
import sys
want = {}
for l in open(sys.argv[1]):
    if l.strip() and not l.startswith('#'):
        n, t, lab, h = l.rstrip('\n').split(' ', 3)
        want[n] = (t, h)
bad = 0
for l in open(sys.argv[2]):
    if l.startswith('# HELP '):
        n, h = l[7:].rstrip('\n').split(' ', 1)
        if n not in want:
            print('not in deploy/metrics.txt: ' + n, file=sys.stderr); bad = 1
        elif want[n][1] != h:
            print('HELP of %s differs:\n  live: %s\n  txt:  %s' % (n, h, want[n][1]), file=sys.stderr); bad = 1
    elif l.startswith('# TYPE '):
        n, t = l[7:].split()
        if n in want and want[n][0] != t:
            print('TYPE of %s differs: %s vs %s' % (n, t, want[n][0]), file=sys.stderr); bad = 1
sys.exit(bad)
PY
}
check "every live HELP line equals deploy/metrics.txt" help_matches
check "h1's log is logfmt only" logfmt_lines "$T/h1.log"

# --- item 4: `-- false` on one host, a working command on another: it gets the dispatcher back
# b owns first; a starts later and so takes over (every start does, termination-first);
# a's child fails at once, a releases, and b (a standby now) takes it again.
M2=$(free_port); M3=$(free_port)
wid2="dispatcher-$P-f"
cat >"$T/child.py" <<'EOF'
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("hello from the child", flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)
time.sleep(600)
EOF
run_host b "$M3" --dispatcher "$P/f" -- python3 "$T/child.py"
B=$HOST_PID
wait_until 30 grep -q "event=child_output" "$T/b.log" || fail "b's child did not start"
run_host a "$M2" --dispatcher "$P/f" --child-max-restarts 2 -- false
A=$HOST_PID
wait_until 30 grep -q "event=record_claimed" "$T/a.log" || fail "a did not take over"
check "b stood by when a took over" wait_until 10 grep -q "event=ownership_lost" "$T/b.log"
started_twice() { [ "$(grep -c 'event=child_started' "$T/b.log")" -ge 2 ]; }
wait_until 90 started_twice || fail "b never got the dispatcher back"
check "a released it after its quick exits" grep -q "event=child_failing_released" "$T/a.log"
check "b took over the record" bash -c "[ \"\$(redis-cli -p $RP hget 'dd:hb:{$wid2}' server_id)\" = b ]"
brun=$(sed -n 's/.*event=owning .* run_id=\([^ ]*\) .*/\1/p' "$T/b.log" | tail -1)
d2=$(describe "$wid2")
check "the current run is b's and running (temporal CLI)" \
  [ "$(jq -r '"\(.workflowExecutionInfo.execution.runId) \(.workflowExecutionInfo.status)"' <<<"$d2")" = "$brun WORKFLOW_EXECUTION_STATUS_RUNNING" ]
check "a's run ended 'released by a'" grep -q 'event=terminate .*reason="released by a"' "$T/a.log"
child_up_is() { [ "$(metric "$1" "dispatchd_child_up{dispatcher=\"$P/f\"}")" = "$2" ]; }
check "b's child is up (child_up 1)" wait_until 10 child_up_is "$M3" 1
set +e; ready=$(curl -sS -w ' %{http_code}' "http://127.0.0.1:$M2/readyz"); set -e
check "a's /readyz is 503 while it backs off" [ "${ready##* }" = 503 ]

# --- item 11: the child's output is logged line by line, as logfmt --------------------
check "the child's stdout is one child_output line" \
  wait_until 10 grep -q 'event=child_output .*stream=stdout line="hello from the child"' "$T/b.log"
check "the child's stderr is one child_output line" \
  grep -q 'event=child_output .*stream=stderr line="a warning on stderr"' "$T/b.log"
check "nothing of the child reaches dispatchd's stdout" [ ! -s "$T/b.out" ]

# --- item 11: a clean exit 0 after a stop request is reported as 0 ----------------------
kill -TERM "$B"
expect_exit "$B" 0
check "the guard reports the command's exit 0" \
  grep -q "event=guard_command_exited .*exit_status=0 signal=0" "$T/b.log"
check "dispatchd reports exit_status=0 (not 143)" \
  grep -q "event=child_exited .*exit_status=0 signal=0 .*requested=true" "$T/b.log"
check "the guard said it was asked to stop" grep -q 'event=guard_stopping .*reason="asked to stop (SIGTERM)"' "$T/b.log"
check "b's log is logfmt only (guard lines and child output included)" logfmt_lines "$T/b.log"

# --- item 11: after kill -9 of dispatchd, the guard says what happened -------------------
M4=$(free_port)
run_host c "$M4" --dispatcher "$P/k" -- python3 "$T/child.py"
C=$HOST_PID
wait_until 30 grep -q "event=child_output" "$T/c.log" || fail "c's child did not start"
kill -9 "$C"
expect_exit "$C" 137
check "the guard stops the command" wait_until 10 grep -q "event=guard_command_exited" "$T/c.log"
check "the guard does not claim it was asked to stop" bash -c "! grep -q 'asked to stop' '$T/c.log'"
check "the guard says dispatchd is gone" grep -q 'event=guard_stopping .*reason=".*dispatchd' "$T/c.log"
check "c's log is logfmt only" logfmt_lines "$T/c.log"
# kill -9 left c's run and record; the default reconciler interval would take a minute
"$TEMPORAL" workflow terminate --address "$GRPC" --workflow-id "dispatcher-$P-k" --reason "test cleanup" >/dev/null 2>&1 || true

kill -TERM "$A" "$H1"
expect_exit "$A" 0
expect_exit "$H1" 0
check "a's log is logfmt only" logfmt_lines "$T/a.log"
