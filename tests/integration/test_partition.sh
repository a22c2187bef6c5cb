# Split brain under network faults and clock skew (issue 18), judged from
# the children's own output, Redis (redis-cli) and Temporal (HTTP API), not
# from dispatchd's log.
#
# Three `dispatchd run` hosts for one dispatcher; each talks to the real
# Redis and the real Temporal dev server through its own netfault proxy
# (tests/support/netfault_proxy.py), which black-holes that host's traffic
# on command without closing its sockets, then heals. Scenarios, each at
# 1 s / 5 s and at 1 s / the smallest accepted threshold:
#   whole     the owner's Redis and Temporal traffic held
#   redis     only Redis held
#   temporal  only Temporal held (nobody may move: Temporal down changes no ownership)
#   asym      requests reach the servers, replies are held
# Then clock skew (libfaketime): +8 s and -8 s on standbys, then on the owner:
# no ownership moves. The checker (tests/support/overlap.py) fails on any two
# children of different hosts acting at once beyond one tick (20 ms).
source "$(dirname "$0")/lib.sh"

U=$(cat "$DD_FIXTURE_DIR/temporal/url")
TADDR=${U#http://}
RP=$(free_port); start_redis "$RP"
CH=$T/children.log
# the child runs on the real clock (libfaketime breaks its sleeps); dispatchd and its guard are skewed
CHILD=(env -u LD_PRELOAD -u FAKETIME python3 "$DD_SOURCE_DIR/bench/fleet/child.py" "$CH")
export CHILD_TICK_S=0.02
OVERLAP="python3 $DD_SOURCE_DIR/tests/support/overlap.py"
FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)

