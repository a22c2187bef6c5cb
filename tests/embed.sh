#!/usr/bin/env bash
# The public API as an embedder uses it: tests/embed.c compiled against
# include/dispatchd.h alone, linked with the line the header gives.
#   tests/embed.sh CC SOURCE_DIR BINARY_DIR
set -euo pipefail
cc=${1:?} src=${2:?} bin=${3:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -I"$src/include" "$src/tests/embed.c" "$bin/libdispatchd.a" \
  $(pkg-config --libs libuv hiredis openssl) -o "$tmp/embed"
"$tmp/embed"
