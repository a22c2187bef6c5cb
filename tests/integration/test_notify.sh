# systemd's notification protocol without systemd (deploy/systemd/, core/notify.h):
# a datagram socket stands in for systemd, `dispatchd run` gets NOTIFY_SOCKET and
# WATCHDOG_USEC, and the messages and their order are checked:
#   STATUS=owning ... then READY=1 (once, after it owns), WATCHDOG=1 repeated
#   every WATCHDOG_USEC/2, none while the process is stopped (a hung loop), again
#   after SIGCONT, STOPPING=1 on SIGTERM, then a clean exit;
# an abstract-namespace socket (@name) works too, and the child command does not
# inherit NOTIFY_SOCKET; NOTIFY_SOCKET pointing nowhere is one warning and the
# daemon keeps running.
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
RP=$(free_port); start_redis "$RP"
P=ntf$$x$RANDOM
L="python3 $DD_SOURCE_DIR/tests/integration/notify_listener.py"
run_dd() { # run_dd NAME DISPATCHER [ENV...] [-- CHILD...]
  local name=$1 disp=$2; shift 2
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  env "${envs[@]}" "$DISPATCHD" run --dispatcher "$disp" --temporal-url "$U" \
    --redis-url "redis://127.0.0.1:$RP/0" --server-id "$name" --heartbeat-interval 300ms \
    --stale-threshold 1200ms --metrics-listen 127.0.0.1:0 "$@" \
    >"$T/$name.out" 2>"$T/$name.log" &
}
msgs() { cut -d' ' -f2- "$1"; }
# line number of the first message equal to $2 (0: none)
first() { msgs "$1" | grep -n -x -m1 -F -- "$2" | cut -d: -f1 | grep . || echo 0; }
count() { msgs "$1" | grep -c -x -F -- "$2" || true; }
has() { [ "$(first "$1" "$2")" -gt 0 ]; }

# --- a path socket, with the watchdog ---------------------------------------
N=$T/notify.sock; M=$T/notify.txt
$L listen "$N" "$M" & track $!
check "the listener is bound" wait_until 10 test -e "$M.ready"
run_dd main "$P/q" NOTIFY_SOCKET="$N" WATCHDOG_USEC=400000
D=$!; track_dd $D main
check "READY=1 arrives" wait_until 30 has "$M" READY=1
s=$(first "$M" "STATUS=owning: $P/q"); r=$(first "$M" READY=1)
check "STATUS=owning: $P/q (message $s) came before READY=1 (message $r)" \
  [ "$s" -gt 0 ] && [ "$s" -lt "$r" ]
check "it owned (event=owning) when it said READY" grep -q "event=owning" "$T/main.log"
check "the watchdog is on at 200 ms" grep -Eq "event=watchdog_on .*interval_ms=200( |$)" "$T/main.log"
three_pings() { [ "$(count "$M" WATCHDOG=1)" -ge 3 ]; }
check "WATCHDOG=1 repeats" wait_until 10 three_pings

# A hung loop: SIGSTOP. Marker A (sent after the stop) is written after every
# datagram queued before it; none may follow until marker B, 1.5 s (7 watchdog
# intervals) later.
kill -STOP $D
$L send "$N" MARK-A
check "marker A written" wait_until 10 has "$M" MARK-A
sleep 1.5 # the window in which a live loop would have pinged 7 times
$L send "$N" MARK-B
check "marker B written" wait_until 10 has "$M" MARK-B
a=$(first "$M" MARK-A); b=$(first "$M" MARK-B)
check "no WATCHDOG=1 while the process is stopped (between messages $a and $b)" \
  [ "$(msgs "$M" | sed -n "${a},${b}p" | grep -c -x WATCHDOG=1 || true)" -eq 0 ]
kill -CONT $D
pinged_after_b() { msgs "$M" | sed -n "$((b + 1)),\$p" | grep -q -x WATCHDOG=1; }
check "WATCHDOG=1 again after SIGCONT" wait_until 10 pinged_after_b

kill -TERM $D
expect_exit $D 0 60
r=$(first "$M" READY=1); st=$(first "$M" STOPPING=1)
check "STOPPING=1 (message $st) after READY=1 (message $r)" [ "$st" -gt "$r" ]
check "READY=1 was sent once" [ "$(count "$M" READY=1)" -eq 1 ]
check "STATUS says it is releasing" has "$M" "STATUS=releasing every dispatcher"
check "no warning about the socket" bash -c "! grep -q event=notify_failed '$T/main.log'"

# --- the abstract namespace; WATCHDOG_PID names another process, so no
# watchdog; the child does not inherit NOTIFY_SOCKET ---------------------------
A=@dd-notify-$$-$RANDOM; MA=$T/abstract.txt
$L listen "$A" "$MA" & track $!
check "the abstract listener is bound" wait_until 10 test -e "$MA.ready"
run_dd abs "$P/r" NOTIFY_SOCKET="$A" WATCHDOG_USEC=200000 WATCHDOG_PID=1 -- sh -c 'env >"$0.new" && mv "$0.new" "$0"; trap "exit 0" TERM; while :; do sleep 0.05; done' "$T/child.env"
D2=$!; track_dd $D2 abs
check "READY=1 over the abstract socket" wait_until 30 has "$MA" READY=1
check "the child wrote its environment" wait_until 10 test -s "$T/child.env"
check "the child has no NOTIFY_SOCKET nor WATCHDOG_*" bash -c "! grep -Eq '^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID)=' '$T/child.env'"
check "the watchdog is off: WATCHDOG_PID is not ours" grep -q "event=watchdog_off .*WATCHDOG_PID=1" "$T/abs.log"
sleep 0.6 # the window in which a watchdog at WATCHDOG_USEC/2 = 100 ms would ping 6 times
check "no WATCHDOG=1 for another process's WATCHDOG_PID" [ "$(count "$MA" WATCHDOG=1)" -eq 0 ]
kill -TERM $D2
expect_exit $D2 0 60
check "STOPPING=1 over the abstract socket" has "$MA" STOPPING=1

# --- NOTIFY_SOCKET pointing nowhere ------------------------------------------
run_dd nowhere "$P/s" NOTIFY_SOCKET="$T/nobody-listens.sock" WATCHDOG_USEC=200000
D3=$!; track_dd $D3 nowhere
check "it still owns" wait_until 30 grep -q "event=owning" "$T/nowhere.log"
check "one warning says so" wait_until 10 grep -q "event=notify_failed" "$T/nowhere.log"
ping_ms=100
check "the watchdog keeps trying" grep -Eq "event=watchdog_on .*interval_ms=$ping_ms( |$)" "$T/nowhere.log"
check "one warning only" [ "$(grep -c event=notify_failed "$T/nowhere.log")" -eq 1 ]
kill -TERM $D3
expect_exit $D3 0 60
