# The README's exit-code contract, command by command (issue 13 item 9):
#   0 success; 1 the operation was tried and failed (a dependency is down, a
#   server did not come up, a cycle had errors, a service is unhealthy);
#   2 bad usage or bad input: anything to change in the command line or the
#   environment, whether found while parsing or later (a taken port, an
#   unusable path).
# Every command is run with each class of bad input and must exit 2 with a
# message on stderr, and nothing of ours may be left running; a few rows pin
# the 1 side of the contract (dependency down) so the two cannot be swapped.
# No Temporal or Redis is needed: bad input is refused before either is used,
# and the "down" rows point at closed ports.
source "$(dirname "$0")/lib.sh"

CLOSED=$(free_port)                 # nothing listens here
HELD=$(free_port); hold_port "$HELD"  # a stranger listens here (pid $HOLDER)
RP=$(free_port); TP=$(free_port); HP=$(free_port)
S=$T/state; mkdir -p "$S"
echo "not a dir" >"$T/afile"
P=(--state-dir "$S" --redis-port "$RP" --temporal-port "$TP" --temporal-http-port "$HP")
R=(--redis-url "redis://127.0.0.1:$CLOSED/0")
TU=(--temporal-url "http://127.0.0.1:$CLOSED" --temporal-timeout 1s)
M=(--metrics-listen off)

