#!/usr/bin/env bash
# Builds the grpc-go interop peer (test/go-peer) into .cache/go-peer and prints
# its path. Idempotent: rebuilds only when the peer's sources changed.
# Exits 3 when Go is not installed (the tests then skip).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$here/test/go-peer"
out="$here/.cache/go-peer"
command -v go >/dev/null 2>&1 || { echo "go is not installed" >&2; exit 3; }
stamp="$(cd "$src" && find . -name '*.go' -o -name 'go.mod' -o -name 'go.sum' | sort | xargs sha256sum | sha256sum | cut -c1-16)"
if [ ! -x "$out/go-peer" ] || [ "$(cat "$out/stamp" 2>/dev/null)" != "$stamp" ]; then
  mkdir -p "$out"
  (cd "$src" && go build -o "$out/go-peer.tmp" .)
  mv "$out/go-peer.tmp" "$out/go-peer"
  echo "$stamp" > "$out/stamp"
fi
echo "$out/go-peer"
