#!/usr/bin/env bash
# Installs everything dispatchd needs to build, run and test on a fresh
# Debian 12 machine, and checks it. Safe to run again: it skips what is there.
#   - Debian packages (compiler, CMake, libuv, hiredis, OpenSSL, jansson, cmocka,
#     redis-server, redis-sentinel (the Sentinel tests), prometheus for promtool, jq, python3 and openssl for test helpers,
#     libfaketime for the clock-skew tests,
#     clang and its runtime libraries for scripts/fuzz.sh: libFuzzer, ASan, UBSan)
#   - the Temporal CLI (dev server), built once with `go install` into .tools/bin
#   - the Go modules of tests/interop (the pinned Temporal Go SDK), into Go's module cache
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TEMPORAL_CLI_VERSION=v1.5.1   # later tags carry a replace directive and refuse go install

pkgs=(build-essential cmake pkg-config git curl jq python3 openssl procps psmisc iproute2
      libuv1-dev libhiredis-dev libssl-dev libjansson-dev libcmocka-dev
      redis-server redis-sentinel redis-tools prometheus libfaketime
      clang libclang-rt-14-dev)   # only scripts/fuzz.sh needs these two
if [ "${DD_INSTALL_BENCH:-0}" = 1 ]; then
  pkgs+=(supervisor s6 runit etcd-server etcd-client hyperfine)
fi

sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Packages installed just now that start a system service on our default ports
# (redis-server on 6379, redis-sentinel on 26379, prometheus on 9090): we only want the binaries, and
# `dispatchd up` would find 6379 taken. Services that were there before are
# left alone.
if [ ${#missing[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
  for svc in redis-server redis-sentinel prometheus; do
    if printf '%s\n' "${missing[@]}" | grep -qx "$svc" && systemctl is-active --quiet "$svc" 2>/dev/null; then
      echo "install-deps: stopping the $svc system service the package just started"
      $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

bin="$root/.tools/bin"
if [ -x "$bin/temporal" ] && [ "$(cat "$bin/temporal.version" 2>/dev/null)" = "$TEMPORAL_CLI_VERSION" ]; then
  :
else
  command -v go >/dev/null || { echo "install-deps: go is needed to build the Temporal CLI" >&2; exit 1; }
  echo "install-deps: building the Temporal CLI $TEMPORAL_CLI_VERSION (once; takes minutes)"
  mkdir -p "$bin"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION"
  echo "$TEMPORAL_CLI_VERSION" >"$bin/temporal.version"
fi

# The Go SDK interop tests (tests/interop): the modules pinned in its go.sum,
# fetched now so the tests' build needs no network (a no-op when cached).
command -v go >/dev/null || { echo "install-deps: go is needed for tests/interop" >&2; exit 1; }
(cd "$root/tests/interop" && GOFLAGS="-mod=readonly -buildvcs=false" go mod download)

# Check, so a missing piece fails here and not in the middle of a test.
for c in cmake cc pkg-config redis-server redis-sentinel redis-cli jq python3 openssl promtool curl; do
  command -v "$c" >/dev/null || { echo "install-deps: '$c' is still missing" >&2; exit 1; }
done
for m in libuv hiredis openssl jansson cmocka; do
  pkg-config --exists "$m" || { echo "install-deps: pkg-config cannot find $m" >&2; exit 1; }
done
"$bin/temporal" server start-dev --help >/dev/null || { echo "install-deps: $bin/temporal does not run" >&2; exit 1; }
echo "install-deps: ok"
