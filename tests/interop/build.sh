#!/usr/bin/env bash
# ctest fixture `interop`: builds the Go SDK test program (main.go) into OUT.
#   build.sh OUT
# The module's versions are pinned in go.mod/go.sum and never changed here
# (-mod=readonly); `go mod download` fetches only what go.sum lists, and does
# nothing when the module cache already has it.
set -euo pipefail
out=$1
cd "$(dirname "$0")"
go=$(command -v go || true)
[ -n "$go" ] || go=/usr/local/go/bin/go
[ -x "$go" ] || { echo "go not found: run scripts/install-deps.sh" >&2; exit 1; }
export GOFLAGS="-mod=readonly -buildvcs=false"
"$go" mod download
"$go" build -mod=readonly -o "$out.new" .
mv "$out.new" "$out"
echo "built $out with $("$go" version) and go.temporal.io/sdk $("$go" list -m -f '{{.Version}}' go.temporal.io/sdk)"
