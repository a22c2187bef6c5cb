#!/usr/bin/env bash
# The run command: installs what is missing, builds, and runs `dispatchd up`
# (local Temporal dev server + Redis, supervised; Ctrl-C stops everything).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
BUILD_DIR=$root/build "$root/scripts/build.sh"
exec "$root/build/dispatchd" up "$@"
