#!/usr/bin/env bash
# bench/takeover/longpoll_check.sh - how much of loss detection is dispatchd's?
# Per trial: a `dispatchd run` owner, and next to it a bare curl doing the
# same long-poll dispatchd does (history?waitNewEvent=true&historyEventFilterType=2)
# on the owner's run; then `dispatchd takeover` replaces the run. Prints, from
# the old run's Terminated eventTime, when curl got its answer and when
# dispatchd logged ownership_lost. Loopback only; every wait is bounded; the
# EXIT trap stops what it started. Env: N (20 trials), DISPATCHD.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
D=${DISPATCHD:-$root/build/dispatchd}
N=${N:-20}
W=$(mktemp -d /tmp/dd-tblp.XXXXXX)
O= C=
cleanup() {
  local rc=$?
  for p in $O $C; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $O $C; do wait "$p" 2>/dev/null || true; done
  bash "$root/tests/fixtures/temporal.sh" stop "$W/t" || true
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
# until_grep FILE PATTERN: up to 10 s
until_grep() {
  for _ in $(seq 1 1000); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.01; done
  echo "timed out waiting for $2 in $1" >&2
  return 1
}
us_of() { # RFC 3339 UTC -> wall-clock µs
  python3 -c 'import sys, datetime as d
b, f = sys.argv[1].rstrip("Z").split(".")
t = d.datetime.strptime(b, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=d.timezone.utc)
print(int(t.timestamp()) * 1000000 + int(f[:6].ljust(6, "0")))' "$1"
}
ms() { python3 -c "print(f'{($2 - $1) / 1000:.1f}')"; }

bash "$root/tests/fixtures/temporal.sh" start "$W/t" >&2
U=$(cat "$W/t/url")
for _ in $(seq 1 10); do "$D" takeover lp warm --temporal-url "$U" --server-id w >/dev/null 2>&1; done
echo "trial curl_ms dispatchd_ms  (from the old run's Terminated eventTime)"
for i in $(seq 1 "$N"); do
  "$D" run --dispatcher lp/q --temporal-url "$U" --server-id "own$i" --metrics-listen off \
    2>"$W/o$i.log" &
  O=$!
  until_grep "$W/o$i.log" "event=owning"
  r=$(sed -n 's/.*event=owning.*run_id=\([^ ]*\).*/\1/p' "$W/o$i.log")
  (
    curl -sS --max-time 30 -o /dev/null \
      "$U/api/v1/namespaces/default/workflows/dispatcher-lp-q/history?execution.runId=$r&waitNewEvent=true&historyEventFilterType=2"
    echo "${EPOCHREALTIME/./}" >"$W/c$i"
  ) &
  C=$!
  sleep 0.3
  "$D" takeover lp q --temporal-url "$U" --server-id "tk$i" >/dev/null 2>&1
  wait "$C"; C=
  until_grep "$W/o$i.log" "event=ownership_lost"
  kill -TERM "$O"; wait "$O" || true; O=
  te=$(curl -fsS --max-time 10 "$U/api/v1/namespaces/default/workflows/dispatcher-lp-q/history?execution.runId=$r" |
    jq -r '.history.events[-1].eventTime')
  t=$(us_of "$te")
  lost=$(sed -n 's/.*event=ownership_lost.*wall_us=\([0-9]*\).*/\1/p' "$W/o$i.log")
  echo "$i $(ms "$t" "$(cat "$W/c$i")") $(ms "$t" "$lost")"
done
