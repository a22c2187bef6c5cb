#!/usr/bin/env bash
# Every alert in dispatchd-rules.yml has a promtool test case where it fires
# (non-empty exp_alerts) and one where it must not (exp_alerts: []).
set -euo pipefail
root=${DD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
rules=$root/deploy/prometheus/dispatchd-rules.yml
tests=$root/deploy/prometheus/dispatchd-rules.test.yml

alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$rules")
[ -n "$alerts" ] || { echo "no alerts found in '$rules'" >&2; exit 1; }
# "firing NAME" / "quiet NAME" for each alert_rule_test case.
cases=$(awk '
  /^ *alertname:/ { a = $2 }
  /^ *exp_alerts: *\[ *\] *$/ { print "quiet", a; next }
  /^ *exp_alerts: *$/ { print "firing", a }
' "$tests")

fail=0
for a in $alerts; do
  for kind in firing quiet; do
    if ! grep -qx "$kind $a" <<<"$cases"; then
      echo "alert '$a' has no '$kind' test case in $(basename "$tests")" >&2
      fail=1
    fi
  done
done
for a in $(awk '{print $2}' <<<"$cases" | sort -u); do
  grep -qx "$a" <<<"$alerts" || { echo "test case for unknown alert '$a'" >&2; fail=1; }
done
[ $fail = 0 ] && echo "ok: $(wc -w <<<"$alerts") alerts, each tested firing and quiet"
exit $fail
