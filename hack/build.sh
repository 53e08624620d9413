#!/usr/bin/env bash
# Builds every command in cmd/ into <outdir>, named after its directory, which
# is the binary's name in the image (SPEC §2): cmd/manager -> /manager, ...
# Used by `make build` and the Dockerfile. With --list it only prints the
# names of the binaries it builds, one per line (hack/verify-image.sh checks
# them against the commands the manifests start).
#   hack/build.sh <outdir> [version]
#   hack/build.sh --list
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# The binaries: every directory of cmd/.
binaries=()
for dir in cmd/*/; do
  binaries+=("$(basename "$dir")")
done

if [ "${1:-}" = --list ]; then
  printf '%s\n' "${binaries[@]}"
  exit 0
fi

out=$1 version=${2:-dev}
ldflags="-s -w -X open-cluster-management.io/cluster-proxy/internal/version.Version=$version"

mkdir -p "$out"
for name in "${binaries[@]}"; do
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name" "./cmd/$name"
done
