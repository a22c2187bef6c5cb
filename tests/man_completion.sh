#!/usr/bin/env bash
# dispatchd(1) and the bash completion against the binary's own --help: every
# command has a section in the man page and is completed after `dispatchd `;
# every option that `dispatchd CMD --help` lists appears in CMD's section (or
# the common options) and is completed after `dispatchd CMD --`. The
# completion runs in a real bash (complete -F). The files are the ones the
# build generated (src/cli/man.c); groff renders the page without warnings.
#   tests/man_completion.sh DISPATCHD MANPAGE COMPLETION
set -uo pipefail
dd=${1:?} man=${2:?} comp=${3:?}
n=0
ok() { n=$((n + 1)); }
fail() { echo "FAIL - $*" >&2; exit 1; }
check() { local what=$1; shift; if "$@"; then ok; else fail "$what"; fi; }

check "the man page is what this binary prints (rebuild?)" cmp -s "$man" <("$dd" __man)
check "the completion is what this binary prints (rebuild?)" \
  cmp -s "$comp" <("$dd" __completion bash)
if command -v groff >/dev/null; then
  w=$(groff -man -ww -z "$man" 2>&1)
  check "groff renders dispatchd.1 without warnings: $w" [ -z "$w" ]
fi
check "the completion is valid bash" bash -n "$comp"

# complete WORDS...: what the completion offers for the last word
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _dispatchd
           printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@"
}
# a man page section: from the command's marker to the next one (or EXIT STATUS)
section() { awk -v c="$1" '/^\.\\" command: / {on = ($3 == c)} /^\.SH EXIT/ {on = 0} on' "$man"; }
common=$(awk '/^\.SH COMMON OPTIONS/ {on = 1; next} /^\.SH/ {on = 0} on' "$man")
roff() { sed 's/-/\\-/g' <<<"$1"; }

cmds=$("$dd" --help | awk '/^commands:/ {on = 1; next} on && NF {print $1}' | grep -v '^Run$')
check "--help lists commands" [ -n "$cmds" ]
offered=$(complete_words dispatchd "")
for c in $cmds; do
  check "dispatchd <TAB> offers $c" grep -qx -- "$c" <<<"$offered"
  check "the man page has a section for $c" grep -qx ".\\\\\" command: $c" "$man"
  sec=$(section "$c")
  copts=$(complete_words dispatchd "$c" --)
  opts=$("$dd" "$c" --help | sed -n 's/^  --\([a-z0-9-]*\).*/\1/p' | sort -u)
  check "$c --help lists options" [ -n "$opts" ]
  for o in $opts; do
    r=$(roff "$o")
    check "dispatchd.1 documents $c --$o" \
      bash -c 'grep -qF -- "\\-\\-$1" <<<"$2" || grep -qF -- "\\-\\-$1" <<<"$3"' _ "$r" "$sec" "$common"
    check "dispatchd $c -- <TAB> offers --$o" grep -qx -- "--$o" <<<"$copts"
  done
  # nothing offered that --help does not list
  for o in $copts; do
    check "dispatchd $c offers $o, which its --help lists" grep -qx -- "${o#--}" <<<"$opts"
  done
  echo "ok - $c: $(wc -w <<<"$opts") options in the man page and the completion"
done
lv=$(complete_words dispatchd run --log-level "" | tr '\n' ' ')
check "--log-level offers its values ($lv)" [ "$lv" = "debug info warn error " ]
st=$(complete_words dispatchd stack sta | tr '\n' ' ')
check "stack sta<TAB> offers start status ($st)" [ "$st" = "start status " ]
af=$(complete_words dispatchd run --dispatcher a/b -- ech | tr '\n' ' ')
check "after --, commands are completed ($af)" grep -qw echo <<<"$af"
echo "$n checks passed"