# row CODE PATTERN [VAR=VALUE...] -- ARGS...: runs dispatchd ARGS (with the
# environment additions) and checks the exit status and that stderr matches
# PATTERN (grep -E; "" = for exit 2 any non-empty message, else anything). The dispatchd-specific
# environment of the caller is cleared so rows cannot leak into each other.
ROWS=0
row() {
  local want=$1 pat=$2; shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local rc=0 err
  err=$(env $(env | sed -n 's/^\(DISPATCHD_[A-Z_]*\)=.*/-u \1/p') "${envs[@]}" \
        timeout 60 "$DISPATCHD" "$@" 2>&1 >/dev/null) || rc=$?
  ROWS=$((ROWS + 1))
  LAST_ERR=$err
  local what="${envs[*]:+${envs[*]} }dispatchd $*"
  local why=""
  if [ "$rc" != "$want" ]; then
    why="exit $rc, expected $want"
  elif [ "$want" = 2 ] && { [ -z "$err" ] || ! grep -qE -- "${pat:-.}" <<<"$err"; }; then
    why="exit 2 as expected, but stderr does not say /$pat/"
  elif [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$err"; then
    why="exit $rc as expected, but stderr does not say /$pat/"
  fi
  if [ -n "$why" ]; then
    # every disagreement is listed, then the test fails once (at the end)
    echo "DISAGREES - $why: $what" >&2
    sed 's/^/    | /' <<<"$err" >&2
    BAD=$((BAD + 1))
  else
    ok "exit $want: $what"
  fi
}
BAD=0

# --- every command: unknown flag, missing value, bad --log-level, stray argument
for cmd in "up" "stack start" "stack stop" "stack status" "run --dispatcher a/b" "status" \
           "worker --dispatcher a/b --server-id w" "workers a/b" "reconcile" "takeover p q" "last-will" "version"; do
  read -ra c <<<"$cmd"
  row 2 "unknown option '--bogus'" -- "${c[@]}" --bogus
  [ "$cmd" = version ] && continue   # version has no options to give a value to
  row 2 "option '--log-level' needs a value" -- "${c[@]}" --log-level
  row 2 "--log-level 'loud'" -- "${c[@]}" --log-level loud
  row 2 "DISPATCHD_LOG_LEVEL" DISPATCHD_LOG_LEVEL=loud -- "${c[@]}"
done
row 2 "unknown command 'frob'" -- frob
row 2 "" --
row 2 "unexpected argument|takes no arguments" -- version extra
row 2 "takes no arguments" -- up extra
row 2 "takes no arguments" -- last-will extra
row 2 "--stale-threshold" -- last-will --stale-threshold soon
row 2 "unknown stack action 'frob'" -- stack frob
row 2 "needs an action" -- stack
row 2 "unknown service 'nosuch'" -- stack status nosuch "${P[@]}"
row 2 "takes no arguments" -- status extra
row 2 "takes no arguments" -- reconcile extra
row 2 "takes no arguments" -- worker extra --dispatcher a/b --server-id w
row 2 "unexpected argument 'extra'" -- run extra --dispatcher a/b
row 2 "" -- workers
row 2 "" -- takeover onlyproject

# --- malformed values, from flags and from the environment ---------------------
for cmd in "up" "stack start" "stack stop" "stack status" "status" "workers a/b"; do
  read -ra c <<<"$cmd"
  for bad in abc 0 70000 -1 ""; do
    row 2 "--redis-port '$bad': not a port number" -- "${c[@]}" --redis-port "$bad"
  done
  row 2 "environment DISPATCHD_REDIS_PORT 'abc'" DISPATCHD_REDIS_PORT=abc -- "${c[@]}"
done
for cmd in "run --dispatcher a/b" "takeover p q" "reconcile"; do
  read -ra c <<<"$cmd"
  row 2 "--temporal-http-port 'x'" -- "${c[@]}" --temporal-http-port x
  [ "${c[0]}" = takeover ] || c+=("${R[@]}")   # takeover does not use Redis
  row 2 "--temporal-url 'ftp://x'" -- "${c[@]}" --temporal-url ftp://x
  row 2 "--temporal-timeout '5parsecs'" -- "${c[@]}" --temporal-timeout 5parsecs
  for bad in 0 1025; do
    row 2 "--temporal-max-in-flight $bad is outside 1 to 1024" -- "${c[@]}" "${TU[@]}" \
      --temporal-max-in-flight "$bad"
  done
  row 2 "--temporal-api-key-file: cannot open secret file '$T/nosuch'" -- "${c[@]}" "${TU[@]}" \
    --temporal-api-key-file "$T/nosuch"
done
for cmd in "run --dispatcher a/b" "up" "status" "reconcile"; do
  read -ra c <<<"$cmd"
  row 2 "--stale-threshold '5x': not a duration" -- "${c[@]}" --stale-threshold 5x
  row 2 "environment DISPATCHD_STALE_THRESHOLD '-1s'" DISPATCHD_STALE_THRESHOLD=-1s -- "${c[@]}"
done
row 2 "--heartbeat-interval 'soon'" -- worker --dispatcher a/b --server-id w --heartbeat-interval soon
row 2 "--stop-timeout" -- stack stop "${P[@]}" --stop-timeout 0s
row 2 "must be longer than --heartbeat-interval" -- run --dispatcher a/b --heartbeat-interval 5s --stale-threshold 5s
row 2 "--terminate-rate 'nan'" -- reconcile --terminate-rate nan
row 2 "--reconcile-lanes 0: use 1 to 256" -- reconcile --reconcile-lanes 0
row 2 "environment DISPATCHD_RECONCILE_LANES 257: use 1 to 256" DISPATCHD_RECONCILE_LANES=257 -- up
row 2 "environment DISPATCHD_TEMPORAL_MAX_IN_FLIGHT 2000 is outside 1 to 1024" \
  DISPATCHD_TEMPORAL_MAX_IN_FLIGHT=2000 -- reconcile "${R[@]}"
row 2 "--reconcile-lanes '-1': not a count \\(a whole number of 0 or more; --help gives this option's range\\)" \
  -- reconcile --reconcile-lanes -1

# --- malformed or unusable --metrics-listen (was exit 1, found only after start)
for cmd in "run --dispatcher a/b" "up" "reconcile --loop"; do
  read -ra c <<<"$cmd"
  [ "$cmd" = up ] && c+=("${P[@]}") || c+=("${TU[@]}" "${R[@]}")
  for bad in foo 127.0.0.1 127.0.0.1:99999 localhost:9464 ":9464" "[::1]9464"; do
    row 2 "--metrics-listen: invalid" -- "${c[@]}" --metrics-listen "$bad"
  done
done
# taken by another process: exit 2 as for any taken port; `up` refuses before
# it starts the stack
row 2 "cannot listen on 127.0.0.1:$HELD" -- run --dispatcher a/b "${TU[@]}" "${R[@]}" --metrics-listen "127.0.0.1:$HELD"
row 2 "cannot listen on 127.0.0.1:$HELD" -- reconcile --loop "${TU[@]}" "${R[@]}" --metrics-listen "127.0.0.1:$HELD"
row 2 "127.0.0.1:$HELD.*nothing was started" -- up "${P[@]}" --metrics-listen "127.0.0.1:$HELD"
row 2 "needs --loop" -- reconcile --metrics-listen 127.0.0.1:0

# --- the state dir: a file, or not writable --------------------------------------
for cmd in "up" "stack start" "stack stop" "stack status"; do
  read -ra c <<<"$cmd"
  row 2 "state dir '$T/afile' is not writable" -- "${c[@]}" --state-dir "$T/afile" --redis-port "$RP" \
    --temporal-port "$TP" --temporal-http-port "$HP"
  row 2 "state dir '/proc/1/x' is not writable" DISPATCHD_STATE_DIR=/proc/1/x -- "${c[@]}" \
    --redis-port "$RP" --temporal-port "$TP" --temporal-http-port "$HP"
  row 2 "--state-dir: must not be empty" -- "${c[@]}" --state-dir ""
done
row 2 "redis-server not found \('$T/nosuch'\)" -- up "${P[@]}" --redis-bin "$T/nosuch"
row 2 "redis-server not found \('$T/nosuch'\)" -- stack start redis "${P[@]}" --redis-bin "$T/nosuch"
row 2 "temporal CLI not found" -- stack start temporal "${P[@]}" --temporal-bin "$T/nosuch"

# --- ports: the same port for two services (item 5), a port taken -----------------
for cmd in "up" "stack start" "stack stop" "stack status"; do
  read -ra c <<<"$cmd"
  row 2 "--redis-port $RP and --temporal-port $RP: both use port $RP" -- "${c[@]}" --state-dir "$S" \
    --redis-port "$RP" --temporal-port "$RP" --temporal-http-port "$HP"
  row 2 "--temporal-port $TP and --temporal-http-port $TP" -- "${c[@]}" --state-dir "$S" \
    --redis-port "$RP" --temporal-port "$TP" --temporal-http-port "$TP"
  row 2 "--redis-port $HP and DISPATCHD_TEMPORAL_HTTP_PORT=$HP \(environment\)" \
    DISPATCHD_TEMPORAL_HTTP_PORT="$HP" -- "${c[@]}" --state-dir "$S" --redis-port "$HP" --temporal-port "$TP"
  row 2 "--redis-port 7233 and --temporal-port \(default 7233\)" -- "${c[@]}" --state-dir "$S" \
    --redis-port 7233 --temporal-http-port "$HP"
done
row 2 "--temporal-port $TP and --metrics-listen 127.0.0.1:$TP" -- up "${P[@]}" --metrics-listen "127.0.0.1:$TP"
# a port held by a stranger: nothing is started, the stranger is not touched
for cmd in "up" "stack start"; do
  read -ra c <<<"$cmd"
  row 2 "redis: port $HELD on 127.0.0.1 is already in use by pid $HOLDER .*nothing was started" \
    -- "${c[@]}" --state-dir "$S" --redis-port "$HELD" --temporal-port "$TP" --temporal-http-port "$HP"
  row 2 "temporal: port $HELD on 127.0.0.1 is already in use by pid $HOLDER .*--temporal-port" \
    -- "${c[@]}" --state-dir "$S" --redis-port "$RP" --temporal-port "$HELD" --temporal-http-port "$HP"
  check "$cmd with a taken port left no redis running" [ "$(pgrep -fc "redis-server 127.0.0.1:$RP" || true)" = 0 ]
  check "$cmd with a taken port left no status file" [ ! -e "$S/redis.status" ]
done
check "the port holder was not touched" kill -0 "$HOLDER"

# --- dispatchers, Redis and Temporal settings ----------------------------------
row 2 "--dispatcher 'nope': expected PROJECT/QUEUE" -- run --dispatcher nope
row 2 "--dispatcher '/q'" -- worker --dispatcher /q --server-id w
row 2 "workers needs one PROJECT/QUEUE \(got 'nope'\)" -- workers nope
row 2 "run needs at least one --dispatcher" -- run
row 2 "environment DISPATCHD_DISPATCHER='a/b,,c/d': entry 2 is empty" DISPATCHD_DISPATCHER=a/b,,c/d -- run
row 2 "environment DISPATCHD_DISPATCHER entry 2 'x'" DISPATCHD_DISPATCHER=a/b,x -- run
row 2 "worker needs exactly one --dispatcher" DISPATCHD_DISPATCHER=a/b,c/d -- worker --server-id w
row 2 "worker needs --server-id" -- worker --dispatcher a/b
row 2 "--redis-url" -- status --redis-url http://x
row 2 "--redis-url" -- workers a/b --redis-url http://x
row 2 "--redis-url" -- run --dispatcher a/b "${TU[@]}" "${M[@]}" --redis-url http://x
row 2 "--redis-url" -- reconcile "${TU[@]}" --redis-url http://x
row 2 "" -- worker --dispatcher a/b --server-id w --redis-url http://x
for cmd in "status" "workers a/b" "worker --dispatcher a/b --server-id w" "reconcile" "run --dispatcher a/b"; do
  read -ra c <<<"$cmd"
  case $cmd in run*) c+=("${TU[@]}" "${M[@]}") ;; reconcile) c+=("${TU[@]}") ;; esac
  row 2 "secret file '$T/nosuch'" -- "${c[@]}" "${R[@]}" --redis-password-file "$T/nosuch"
