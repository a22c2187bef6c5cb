#!/usr/bin/env bash
# Every alert in dispatchd-rules.yml links to docs/runbook.md#<alert name in
# lower case>, and docs/runbook.md has a "## <AlertName>" heading that
# produces exactly that anchor (GitHub's slug rules: lower case, punctuation
# other than '-' and '_' dropped, spaces become '-', a repeated heading gets
# a -1, -2 ... suffix). Headings inside ``` fences do not count. Also: every
# in-page link (](#anchor)) of the runbook resolves to a heading.
set -euo pipefail
root=${DD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
rules=$root/deploy/prometheus/dispatchd-rules.yml
runbook=$root/docs/runbook.md
fail=0
err() { echo "$*" >&2; fail=1; }

[ -f "$runbook" ] || { echo "missing $runbook" >&2; exit 1; }

# "ALERT<TAB>runbook_url" for each rule (the URL of the rule the alert opens).
pairs=$(awk '
  /^ *- alert: */ { if (a != "") print a "\t" u; a = $3; u = "" }
  /^ *runbook_url: */ { u = $2 }
  END { if (a != "") print a "\t" u }
' "$rules")
[ -n "$pairs" ] || { echo "no alerts found in '$rules'" >&2; exit 1; }

# "LEVEL<TAB>ANCHOR<TAB>TEXT" for every heading outside code fences.
headings=$(awk '
  /^```/ { fence = !fence; next }
  fence { next }
  /^#+ / {
    level = index($0, " ") - 1
    text = substr($0, level + 2)
    slug = tolower(text)
    gsub(/[^a-z0-9 _-]/, "", slug)
    gsub(/ /, "-", slug)
    if (slug in seen) { n = seen[slug]++; slug = slug "-" n } else seen[slug] = 1
    print level "\t" slug "\t" text
  }
' "$runbook")

n=0
while IFS=$'\t' read -r alert url; do
  n=$((n + 1))
  want=$(tr '[:upper:]' '[:lower:]' <<<"$alert")
  [ "$url" = "docs/runbook.md#$want" ] ||
    err "alert '$alert': runbook_url is '$url', expected 'docs/runbook.md#$want'"
  line=$(awk -F'\t' -v s="$want" '$2 == s' <<<"$headings")
  if [ -z "$line" ]; then
    err "alert '$alert': docs/runbook.md has no heading with anchor '#$want' (add '## $alert')"
    continue
  fi
  IFS=$'\t' read -r level _ text <<<"$line"
  [ "$level" = 2 ] || err "alert '$alert': heading '$text' is level $level, expected '## $alert'"
  [ "$text" = "$alert" ] || err "alert '$alert': heading is '$text', expected exactly '$alert'"
done <<<"$pairs"

# Every in-page link [text](#anchor) of the runbook points at a heading.
for a in $(grep -o '](#[^)]*)' "$runbook" | sed 's/^](#//; s/)$//' | sort -u); do
  awk -F'\t' -v s="$a" '$2 == s { found = 1 } END { exit !found }' <<<"$headings" ||
    err "docs/runbook.md links to '#$a', which no heading produces"
done

[ $fail = 0 ] && echo "ok: $n alerts, each with a '## <alert>' section in docs/runbook.md; in-page links resolve"
exit $fail
