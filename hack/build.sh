#!/usr/bin/env bash
# Builds every command in cmd/ into <outdir>, named as in the image (SPEC §2):
# cmd/addon-manager -> manager, cmd/addon-agent -> agent, others keep their
# directory name. Used by `make build` and the Dockerfile.
#   hack/build.sh <outdir> [version]
set -o errexit -o nounset -o pipefail

out=$1 version=${2:-dev}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
ldflags="-s -w -X open-cluster-management.io/cluster-proxy/pkg/version.Version=$version"

mkdir -p "$out"
for dir in cmd/*/; do
  name=$(basename "$dir")
  case $name in
    addon-manager) bin=manager ;;
    addon-agent) bin=agent ;;
    *) bin=$name ;;
  esac
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$bin" "./$dir"
done
