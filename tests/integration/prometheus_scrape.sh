#!/usr/bin/env bash
# A real Prometheus scrapes the dd_metrics_http endpoint.
#
# Starts metrics_target (dd_metrics_http with a few contract metrics) and the
# Debian prometheus binary, both on free loopback ports with all state in a
# temp dir (never the packaged service on :9090), scraping every second; then
# waits (bounded) until Prometheus' query API returns dispatchd_build_info and
# checks a few values. Everything started here is stopped by the EXIT trap.
set -euo pipefail
root=${DD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
target_bin=${METRICS_TARGET:-${DD_BINARY_DIR:-$root/build}/tests/integration/metrics_target}
command -v prometheus >/dev/null || { echo "prometheus not installed (scripts/install-deps.sh)" >&2; exit 1; }
[ -x "$target_bin" ] || { echo "metrics_target not built: '$target_bin'" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dd-prom-test.XXXXXX")
# metrics_target is ours (sanitized in the ASan build): its reports go to
# $tmp/sanitizer.PID, and any report fails the test (cleanup).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$tmp/sanitizer"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$tmp/sanitizer"
target_pid=""
prom_pid=""
stop() { # pid: TERM, up to 5 s, then KILL; always reaped
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? f
  stop "$prom_pid"
  stop "$target_pid"
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    echo "FAIL: sanitizer report in $f:" >&2; head -n 200 "$f" >&2; rc=1
  done < <(grep -rlIE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp" 2>/dev/null)
  if [ $rc != 0 ]; then
    echo "--- metrics_target log"; tail -n 20 "$tmp/target.log" 2>/dev/null || true
    echo "--- prometheus log"; tail -n 30 "$tmp/prometheus.log" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- the target: port 0, it tells us which port it got -------------------------
"$target_bin" 127.0.0.1:0 >"$tmp/target.out" 2>"$tmp/target.log" &
target_pid=$!
for _ in $(seq 100); do
  grep -q '^listening ' "$tmp/target.out" 2>/dev/null && break
  kill -0 "$target_pid" 2>/dev/null || fail "metrics_target exited early"
  sleep 0.1
done
target=$(sed -n 's/^listening //p' "$tmp/target.out")
[ -n "$target" ] || fail "metrics_target did not report its address"
echo "target on $target"

# The endpoint as a scraper sees it, before Prometheus is involved.
curl -fsS -D "$tmp/headers" -o "$tmp/metrics" "http://$target/metrics" || fail "GET /metrics"
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$tmp/headers" ||
  fail "wrong content type: $(grep -i content-type "$tmp/headers")"
# Every exported family is in the contract list.
for name in $(sed -n 's/^# TYPE \([^ ]*\) .*/\1/p' "$tmp/metrics"); do
  grep -q "^$name " "$root/deploy/metrics.txt" || fail "'$name' is exported but not in deploy/metrics.txt"
done

# --- Prometheus ----------------------------------------------------------------
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $root/deploy/prometheus/dispatchd-rules.yml
scrape_configs:
  - job_name: dispatchd
    static_configs:
      - targets: ['$target']
EOF
prom=""
for attempt in 1 2 3; do # the free port may be taken between probe and bind
  port=$(free_port)
  prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
  prom_pid=$!
  for _ in $(seq 150); do
    kill -0 "$prom_pid" 2>/dev/null || break
    if curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then prom=127.0.0.1:$port; break; fi
    sleep 0.2
  done
  [ -n "$prom" ] && break
  stop "$prom_pid"
  prom_pid=""
done
[ -n "$prom" ] || fail "prometheus did not become ready"
echo "prometheus on $prom"

query() { # PromQL -> JSON result array
  curl -fsS --get --data-urlencode "query=$1" "http://$prom/api/v1/query" | jq -c '.data.result'
}

# --- wait for the series (bounded) -----------------------------------------------
got="[]"
deadline=$((SECONDS + 30))
while [ $SECONDS -lt $deadline ]; do
  got=$(query 'dispatchd_build_info')
  [ "$got" != "[]" ] && break
  sleep 0.5
done
[ "$got" != "[]" ] || fail "dispatchd_build_info never arrived in Prometheus"
echo "dispatchd_build_info: $got"
jq -e '.[0].metric.job == "dispatchd" and .[0].metric.version == "0.0.0-test" and .[0].value[1] == "1"' \
  <<<"$got" >/dev/null || fail "unexpected dispatchd_build_info: $got"

[ "$(query 'up{job="dispatchd"}' | jq -r '.[0].value[1]')" = 1 ] || fail "up is not 1"
[ "$(query 'dispatchd_dispatchers_active' | jq -r '.[0].value[1]')" = 2 ] ||
  fail "dispatchd_dispatchers_active is not 2"
# The histogram and the labelled gauge made it through the parser intact.
[ "$(query 'dispatchd_takeover_duration_seconds_count' | jq -r '.[0].value[1]')" = 2 ] ||
  fail "takeover histogram count is not 2"
[ "$(query 'count(dispatchd_stack_up == 1)' | jq -r '.[0].value[1]')" = 2 ] ||
  fail "expected two stack_up series"
# Scrapes keep succeeding over time (the counter the target bumps every second grows).
# (bounded: 1 s scrapes, so a few seconds unless the machine is very slow)
first=$(query 'dispatchd_reconcile_cycles_total' | jq -r '.[0].value[1]')
second=$first
deadline=$((SECONDS + 30))
while [ $SECONDS -lt $deadline ]; do
  second=$(query 'dispatchd_reconcile_cycles_total' | jq -r '.[0].value[1]')
  [ "$second" -gt "$first" ] && break
  sleep 0.5
done
[ "$second" -gt "$first" ] || fail "counter did not grow between scrapes in 30 s ($first -> $second)"
# Our rules load into a real Prometheus, and none fires against healthy metrics.
nrules=$(grep -c '^ *- alert: ' "$root/deploy/prometheus/dispatchd-rules.yml")
jq -e --argjson n "$nrules" '.data.groups[0].rules | length == $n' <(curl -fsS "http://$prom/api/v1/rules") >/dev/null ||
  fail "rules not loaded (expected the $nrules alerts of deploy/prometheus/dispatchd-rules.yml)"
firing=$(curl -fsS "http://$prom/api/v1/alerts" | jq -r '[.data.alerts[] | select(.state == "firing") | .labels.alertname] | join(",")')
[ -z "$firing" ] || fail "alerts firing against healthy metrics: $firing"

# --- the target stops cleanly on SIGTERM (exit 0 = every handle closed) ---------
kill -TERM "$target_pid"
rc=0
wait "$target_pid" || rc=$?
target_pid=""
[ $rc = 0 ] || fail "metrics_target exited $rc after SIGTERM"
echo "ok"
