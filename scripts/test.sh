#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test (unit,
# integration against real Redis and Temporal, rules, smoke scenarios), then
# runs the unit and integration tests again under AddressSanitizer+UBSan.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"

BUILD_DIR=$root/build "$root/scripts/build.sh"
(cd "$root/build" && ctest --output-on-failure --timeout 600 -j2)

if [ "${DD_SKIP_ASAN:-0}" != 1 ]; then
  echo "== again under AddressSanitizer + UBSan"
  BUILD_DIR=$root/build-asan BUILD_TYPE=Debug "$root/scripts/build.sh" -DDD_SANITIZE=ON
  (cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure --timeout 600 -j2 -L asan)
fi
