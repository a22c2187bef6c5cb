# No descriptor of dispatchd leaks into the command it runs: the child of
# `dispatchd run ... -- CMD` (and so its children) holds 0, 1 and 2 only.
# A leaked Redis socket would let the command (any program) talk to Redis as
# dispatchd, and keep the connection open after dispatchd closed its end.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
P=fds$$x$RANDOM
# The child's own child lists its descriptors (what it inherited from the
# shell, which inherited from dispatchd), then the shell stays until stopped.
child='ls -l /proc/self/fd >"$FDS_OUT.new" && mv "$FDS_OUT.new" "$FDS_OUT"; trap "exit 0" TERM; while :; do sleep 0.05; done'
# dispatchd starts with 0, 1 and 2 only (whatever else the test runner
# holds is closed first), so anything more in the child came from dispatchd.
clean_exec='import os, sys; os.closerange(3, os.sysconf("SC_OPEN_MAX")); os.execvp(sys.argv[1], sys.argv[1:])'
FDS_OUT=$T/child-fds python3 -c "$clean_exec" "$DISPATCHD" run --dispatcher "$P/q" --temporal-url "$U" \
  --redis-url "redis://127.0.0.1:$RP/0" --server-id fdtest --heartbeat-interval 300ms \
  --stale-threshold 1200ms --metrics-listen 127.0.0.1:0 -- sh -c "$child" \
  >"$T/run.out" 2>"$T/run.log" &
D=$!; track $D
check "dispatchd owns and heartbeats" wait_until 10 grep -q "event=owning" "$T/run.log"
check "its child listed its descriptors" wait_until 10 test -s "$T/child-fds"
echo "# the child's descriptors:"; sed 's/^/#   /' "$T/child-fds"
# "lrwx------ 1 u g 64 Nov 30 12:00 3 -> socket:[12345]": field 9 is the fd;
# ls's own handle on the directory it lists (/proc/PID/fd) is not inherited.
extra=$(awk 'NF >= 11 && $9 ~ /^[0-9]+$/ && $9 > 2 && $11 !~ /^\/proc\/[0-9]+\/fd$/ { print $9, $11 }' \
  "$T/child-fds" | tr '\n' ' ')
check "the child holds no descriptor but 0, 1 and 2 (extra: ${extra:-none})" [ -z "$extra" ]
# The same from the outside: the child (under the guard) shares no socket
# with dispatchd (the Redis connection, the metrics listener, Temporal's).
# (dispatchd's children: the guard, and the host's will process, `__will`)
guard=$(pgrep -P $D -f -- ' __guard ' | head -1 || true)
cpid=$( [ -n "$guard" ] && pgrep -P "$guard" | head -1 || true)
check "found the child process" [ -n "$cpid" ]
sockets() { ls -l "/proc/$1/fd" 2>/dev/null | grep -o 'socket:\[[0-9]*\]' | sort -u; }
shared=$(comm -12 <(sockets $D) <(sockets "$cpid") | tr '\n' ' ')
check "the child shares no socket with dispatchd (shared: ${shared:-none})" [ -z "$shared" ]
# The guard and the will process hold none of dispatchd's sockets either (a leaked Redis or
# Temporal connection there would outlive dispatchd's death): the guard has pipes and its
# signalfd, the will process its two pipes (3: from dispatchd, 4: from the guards) and its event
# loop's, and no socket until dispatchd has died.
wp=$(pgrep -P $D -f -- ' __will ' | head -1 || true)
check "found the will process" [ -n "$wp" ]
check "the guard holds no socket (has: $(sockets "$guard" | tr '\n' ' '))" [ -z "$(sockets "$guard")" ]
check "the will process holds no socket (has: $(sockets "$wp" | tr '\n' ' '))" [ -z "$(sockets "$wp")" ]
check "  its fds 3 and 4 are pipes" \
  bash -c "ls -l /proc/$wp/fd/3 /proc/$wp/fd/4 | grep -c 'pipe:' | grep -qx 2"
kill -TERM $D; wait $D
check "dispatchd exits cleanly" grep -q "event=stopped .*clean=true" "$T/run.log"
