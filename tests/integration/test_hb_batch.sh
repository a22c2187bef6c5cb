# Batched heartbeats (issue 16): one host owning several dispatchers sends
# all their heartbeats in one Redis call per interval, and each record in
# the batch is fenced on its own: a dispatcher whose record a newer owner
# holds learns it lost, the others in the same batch keep theirs.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
P=hbb$$x$RANDOM
args=()
for q in q1 q2 q3 q4; do args+=(--dispatcher "$P/$q"); done
"$DISPATCHD" run "${args[@]}" --temporal-url "$U" --redis-url "$R" --server-id host1 \
  --heartbeat-interval 300ms --stale-threshold 1200ms 2>"$T/host1.log" &
HP=$!; track_dd $HP host1
check "host1 claims all four" wait_until 20 bash -c "[ \$(grep -c event=record_claimed '$T/host1.log') -ge 4 ]"

# What Redis is asked for two seconds: the batch script's EVALs and their keys.
redis-cli -p "$RP" monitor >"$T/monitor.txt" 2>&1 &
MP=$!; track $MP
sleep 2   # an observation window, not a decision: the counts below decide
kill "$MP"; wait "$MP" 2>/dev/null || true
# a batch EVAL names its keys after the numkeys argument: count hb keys per line
batches=$(grep -c 'for i = 1, #KEYS - 1' "$T/monitor.txt" || true)
full=$(grep 'for i = 1, #KEYS - 1' "$T/monitor.txt" | grep -c "\"dd:hb:{dispatcher-$P-q1}\".*\"dd:hb:{dispatcher-$P-q4}\"\|\"dd:hb:{dispatcher-$P-q4}\".*\"dd:hb:{dispatcher-$P-q1}\"" || true)
singles=$(grep '"EVAL"' "$T/monitor.txt" | grep -v 'for i = 1, #KEYS - 1' | grep -c "'first_run_id')" || true)
echo "# in 2 s at a 300 ms interval: $batches batch calls ($full with all four), $singles single heartbeats"
check "heartbeats go out in batches (one per interval: 4..9 in 2 s)" [ "$batches" -ge 4 ] && [ "$batches" -le 9 ]
check "a batch carries all four dispatchers" [ "$full" -ge 4 ]
check "no heartbeat goes out alone in steady state" [ "$singles" -le 1 ]

# A newer owner for q2 (a claim bumps the epoch): only q2 is fenced.
W2="dispatcher-$P-q2"
redis-cli -p "$RP" hset "dd:hb:{$W2}" epoch 999 server_id intruder >/dev/null
check "q2's heartbeat is fenced" wait_until 5 grep -q "event=heartbeat_fenced .*dispatcher=$P/q2 .*holder=intruder" "$T/host1.log"
hb_of() { redis-cli -p "$RP" hget "dd:hb:{dispatcher-$P-$1}" hb_ms; }
a1=$(hb_of q1); a3=$(hb_of q3); a4=$(hb_of q4)
check "q1, q3 and q4 keep heartbeating after q2 was fenced" wait_until 3 bash -c \
  "[ \$(redis-cli -p $RP hget 'dd:hb:{dispatcher-$P-q1}' hb_ms) -gt $a1 ] && [ \$(redis-cli -p $RP hget 'dd:hb:{dispatcher-$P-q3}' hb_ms) -gt $a3 ] && [ \$(redis-cli -p $RP hget 'dd:hb:{dispatcher-$P-q4}' hb_ms) -gt $a4 ]"
check "none of them was fenced or lost" bash -c "! grep -E 'event=(heartbeat_fenced|ownership_lost) .*dispatcher=$P/q[134] ' '$T/host1.log'"

kill -TERM $HP
expect_exit $HP 0
# q2's record is ours again (host1 failed over the "intruder") or still the
# intruder's: a clean exit deletes every record of ours and no other
left=$(redis-cli -p "$RP" zrange dd:hb:index 0 -1 | tr '\n' ' ')
check "a clean exit leaves no record of ours ($left)" bash -c \
  "[ -z '$left' ] || { [ '$left' = '$W2 ' ] && [ \"\$(redis-cli -p $RP hget 'dd:hb:{$W2}' server_id)\" = intruder ]; }"
