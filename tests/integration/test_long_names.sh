# Long names and paths are never cut (issue 12): the CLI once copied
# project/queue into 256-byte buffers, so two dispatchers whose names agree
# on the first 255 bytes were one dispatcher (one workflow ID, one worker
# registry), and service paths were cut at 512 bytes.
source "$(dirname "$0")/lib.sh"

RP=$(free_port); start_redis "$RP"
R="redis://127.0.0.1:$RP/0"
P=long$$
Q=$(head -c 300 /dev/zero | tr '\0' q)   # the two queues differ after byte 300

worker() {
  "$DISPATCHD" worker --dispatcher "$P/$Q-$1" --server-id "w-$1" --redis-url "$R" \
    --heartbeat-interval 200ms 2>"$T/w-$1.log" &
  track $!
}
js() { "$DISPATCHD" workers "$P/$Q-$1" --redis-url "$R" --json; }
ids() { js "$1" | jq -r '[.workers[].server_id] | sort | join(",")'; }

worker one
worker two
check "worker one registers" wait_until 5 grep -q event=worker_registered "$T/w-one.log"
check "worker two registers" wait_until 5 grep -q event=worker_registered "$T/w-two.log"
w1=$(js one | jq -r .workflow_id)
w2=$(js two | jq -r .workflow_id)
echo "# $w1"
echo "# $w2"
check "two long distinct names: two workflow IDs" [ -n "$w1" -a "$w1" != "$w2" ]
check "each dispatcher lists only its own worker (one)" [ "$(ids one)" = w-one ]
check "each dispatcher lists only its own worker (two)" [ "$(ids two)" = w-two ]

# A state dir longer than the old 512-byte path buffers: every file lands
# under the full path, none under a cut one.
S="$T/$(head -c 200 /dev/zero | tr '\0' d)/$(head -c 200 /dev/zero | tr '\0' e)/$(head -c 200 /dev/zero | tr '\0' f)"
set +e
"$DISPATCHD" stack status --state-dir "$S" >"$T/status.out" 2>&1; rc=$?
set -e
check "stack status with a ${#S}-byte state dir answers (exit $rc: 1 = not running)" [ $rc -le 1 ]
check "the service dirs are made at the full path" [ -d "$S/redis" -a -d "$S/temporal" ]
check "and nowhere else" [ "$(find "$T" -mindepth 1 -maxdepth 4 -type d -name 'f*' | wc -l)" = 1 ]