# proxy NAME: a netfault proxy for host NAME (ports in $T/NAME.ports)
proxy() {
  python3 "$DD_SOURCE_DIR/tests/support/netfault_proxy.py" --route "redis=127.0.0.1:$RP" \
    --route "temporal=$TADDR" --port-file "$T/$1.ports" 2>>"$T/$1.proxy.log" &
  track $!
  # bounded, and generous: a python start-up on a saturated machine took over 5 s
  wait_until 30 test -s "$T/$1.ports" || fail "proxy for $1 did not start within 30 s"
}
pport() { awk -v r="$2" '$1==r{print $2}' "$T/$1.ports"; }
netmode() { # netmode HOST ROUTE|all pass|hold|asym
  local c; c=$(pport "$1" control)
  exec 7<>"/dev/tcp/127.0.0.1/$c"; echo "mode $2 $3" >&7; read -r ans <&7; exec 7>&-
  [ "$ans" = ok ] || fail "proxy of $1 refused 'mode $2 $3': $ans"
}
# host NAME ARGS...: a dispatchd host for $P/q behind its own proxy; env
# SKEW=+8s|-8s runs it (and its guard and child) on a shifted wall clock.
host() {
  local name=$1; shift
  [ -f "$T/$name.ports" ] || proxy "$name"
  local pre=()
  if [ -n "${SKEW:-}" ]; then
    pre=(env "LD_PRELOAD=$FAKETIME_LIB" "FAKETIME=$SKEW" FAKETIME_DONT_FAKE_MONOTONIC=1
         "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0")
  fi
  "${pre[@]}" "$DISPATCHD" run --dispatcher "$P/q" --server-id "$name" --metrics-listen off \
    --redis-url "redis://127.0.0.1:$(pport "$name" redis)/0" \
    --temporal-url "http://127.0.0.1:$(pport "$name" temporal)" "$@" -- "${CHILD[@]}" \
    2>"$T/$name.$P.log" &
  echo $! >"$T/$name.pid"
  track $!
}
stop_host() { # TERM; it must exit 0 (released cleanly)
  local pid; pid=$(cat "$T/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  local rc=0; wait "$pid" || rc=$?
  [ "$rc" = 0 ] || fail "host $1 exited $rc after TERM"
}
rec() { redis-cli -p "$RP" hget "dd:hb:{$W}" "$1"; }
# who acted last, from the children's own ticks (last 200 ms)
acting() {
  local now; now=$(( $(date +%s%N) / 1000 ))
  awk -v w="$W" -v since=$((now - 200000)) '$3==w && $2>=since {print $5}' "$CH" | sort -u | tr '\n' ' '
}
acts() { [ "$(acting)" = "$1 " ]; }
owner_acts() { local o; o=$(rec server_id); [ -n "$o" ] && acts "$o"; }
running_runs() { # running executions of the ID, from Temporal
  curl -fsS "$U/api/v1/namespaces/default/workflows?query=$(jq -rn --arg w "$W" \
    '"WorkflowId=\"\($w)\" AND ExecutionStatus=\"Running\"" | @uri')" | jq '.executions | length'
}

one_running() { [ "$(running_runs)" = 1 ]; }

# scenario NAME MODE ROUTE MOVES: partitions the current owner for T + 2 s, heals,
# and checks who acts. MOVES=yes: a standby must take over; no: nobody moves.
scenario() {
  local name=$1 mode=$2 route=$3 moves=$4
  local owner; owner=$(rec server_id)
  local epoch; epoch=$(rec epoch)
  local t0; t0=$(( $(date +%s%N) / 1000 ))
  netmode "$owner" "$route" "$mode"
  if [ "$moves" = yes ]; then
    # a standby acts within the threshold plus the failover path
    wait_until $(( THR_S + 10 )) bash -c "o=\$(redis-cli -p $RP hget 'dd:hb:{$W}' server_id); [ -n \"\$o\" ] && [ \"\$o\" != '$owner' ]" \
      || fail "$CFG $name: no standby took over from $owner"
    local succ; succ=$(rec server_id)
    wait_until 10 acts "$succ" || fail "$CFG $name: the new owner $succ does not act alone ($(acting))"
    local t1; t1=$(( $(date +%s%N) / 1000 ))
    echo "# $CFG $name: $succ acting $(( (t1 - t0) / 1000 )) ms after the cut of $owner"
  else
    # nobody may move while the owner is cut off from Temporal only
    local end=$(( $(date +%s) + THR_S + 2 ))
    while [ "$(date +%s)" -lt "$end" ]; do
      [ "$(rec server_id)" = "$owner" ] || fail "$CFG $name: ownership moved from $owner to $(rec server_id)"
      sleep 0.2
    done
    check "$CFG $name: $owner kept ownership and acting" acts "$owner"
  fi
  netmode "$owner" all pass
  check "$CFG $name: after healing exactly the record's owner acts" wait_until 15 owner_acts
  check "$CFG $name: Temporal has one running run" wait_until 10 one_running
  local ov; ov=$($OVERLAP "$CH" --since "$t0") || fail "$CFG $name: children overlapped: $ov"
  ok "$CFG $name: no two children acted at once ($ov)"
  [ "$moves" = no ] && [ "$(rec epoch)" != "$epoch" ] && fail "$CFG $name: the record was re-claimed"
  return 0
}

run_config() { # run_config INTERVAL THRESHOLD THRESHOLD_S
  CFG="$1/$2"; THR_S=$3
  P=part$$x$RANDOM; W="dispatcher-$P-q"
  local knobs=(--heartbeat-interval "$1" --stale-threshold "$2")
  # each host takes over at start (termination-first, with a handoff):
  # start the next once this one acts alone, so h3 owns and h1, h2 stand by
  for h in h1 h2 h3; do
    host $h "${knobs[@]}"
    wait_until 15 bash -c "[ \"\$(redis-cli -p $RP hget 'dd:hb:{$W}' server_id)\" = $h ]" \
      || fail "$CFG: $h did not take over at start"
    wait_until 15 acts $h || fail "$CFG: $h does not act alone after its start ($(acting))"
  done
  scenario whole hold all yes
  scenario redis hold redis yes
  scenario temporal hold temporal no
  scenario asym asym all yes
  for h in h1 h2 h3; do stop_host $h; done
  check "$CFG: after every host released, the record is gone" [ -z "$(rec server_id)" ]
  check "$CFG: and no run is left running" [ "$(running_runs)" = 0 ]
}

run_config 1s 5s 5
run_config 1s 2122ms 3   # the smallest threshold accepted for a 1 s interval

# --- clock skew: Redis's clock decides, so ±8 s on any host moves nothing ---------------
if [ -z "$FAKETIME_LIB" ]; then
  fail "libfaketime is missing (Debian package libfaketime): scripts/install-deps.sh installs it"
fi
check "libfaketime shifts a process's wall clock" \
  bash -c "[ \$(( \$(env LD_PRELOAD=$FAKETIME_LIB FAKETIME=+8s date +%s) - \$(date +%s) )) -ge 7 ]"
# skew_case SKEW1 SKEW2 SKEW3: three hosts on shifted wall clocks ("" none),
# started one after the other; each takes over at start (termination-first,
# by design), so the third owns the quiet period and the first two stand by.
skew_case() {
  CFG="skew [${1:-0} ${2:-0} ${3:-0}]"; P=skew$$x$RANDOM; W="dispatcher-$P-q"
  local knobs=(--heartbeat-interval 1s --stale-threshold 3s)
  local i=1
  for sk in "$@"; do
    SKEW=$sk host "s$i" "${knobs[@]}"
    wait_until 15 acts "s$i" || fail "$CFG: s$i did not take over at start ($(acting))"
    i=$((i + 1))
  done
  local o; o=$(rec server_id)
  [ "$o" = s3 ] || fail "$CFG: expected s3 to own after the starts, found '$o'"
  local epoch; epoch=$(rec epoch)
  local t0; t0=$(( $(date +%s%N) / 1000 ))
  local end=$(( $(date +%s) + 12 ))   # four thresholds
  while [ "$(date +%s)" -lt "$end" ]; do
    [ "$(rec server_id) $(rec epoch)" = "$o $epoch" ] || fail "$CFG: ownership moved ($(rec server_id) epoch $(rec epoch))"
    sleep 0.2
  done
  ok "$CFG: no ownership move in 12 s (owner s3 on ${3:-0})"
  local ov; ov=$($OVERLAP "$CH" --since "$t0") || fail "$CFG: children overlapped: $ov"
  check "$CFG: the owner acted throughout, alone" acts s3
  for h in s1 s2 s3; do stop_host "$h"; done
}
skew_case "" +8s -8s   # owner 8 s behind; standbys on time and 8 s ahead
skew_case +8s -8s ""   # owner on time; standbys 8 s ahead and 8 s behind
skew_case "" -8s +8s   # owner 8 s ahead
