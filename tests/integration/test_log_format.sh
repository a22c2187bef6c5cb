# --log-format logfmt|json (env DISPATCHD_LOG_FORMAT): a whole `dispatchd run`
# (take over, own with a child command, release on SIGTERM) logs one valid
# record per line in either format: every line of its stderr parses, with
# ts, level and event, and both runs log the same events. The child's own
# lines reach the stream as event=child_output records (relayed by its guard,
# which logs in the same format), never raw. A bad value is exit 2 with the
# reason.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
P=lf$$x$RANDOM
# the child writes its lines to dispatchd's stderr (fd 3); its shell's own
# notes ("Terminated") go nowhere
child='exec 3>&2 2>/dev/null; i=0; trap "exit 0" TERM; while :; do i=$((i+1)); echo "child-line $i" >&3; sleep 0.05; done'
run_fmt() { # run_fmt NAME QUEUE [env...] -- [flags...]
  local name=$1 q=$2; shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" "$DISPATCHD" run --dispatcher "$P/$q" --temporal-url "$U" \
    --redis-url "redis://127.0.0.1:$RP/0" --server-id "$name" --heartbeat-interval 300ms \
    --stale-threshold 1200ms --metrics-listen 127.0.0.1:0 "$@" -- sh -c "$child" \
    >"$T/$name.out" 2>"$T/$name.log" &
}
# check_lines FORMAT FILE: every line is a record (the child's and its guard's
# lines included); prints the events in order
check_lines() {
  python3 - "$1" "$2" <<'PY'
import json, re, sys
fmt, path = sys.argv[1], sys.argv[2]
pair = r'[A-Za-z0-9_.]+=(?:"(?:[^"\\]|\\.)*"|[^ "=]*)'
logfmt = re.compile(r'^%s(?: %s)*$' % (pair, pair))
bad, events, child = [], [], 0
for n, line in enumerate(open(path, encoding="utf-8", errors="strict").read().splitlines(), 1):
    if fmt == "json":
        try:
            rec = json.loads(line)
            ok = isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("ts", "level", "event"))
        except ValueError:
            ok = False
        if ok:
            events.append(rec["event"])
    else:
        ok = bool(logfmt.match(line)) and re.match(r"ts=\S+ level=\S+ event=\S+", line) is not None
        if ok:
            events.append(re.match(r"ts=\S+ level=\S+ event=(\S+)", line).group(1))
    if not ok:
        bad.append("%d: %s" % (n, line))
if bad:
    print("not a %s record:\n  %s" % (fmt, "\n  ".join(bad[:10])), file=sys.stderr)
    sys.exit(1)
child = sum(1 for e in events if e == "child_output" or e.startswith("guard_"))
print("# %s: %d records, %d of them the child's lines and its guard's" % (fmt, len(events), child), file=sys.stderr)
print(" ".join(events))
PY
}

run_fmt json q DISPATCHD_LOG_FORMAT=json --
J=$!; track_dd $J json
run_fmt logfmt r DISPATCHD_LOG_FORMAT=json -- --log-format logfmt # the flag wins
L=$!; track_dd $L logfmt
check "json: owns" wait_until 30 grep -q '"event":"owning"' "$T/json.log"
check "logfmt: owns" wait_until 30 grep -q 'event=owning' "$T/logfmt.log"
check "json: the child's line arrives as a child_output record" \
  wait_until 10 grep -q '"event":"child_output".*"line":"child-line 3"' "$T/json.log"
check "logfmt: the child's line arrives as a child_output record" \
  wait_until 10 grep -q 'event=child_output .*line="child-line 3"' "$T/logfmt.log"
kill -TERM $J $L
expect_exit $J 0 60
expect_exit $L 0 60
je=$(check_lines json "$T/json.log") || fail "json: a line is not one JSON record (above)"
ok "json: every line is one JSON record with ts, level, event (the child's and its guard's too)"
le=$(check_lines logfmt "$T/logfmt.log") || fail "logfmt: a line is not one logfmt record (above)"
ok "logfmt: every line is one logfmt record (the child's and its guard's too)"
for e in started owning record_claimed shutdown_requested stopped; do
  check "both log event=$e" bash -c "grep -qw -- '$e' <<<'$je' && grep -qw -- '$e' <<<'$le'"
done
check "json: a number stays a number (heartbeat interval_ms)" \
  grep -q '"event":"acting_window".*"interval_ms":300[,}]' "$T/json.log"

rc=0; "$DISPATCHD" run --dispatcher a/b --log-format xml 2>"$T/bad.err" || rc=$?
check "--log-format xml: exit 2 (got $rc)" [ $rc -eq 2 ]
check "... saying what to use" grep -q "log-format 'xml': use logfmt or json" "$T/bad.err"
rc=0; DISPATCHD_LOG_FORMAT=yaml "$DISPATCHD" status 2>"$T/bad2.err" || rc=$?
check "DISPATCHD_LOG_FORMAT=yaml: exit 2 (got $rc)" [ $rc -eq 2 ]
