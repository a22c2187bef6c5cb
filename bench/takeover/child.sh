#!/usr/bin/env bash
# The dispatcher's stand-in work, run by `dispatchd run ... -- bash child.sh`.
# It stamps its own wall clock (bash's $EPOCHREALTIME, no fork) into the
# shared log when it really starts acting and, in its TERM trap, when it
# stops acting:
#   start <wall us> <server id> <run id>
#   stop  <wall us> <server id> <run id>
# The run id (4th field) lets report.py pair lines with dispatchd's logs.
# Appends of one short line with O_APPEND are atomic, so the two owners can
# share the file.
log=${DD_BENCH_CHILD_LOG:?}
pgidf=${DD_BENCH_DIR:?}/child.$$.pgid
trap 'printf "stop %s %s %s\n" "${EPOCHREALTIME/./}" "$DISPATCHD_SERVER_ID" "$DISPATCHD_RUN_ID" >>"$log"; rm -f "$pgidf"; exit 0' TERM
printf 'start %s %s %s\n' "${EPOCHREALTIME/./}" "$DISPATCHD_SERVER_ID" "$DISPATCHD_RUN_ID" >>"$log"
# For run.sh's EXIT trap: dispatchd starts us in our own session, so our pid
# is our process group; if dispatchd itself dies we must not be left behind.
# The TERM trap removes the file again.
echo $$ >"$pgidf"
# For run.sh's wait: one file test instead of rereading the shared log.
: >"$DD_BENCH_DIR/started.$DISPATCHD_RUN_ID"
# `wait` returns as soon as TERM arrives (a foreground sleep would delay the
# trap until it ended). dispatchd signals the whole group, so sleep goes too.
while :; do
  sleep 5 &
  wait $!
done
