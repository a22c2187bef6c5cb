#!/usr/bin/env bash
# deploy/prometheus/render-rules.sh: the rendered rules link every alert to
# BASE#<alert in lower case>, no relative link is left, and the rendered pair
# still passes promtool (check rules, and the unit tests with their
# annotations). A bad base URL is refused with exit 2.
set -euo pipefail
root=${DD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
out=$(mktemp -d "${TMPDIR:-/tmp}/dd-render.XXXXXX")
trap 'rm -rf "$out"' EXIT
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }
base=https://git.example.com/ops/dispatchd/blob/main/docs/runbook.md
"$root/deploy/prometheus/render-rules.sh" "$base" "$out"
alerts=$(awk '/^ *- alert: */ { print $3 }' "$root/deploy/prometheus/dispatchd-rules.yml")
for a in $alerts; do
  want="$base#$(tr '[:upper:]' '[:lower:]' <<<"$a")"
  got=$(awk -v a="$a" '/^ *- alert: */ { cur = $3 } /^ *runbook_url: */ && cur == a { print $2 }' "$out/dispatchd-rules.yml")
  [ "$got" = "$want" ] || err "$a: runbook_url '$got', expected '$want'"
done
! grep -n 'runbook_url: docs/' "$out/dispatchd-rules.yml" "$out/dispatchd-rules.test.yml" || err "a relative runbook_url is left"
promtool check rules "$out/dispatchd-rules.yml" >/dev/null || err "promtool check rules failed on the rendered rules"
promtool test rules "$out/dispatchd-rules.test.yml" >/dev/null || err "promtool test rules failed on the rendered pair"
set +e
"$root/deploy/prometheus/render-rules.sh" "git.example.com/runbook" "$out/bad" 2>"$out/err"; rc=$?
set -e
[ $rc -eq 2 ] || err "a base without http(s):// exited $rc, expected 2"
grep -q "is not an http(s) URL" "$out/err" || err "the refusal does not say why: $(cat "$out/err")"
[ $fail = 0 ] && echo "ok: $(wc -w <<<"$alerts") alerts render to $base#<alert>; promtool passes on the rendered pair"
exit $fail
