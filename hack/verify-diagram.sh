#!/usr/bin/env bash
# Fails when docs/architecture.svg is not what docs/architecture.d2 renders
# (D2's layout and text measurement are deterministic: the same source and
# D2 version give the same bytes). Called by `make verify`:
#   hack/verify-diagram.sh <d2> [d2 flags...]
set -o errexit -o nounset -o pipefail

d2=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$d2" "$@" docs/architecture.d2 "$out/architecture.svg" 2>"$out/log" || {
  cat "$out/log" >&2
  echo "verify-diagram: docs/architecture.d2 does not compile (above)" >&2
  exit 1
}
if ! cmp -s "$out/architecture.svg" docs/architecture.svg; then
  echo "verify-diagram: docs/architecture.svg is not what docs/architecture.d2 renders: run 'make diagram' and commit both" >&2
  exit 1
fi
echo "verify-diagram: docs/architecture.svg is the render of docs/architecture.d2"
