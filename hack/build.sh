#!/usr/bin/env bash
# Builds every command in cmd/ into <outdir>, named after its directory, which
# is the binary's name in the image (SPEC §2): cmd/manager -> /manager, ...
# Used by `make build` and the Dockerfile.
#   hack/build.sh <outdir> [version]
set -o errexit -o nounset -o pipefail

out=$1 version=${2:-dev}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
ldflags="-s -w -X open-cluster-management.io/cluster-proxy/internal/version.Version=$version"

mkdir -p "$out"
for dir in cmd/*/; do
  name=$(basename "$dir")
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name" "./$dir"
done
