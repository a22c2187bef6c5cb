#!/usr/bin/env bash
# The Grafana dashboard: every panel has a title and a description (they are
# its alt text), uses the ${DS_PROMETHEUS} datasource, and every query parses:
# the expressions are put into a generated recording-rules file (Grafana's
# $__ variables replaced by durations) and checked with `promtool check rules`.
set -euo pipefail
root=${DD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
dash=$root/deploy/grafana/dispatchd.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
err() { echo "$*" >&2; fail=1; }

jq -e '.schemaVersion >= 36 and (.templating.list | any(.name == "DS_PROMETHEUS" and .type == "datasource"))' \
  "$dash" >/dev/null || err "dashboard: needs schemaVersion >= 36 and a DS_PROMETHEUS datasource variable"

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
            | gsub("\\$__range"; "1h") | tojson)"' "$dash"
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