done
for cmd in "status" "workers a/b"; do
  read -ra c <<<"$cmd"
  row 2 "--redis-port $RP and --redis-url 'redis://10.0.0.1:6379/0' name different Redis servers" \
    -- "${c[@]}" --redis-port "$RP" --redis-url redis://10.0.0.1:6379/0
  row 2 "DISPATCHD_REDIS_PORT $RP and DISPATCHD_REDIS_URL 'redis://\*\*\*@10.0.0.1:6379/0'" \
    DISPATCHD_REDIS_PORT="$RP" DISPATCHD_REDIS_URL=redis://u:secretpw@10.0.0.1:6379/0 -- "${c[@]}"
  check "the password in the URL is not in the message" bash -c "! grep -q secretpw <<<'$LAST_ERR'"
done
row 2 "only applies in workflow mode" -- run --dispatcher a/b --input '{}'
row 2 "only applies in workflow mode" -- takeover p q --input '{}'
row 2 "is not valid JSON" -- takeover p q --workflow-type T --input '{'
row 2 "--on-workflow-exit 'sometimes'" -- run --dispatcher a/b "${TU[@]}" "${R[@]}" "${M[@]}" \
  --on-workflow-exit sometimes

# --- the other side of the contract: an operation that fails is 1 ----------------
row 1 "cannot read" -- status --redis-port "$CLOSED"
row 1 "" -- workers a/b --redis-port "$CLOSED"
row 1 "" -- takeover p q "${TU[@]}"
row 1 "" -- reconcile "${TU[@]}" "${R[@]}"
# outside the unit's ExecStopPost= (here: other processes share the cgroup, or the root one)
row 1 "last-will: refusing: .*ExecStopPost=" -- last-will "${R[@]}"
row 1 "" -- stack status --state-dir "$S" --redis-port "$RP" --temporal-port "$TP" --temporal-http-port "$HP"
nothing_left() { ! pgrep -f -- "--state-dir $S" >/dev/null && ! pgrep -f "redis-server 127.0.0.1:$RP" >/dev/null; }
check "no dispatchd or server of this test is left running" nothing_left
echo "# $ROWS rows, $BAD disagree with the contract"
[ "$BAD" = 0 ] || fail "$BAD of $ROWS rows disagree with the README's exit-code contract (listed above)"
