#!/usr/bin/env bash
# What `cmake --install` and `cpack -G DEB` deliver (cmake/install.cmake):
#  1. --prefix DIR: the whole tree is there, the units' ExecStart is DIR's
#     binary, `systemd-analyze verify` accepts every unit (when the tool runs
#     here), tests/embed.c builds against the installed header and .pc alone,
#     and a bad value in a unit's EnvironmentFile fails ExecStart with exit 2
#     and the CLI's message on stderr (the journal);
#  2. DESTDIR + --prefix /usr (what a package does): units say /usr/bin, and
#     the relocatable .pc still points into the DESTDIR tree;
#  3. cpack -G DEB: the package's name, dependencies and contents.
#   tests/install.sh CC SOURCE_DIR BINARY_DIR
set -euo pipefail
cc=${1:?} src=${2:?} bin=${3:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dd-install.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); echo "ok - $*"; }
fail() { echo "FAIL - $*" >&2; exit 1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$bin/CMakeCache.txt")
libdir=${libdir:-lib}

# --- 1. --prefix -------------------------------------------------------------
p=$tmp/prefix
cmake --install "$bin" --prefix "$p" >"$tmp/install.log"
for f in bin/dispatchd "$libdir/libdispatchd.a" "$libdir/pkgconfig/dispatchd.pc" \
         include/dispatchd.h lib/systemd/system/dispatchd.service \
         lib/systemd/system/dispatchd-reconcile.service lib/systemd/user/dispatchd-up.service \
         share/dispatchd/metrics.txt share/dispatchd/dispatchd.env.example \
         share/dispatchd/grafana/dispatchd.json share/dispatchd/grafana/provisioning/dashboards.yaml \
         share/dispatchd/prometheus/dispatchd-rules.yml \
         share/man/man1/dispatchd.1 share/bash-completion/completions/dispatchd; do
  check "installed: $f" test -s "$p/$f"
done
check "the installed binary runs" "$p/bin/dispatchd" version
units=("$p"/lib/systemd/system/*.service "$p"/lib/systemd/user/*.service)
check "three units" [ ${#units[@]} -eq 3 ]
for u in "${units[@]}"; do
  check "$(basename "$u"): ExecStart is the installed binary" \
    grep -q "^ExecStart=$p/bin/dispatchd " "$u"
  check "$(basename "$u"): nothing left unconfigured" bash -c "! grep -q @ '$u'"
done
check "dispatchd.service reads /etc/dispatchd/dispatchd.env" \
  grep -qx "EnvironmentFile=/etc/dispatchd/dispatchd.env" "$p/lib/systemd/system/dispatchd.service"

# The stop budget: systemd's TimeoutStopSec must cover the default
# --stop-timeout (the child's TERM->KILL) plus one release request.
secs() { sed -n "s/^$1=\([0-9]*\)s$/\1/p" "$2"; }
stop_s=$(secs TimeoutStopSec "$p/lib/systemd/system/dispatchd.service")
check "TimeoutStopSec ($stop_s s) > --stop-timeout + --temporal-timeout defaults (10 s + 10 s)" \
  [ "${stop_s:-0}" -gt 20 ]
check "KillMode=mixed: SIGTERM reaches dispatchd alone, which stops its child first" \
  grep -qx KillMode=mixed "$p/lib/systemd/system/dispatchd.service"
check "ExecStopPost= runs the installed binary's last-will (a crash's records released at once)" \
  grep -qx "ExecStopPost=-$p/bin/dispatchd last-will" "$p/lib/systemd/system/dispatchd.service"
check "RuntimeDirectory= (where run writes the server id last-will reads)" \
  grep -qx "RuntimeDirectory=dispatchd" "$p/lib/systemd/system/dispatchd.service"

if command -v systemd-analyze >/dev/null; then
  # --man=no: the man page is checked below, not through man(1)'s database
  out=$(systemd-analyze verify --man=no "$p"/lib/systemd/system/*.service 2>&1) || \
    fail "systemd-analyze verify (system units): $out"
  check "systemd-analyze verify: system units, no complaint${out:+ ($out)}" [ -z "$out" ]
  mkdir -p "$tmp/run"; chmod 700 "$tmp/run"
  out=$(XDG_RUNTIME_DIR=$tmp/run systemd-analyze --user verify --man=no \
          "$p"/lib/systemd/user/*.service 2>&1) || fail "systemd-analyze verify (user unit): $out"
  check "systemd-analyze verify: user unit, no complaint${out:+ ($out)}" [ -z "$out" ]
else
  echo "# skip: systemd-analyze not installed here, units not verified"
fi

# A bad value in the EnvironmentFile: ExecStart (as systemd would run it,
# $DISPATCHD_RUN_ARGS empty) exits 2 with the CLI's reason on stderr.
exec_line=$(sed -n 's/^ExecStart=//p' "$p/lib/systemd/system/dispatchd.service")
printf 'DISPATCHD_DISPATCHER=billing/emails\nDISPATCHD_HEARTBEAT_INTERVAL=5parsecs\n' >"$tmp/bad.env"
rc=0
# shellcheck disable=SC2046,SC2086
env -i $(cat "$tmp/bad.env") ${exec_line% \$DISPATCHD_RUN_ARGS} 2>"$tmp/bad.err" || rc=$?
check "a bad EnvironmentFile value: exit 2 (got $rc)" [ $rc -eq 2 ]
check "... and stderr names the variable and the fix" \
  grep -q "environment DISPATCHD_HEARTBEAT_INTERVAL '5parsecs': not a duration (use e.g." "$tmp/bad.err"

# The embedder's program, built from the installed tree alone.
export PKG_CONFIG_PATH=$p/$libdir/pkgconfig
check "pkg-config knows dispatchd" pkg-config --exists dispatchd
check "its version is the project's" [ "$(pkg-config --modversion dispatchd)" = \
  "$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$bin/CMakeCache.txt")" ]
check "--libs: -ldispatchd" bash -c "pkg-config --libs dispatchd | grep -q -- -ldispatchd"
flags=$(pkg-config --cflags --libs --static dispatchd)
echo "# pkg-config --cflags --libs --static dispatchd: $flags"
check "--static adds libuv and hiredis" bash -c "grep -q -- -luv <<<'$flags' && grep -q -- -lhiredis <<<'$flags'"
cp "$src/tests/embed.c" "$tmp/embed.c" # away from the source tree's include/
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -Werror "$tmp/embed.c" $flags -o "$tmp/embed"
check "embed.c built against the installed header and .pc runs" "$tmp/embed"

# --- 2. DESTDIR, prefix /usr ---------------------------------------------------
r=$tmp/root
DESTDIR=$r cmake --install "$bin" --prefix /usr >"$tmp/install-destdir.log"
check "DESTDIR: binary in usr/bin" test -x "$r/usr/bin/dispatchd"
check "DESTDIR: the unit runs /usr/bin/dispatchd" \
  grep -q '^ExecStart=/usr/bin/dispatchd run ' "$r/usr/lib/systemd/system/dispatchd.service"
inc=$(PKG_CONFIG_PATH=$r/usr/$libdir/pkgconfig pkg-config --cflags-only-I dispatchd)
inc=${inc%% *}
check "DESTDIR: the relocatable .pc points into the tree ($inc)" \
  test -f "${inc#-I}/dispatchd.h"

# --- 3. the .deb ---------------------------------------------------------------
if command -v dpkg-deb >/dev/null; then
  (cd "$tmp" && cpack -G DEB --config "$bin/CPackConfig.cmake" -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1) || \
    { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB"; }
  deb=$(ls "$tmp"/pkg/*.deb)
  echo "# built $(basename "$deb")"
  check "package name dispatchd" [ "$(dpkg-deb -f "$deb" Package)" = dispatchd ]
  dep=$(dpkg-deb -f "$deb" Depends)
  for d in libuv1 libhiredis0.14 libjansson4 libssl3; do
    check "Depends has $d ($dep)" grep -q "\b$d\b" <<<"$dep"
    check "$d is a package of this system" bash -c "apt-cache policy $d | grep -q Candidate"
  done
  dpkg-deb -c "$deb" | awk '{print $6}' >"$tmp/deb.list"
  for f in ./usr/bin/dispatchd ./usr/lib/systemd/system/dispatchd.service \
           ./usr/lib/systemd/user/dispatchd-up.service ./usr/include/dispatchd.h \
           ./usr/share/man/man1/dispatchd.1 ./usr/share/bash-completion/completions/dispatchd \
           ./usr/share/dispatchd/grafana/dispatchd.json; do
    check "the .deb holds $f" grep -qx -- "$f" "$tmp/deb.list"
  done
  dpkg-deb -x "$deb" "$tmp/x"
  check "the .deb's unit runs /usr/bin/dispatchd" \
    grep -q '^ExecStart=/usr/bin/dispatchd run ' "$tmp/x/usr/lib/systemd/system/dispatchd.service"
else
  echo "# skip: dpkg-deb not installed here, no .deb built"
fi
echo "$n passed"
