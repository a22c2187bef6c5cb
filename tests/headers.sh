#!/usr/bin/env bash
# Every header compiles on its own and when included twice: it includes what
# it uses and its guard covers all of it (issue 17). Run by ctest (headers).
#   tests/headers.sh CC SOURCE_DIR
set -euo pipefail
cc=${1:?compiler} src=${2:?source dir}
cflags=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wstrict-prototypes -Wwrite-strings
        -Wshadow -Wno-unused-parameter -fsyntax-only -I"$src/src" -I"$src/include")
# shellcheck disable=SC2207
cflags+=($(pkg-config --cflags libuv hiredis openssl jansson))
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0 bad=0
while IFS= read -r h; do
  rel=${h#"$src"/}
  inc=${rel#src/}; inc=${inc#include/}
  printf '#include "%s"\n#include "%s"\n' "$inc" "$inc" >"$tmp/t.c"
  if ! "$cc" "${cflags[@]}" "$tmp/t.c" 2>"$tmp/err"; then
    echo "not ok - $rel does not compile alone and twice:"; sed 's/^/    /' "$tmp/err" | head -20
    bad=$((bad + 1))
  fi
  n=$((n + 1))
done < <(find "$src/src" "$src/include" -name '*.h' | sort)
echo "$n headers, $bad failed"
[ "$n" -gt 20 ] && [ "$bad" = 0 ]
