#!/usr/bin/env bash
# deploy/metrics.txt is well formed, and every dispatchd_* name used by the
# dashboard, the alert rules and their tests is in it (histograms may be used
# through _bucket/_sum/_count).
set -euo pipefail
root=${DD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
contract=$root/deploy/metrics.txt
fail=0
err() { echo "$*" >&2; fail=1; }

declare -A mtype
while read -r name type labels help; do
  case $name in ''|'#'*) continue ;; esac
  # dispatchd_* are ours; process_* the client libraries' standard ones
  [[ $name =~ ^(dispatchd|process)_[a-z0-9_]+$ ]] || err "metrics.txt: bad metric name '$name'"
  [ -z "${mtype[$name]:-}" ] || err "metrics.txt: '$name' listed twice"
  case $type in
    counter) [[ $name == *_total ]] || err "metrics.txt: counter '$name' must end in _total" ;;
    gauge) ;;
    histogram) [[ $name == *_seconds || $name == *_bytes ]] || err "metrics.txt: histogram '$name' needs a unit suffix" ;;
    *) err "metrics.txt: '$name' has unknown type '$type'" ;;
  esac
  [[ $labels == - || $labels =~ ^[a-z_]+(,[a-z_]+)*$ ]] || err "metrics.txt: '$name' has bad labels '$labels'"
  [ -n "$help" ] || err "metrics.txt: '$name' has no help text"
  mtype[$name]=$type
done <"$contract"

known() {
  local n=$1 base
  [ -n "${mtype[$n]:-}" ] && return 0
  for suffix in _bucket _sum _count; do
    base=${n%"$suffix"}
    [ "$base" != "$n" ] && [ "${mtype[$base]:-}" = histogram ] && return 0
  done
  return 1
}

used() { # file -> every dispatchd_* token outside comments
  sed 's/#.*$//' "$1" | grep -o 'dispatchd_[a-z0-9_]*' | sort -u || true
}
n=0
for f in deploy/prometheus/dispatchd-rules.yml deploy/prometheus/dispatchd-rules.test.yml; do
  for m in $(used "$root/$f"); do
    n=$((n + 1))
    known "$m" || err "$f uses '$m', which is not in deploy/metrics.txt"
  done
done
# The dashboard is JSON: look only at query expressions ('#' is not a comment there).
for m in $(jq -r '.. | objects | .expr? // empty' "$root/deploy/grafana/dispatchd.json" |
           grep -o 'dispatchd_[a-z0-9_]*' | sort -u); do
  n=$((n + 1))
  known "$m" || err "deploy/grafana/dispatchd.json uses '$m', which is not in deploy/metrics.txt"
done
[ $fail = 0 ] && echo "ok: ${#mtype[@]} metrics in the contract, $n uses checked"
exit $fail
