#!/usr/bin/env bash
# render-rules.sh BASE_URL OUT_DIR - the alert rules (and their unit tests)
# with clickable runbook links. The checked-in dispatchd-rules.yml links
# "docs/runbook.md#<alert>", relative to this repository: Alertmanager and
# Grafana show that as plain text. BASE_URL is where docs/runbook.md is
# served in your organisation, e.g.
#   https://git.example.com/ops/dispatchd/blob/main/docs/runbook.md
# and every "runbook_url: docs/runbook.md#x" becomes "runbook_url: BASE_URL#x".
# Writes OUT_DIR/dispatchd-rules.yml and OUT_DIR/dispatchd-rules.test.yml
# (run `promtool test rules OUT_DIR/dispatchd-rules.test.yml` to check them),
# then load OUT_DIR/dispatchd-rules.yml in Prometheus. Exit 2 on bad input.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 BASE_URL OUT_DIR   (BASE_URL: http(s)://... where docs/runbook.md is served)" >&2; exit 2; }
[ $# -eq 2 ] || usage
base=$1 out=$2
# no spaces, '#', quotes or backslashes: the value goes into YAML and awk -v as is
[[ $base =~ ^https?://[^][:space:]#\\\"\'[]+$ ]] ||
  { echo "render-rules.sh: '$base' is not an http(s) URL without spaces, '#', quotes or backslashes: give the URL of docs/runbook.md itself" >&2; exit 2; }
mkdir -p "$out"
for f in dispatchd-rules.yml dispatchd-rules.test.yml; do
  awk -v b="$base" '{
    if (match($0, /runbook_url: docs\/runbook\.md#/)) {
      $0 = substr($0, 1, RSTART - 1) "runbook_url: " b "#" substr($0, RSTART + RLENGTH)
    }
    print
  }' "$here/$f" >"$out/$f.new"
  mv "$out/$f.new" "$out/$f"
done
n=$(grep -c "runbook_url: $base#" "$out/dispatchd-rules.yml" || true)
echo "rendered $n runbook links to $base#<alert> into $out/dispatchd-rules.yml (and its test file)"
