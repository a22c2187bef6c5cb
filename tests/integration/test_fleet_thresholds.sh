# One misconfigured host must not hurt the fleet (issue 13, Deliver): three
# hosts on 1 s / 5 s own three dispatchers; an extra host for the same
# dispatchers and one for an unrelated dispatcher run with --stale-threshold
# as low as is accepted (1 s, with a reconciler every second), and a one-off
# `dispatchd reconcile --stale-threshold 1s` runs every few seconds. For
# FLEET_S (120) seconds no healthy owner's run may be terminated (read from
# Temporal with the temporal CLI) and no ownership may change; the extra host
# says (once per dispatcher) and exports that the fleet's thresholds differ.
#
# Labelled "fleet", not "asan": the property takes two minutes of wall clock
# by definition, the ASan pass is the long one already, and the code paths
# (standby checks, reconciler, takeover) run under ASan in test_failover,
# test_reconcile_loop and test_workers.
source "$(dirname "$0")/lib.sh"

FLEET_S=${FLEET_S:-120}
U=$(cat "$DD_FIXTURE_DIR/temporal/url")
G=$(cat "$DD_FIXTURE_DIR/temporal/grpc")
TEMPORAL=${DD_SOURCE_DIR}/.tools/bin/temporal
[ -x "$TEMPORAL" ] || TEMPORAL=$(command -v temporal)
RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
# A namespace of its own (made by the fixture): these reconcilers sweep every
# 5 s and would end other tests' dispatchers in "default".
NS=dd-fleet-thresholds
P=ft$$x$RANDOM
C=(--temporal-url "$U" --namespace "$NS" --redis-url "$R" --metrics-listen 127.0.0.1:0)
D=(--dispatcher "$P/d1" --dispatcher "$P/d2" --dispatcher "$P/d3")

# --- the floor: nonsense is refused at start-up -------------------------------------------
set +e
out=$("$DISPATCHD" reconcile "${C[@]:0:6}" --stale-threshold 300ms 2>&1); rc=$?
check "reconcile --stale-threshold 300ms is refused (exit 2)" [ $rc -eq 2 ]
check "and the message gives the floor and the reason" grep -q -- "--stale-threshold 300ms is below the floor of 1s" <<<"$out"
out=$("$DISPATCHD" run --dispatcher "$P/x" "${C[@]}" --heartbeat-interval 100ms --stale-threshold 3ms 2>&1); rc=$?
check "run --stale-threshold 3ms is refused (exit 2)" [ $rc -eq 2 ]
set -e

host() { # NAME ARGS...: a `dispatchd run` host, its log in $T/NAME.log
  local name=$1; shift
  "$DISPATCHD" run --server-id "$name" "${C[@]}" "$@" 2>"$T/$name.log" &
  track_dd $! "$name"
}
port_of() { sed -n 's/.*event=metrics_listening.* port=\([0-9]*\).*/\1/p' "$T/$1.log" | head -1; }
claims() { grep -c event=record_claimed "$T/$1.log" || true; }

# Every `run` takes over at start (termination-first, by design: R2), so the
# fleet is formed one host at a time, each once the previous one has claimed
# all it took; the last one (h3) then owns the three. The low host starts
# first, so it ends a standby like any misconfigured newcomer would be.
host low "${D[@]}" --heartbeat-interval 300ms --stale-threshold 1s --reconcile-interval 1s
check "low claims the three dispatchers at start" wait_until 30 bash -c "[ \$(grep -c event=record_claimed '$T/low.log') -eq 3 ]"
for h in h1 h2 h3; do
  host $h "${D[@]}" --heartbeat-interval 1s --stale-threshold 5s --reconcile-interval 5s
  check "$h takes the three over at start, as every new host does" \
    wait_until 30 bash -c "[ \$(grep -c event=record_claimed '$T/$h.log') -eq 3 ]"
done
# and an unrelated dispatcher's host, as low as is accepted, reconciling every second
host other --dispatcher "$P/other" --heartbeat-interval 300ms --stale-threshold 1s --reconcile-interval 1s
check "the unrelated host owns its dispatcher" wait_until 30 grep -q event=record_claimed "$T/other.log"
check "h3 owns the three" bash -c "[ \$(for d in d1 d2 d3; do redis-cli -p $RP hget 'dd:hb:{dispatcher-$P-'\$d'}' server_id; done | sort -u) = h3 ]"
owners0=$(for d in d1 d2 d3; do redis-cli -p "$RP" hmget "dd:hb:{dispatcher-$P-$d}" server_id run_id epoch | tr '\n' ' '; echo; done)
echo "# owners at the start:"; echo "$owners0" | sed 's/^/#   /'

