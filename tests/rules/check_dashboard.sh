#!/usr/bin/env bash
# The Grafana dashboard: every panel has a title and a description (they are
# its alt text), uses the ${DS_PROMETHEUS} datasource, every metric in every
# query is scoped by the $job and $instance template variables, and every
# query parses: the expressions are put into a generated recording-rules file
# (Grafana's $__ variables replaced by durations, $job/$instance by ".*") and
# checked with `promtool check rules`.
set -euo pipefail
root=${DD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
dash=$root/deploy/grafana/dispatchd.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
err() { echo "$*" >&2; fail=1; }

jq -e '.schemaVersion >= 36 and (.templating.list | any(.name == "DS_PROMETHEUS" and .type == "datasource"))' \
  "$dash" >/dev/null || err "dashboard: needs schemaVersion >= 36 and a DS_PROMETHEUS datasource variable"

for v in job instance; do
  jq -e --arg v "$v" '.templating.list | any(.name == $v and .type == "query" and .includeAll and .multi)' \
    "$dash" >/dev/null || err "dashboard: needs a multi-value query variable \$$v (with All)"
done
# Every metric selector (dispatchd_* and up) carries both matchers, so the
# variables filter every panel.
jq -r '.panels[] | select(.targets) | .id as $id | .targets[] | "\($id)\t\(.expr)"' "$dash" |
  python3 -c '
import re, sys
bad = 0
for line in sys.stdin:
    pid, expr = line.rstrip("\n").split("\t", 1)
    for m in re.finditer(r"\b(dispatchd_[a-z0-9_]+|up)\b(\{[^}]*\})?", expr):
        sel = m.group(2) or ""
        if "job=~\"$job\"" not in sel or "instance=~\"$instance\"" not in sel:
            print("panel %s: %s is not scoped by job=~\"$job\",instance=~\"$instance\"" % (pid, m.group(0)))
            bad = 1
sys.exit(bad)' >&2 || err "dashboard: a query ignores the job/instance variables (above)"

# Panels without a description, or whose description does not say what is normal.
jq -r '.panels[] | select(.type != "row") |
       select((.title // "") == "" or ((.description // "") | length) < 80 or
              ((.description // "") | test("Normal") | not)) |
       "panel \(.id) \"\(.title // "")\": needs a title and a description that says what is normal"' \
  "$dash" >"$tmp/bad"
jq -r '.panels[] | select(.type != "row") | select(.datasource.uid != "${DS_PROMETHEUS}" or
       ([.targets[]? | .datasource.uid != "${DS_PROMETHEUS}"] | any) or ((.targets // []) | length) == 0) |
       "panel \(.id) \"\(.title)\": needs targets on datasource ${DS_PROMETHEUS}"' "$dash" >>"$tmp/bad"
jq -r '[.panels[] | .title] | group_by(.) | .[] | select(length > 1) | "duplicate panel title \"\(.[0])\""' \
  "$dash" >>"$tmp/bad"
if [ -s "$tmp/bad" ]; then
  cat "$tmp/bad" >&2
  fail=1
fi

# One recording rule per query. A JSON string is a valid YAML double-quoted scalar.
{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  jq -r '.panels[] | select(.targets) | .id as $id | .targets[] |
         "      - record: dashboard:panel\($id)_\(.refId)\n        expr: \(.expr
            | gsub("\\$__rate_interval"; "5m") | gsub("\\$__interval"; "1m")
            | gsub("\\$__range"; "1h") | gsub("\\$job"; ".*") | gsub("\\$instance"; ".*")
            | tojson)"' "$dash"
} >"$tmp/dashboard-rules.yml"
if grep -n '\$' "$tmp/dashboard-rules.yml" >&2; then
  err "dashboard: unknown Grafana variable in a query (above)"
fi
if ! promtool check rules "$tmp/dashboard-rules.yml" >"$tmp/promtool.out" 2>&1; then
  cat "$tmp/promtool.out" >&2
  err "dashboard: a query does not parse"
fi
[ $fail = 0 ] && echo "ok: $(jq '[.panels[] | select(.type != "row")] | length' "$dash") panels," \
  "$(grep -c 'record:' "$tmp/dashboard-rules.yml") queries parse"
exit $fail