terminated() { # terminated runs of this test's dispatchers, as the temporal CLI lists them
  "$TEMPORAL" workflow list --address "$G" --namespace "$NS" -o json 2>"$T/list.err" |
    jq -r --arg p "dispatcher-$P-" '.[] | select(.execution.workflowId | startswith($p)) |
      select(.status == "WORKFLOW_EXECUTION_STATUS_TERMINATED") | "\(.execution.workflowId) \(.execution.runId)"'
}
check "the temporal CLI lists this namespace" bash -c "'$TEMPORAL' workflow list --address '$G' --namespace '$NS' -o json >/dev/null"
# The runs the start-up takeovers replaced: terminated by design, before the
# fleet was formed. From now on the set must not grow.
base=$(terminated | sort)
echo "# runs terminated by the start-up takeovers: $(grep -c . <<<"$base")"
new_terms() { comm -13 <(echo "$base") <(terminated | sort); }

# --- FLEET_S seconds: one-off reconciles with the low threshold, Temporal read each round ---
t_end=$(( $(date +%s) + FLEET_S )); rounds=0; listed=0
while [ "$(date +%s)" -lt "$t_end" ]; do
  set +e
  "$DISPATCHD" reconcile "${C[@]:0:6}" --stale-threshold 1s --server-id oneoff >"$T/oneoff.out" 2>>"$T/oneoff.log"
  rc=$?
  set -e
  [ $rc -eq 0 ] || fail "one-off reconcile exited $rc: $(tail -3 "$T/oneoff.log")"
  rounds=$((rounds + 1))
  bad=$(new_terms) || fail "temporal workflow list failed: $(cat "$T/list.err")"
  listed=$((listed + 1))
  [ -z "$bad" ] || fail "a healthy owner's run was terminated: $bad"
  for pid in "${!DDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "${DDS[$pid]} (pid $pid) died"; done
  sleep 3
done
echo "# $rounds one-off reconciles with --stale-threshold 1s, $listed listings of Temporal, over ${FLEET_S} s"
check "no run of the formed fleet was terminated (temporal CLI)" [ -z "$(new_terms)" ]
owners1=$(for d in d1 d2 d3; do redis-cli -p "$RP" hmget "dd:hb:{dispatcher-$P-$d}" server_id run_id epoch | tr '\n' ' '; echo; done)
check "no ownership changed (server, run and epoch of every record)" [ "$owners0" = "$owners1" ]
check "no host ever called an owner stale" bash -c "! cat '$T'/h1.log '$T'/h2.log '$T'/h3.log '$T'/low.log '$T'/other.log | grep -E 'event=(owner_stale|failover )'"
check "no host terminated anything but its start-up takeover" bash -c "[ \$(cat '$T'/*.log | grep -c 'event=terminate ') -eq \$(cat '$T'/*.log | grep 'event=terminate ' | grep -c 'reason=\"takeover (TERMINATE_EXISTING)\"') ]"
check "the unrelated host still owns its dispatcher" [ "$(claims other)" -eq 1 ]
check "the one-off reconciles skipped the fresh records by their own threshold" \
  bash -c "! grep -q 'event=terminate' '$T/oneoff.log'"

# --- the mix of thresholds is said once per dispatcher and exported ------------------------
for d in d1 d2 d3; do
  n=$(grep -c "event=threshold_mismatch .*dispatcher=$P/$d " "$T/low.log" || true)
  check "the low host logs the mismatch for $d once (not per tick): $n" [ "$n" -eq 1 ]
done
check "and names both thresholds" grep -q "event=threshold_mismatch .*dispatcher=$P/d1 threshold_ms=1000 owner_threshold_ms=5000 judged_by_ms=5000" "$T/low.log"
m=$(curl -fsS "http://127.0.0.1:$(port_of low)/metrics")
check "the low host exports dispatchd_threshold_mismatch 1" grep -q "^dispatchd_threshold_mismatch{dispatcher=\"$P/d1\"} 1" <<<"$m"
check "and its own threshold" grep -q '^dispatchd_stale_threshold_seconds 1$' <<<"$m"
m=$(curl -fsS "http://127.0.0.1:$(port_of h2)/metrics")
check "a matching standby exports 0" grep -q "^dispatchd_threshold_mismatch{dispatcher=\"$P/d1\"} 0" <<<"$m"
check "and 5 s" grep -q '^dispatchd_stale_threshold_seconds 5$' <<<"$m"
# (h1 may have read low's 1 s record before its own takeover landed: not checked)
check "the matching hosts that joined a 5 s fleet log no mismatch" bash -c "! grep -q event=threshold_mismatch '$T/h2.log' '$T/h3.log'"
echo "# $PASSED checks passed"
