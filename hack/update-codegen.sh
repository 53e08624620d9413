#!/usr/bin/env bash
# Generates the typed clientset, listers and informers of the cluster-proxy API
# into pkg/generated. Called by `make generate` with the pinned generators:
#   hack/update-codegen.sh <client-gen> <lister-gen> <informer-gen>
set -o errexit -o nounset -o pipefail

client_gen=$1 lister_gen=$2 informer_gen=$3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

module=open-cluster-management.io/cluster-proxy
apis=pkg/apis
out=pkg/generated
header=hack/boilerplate.go.txt
groups=(proxy/v1alpha1)

# Start from nothing so files of removed types do not linger.
rm -rf "$out"

"$client_gen" \
  --go-header-file "$header" \
  --clientset-name versioned \
  --input-base "$module/$apis" \
  --input "$(IFS=,; echo "${groups[*]}")" \
  --output-dir "$out/clientset" \
  --output-pkg "$module/$out/clientset"

pkgs=()
for g in "${groups[@]}"; do pkgs+=("./$apis/$g"); done

"$lister_gen" \
  --go-header-file "$header" \
  --output-dir "$out/listers" \
  --output-pkg "$module/$out/listers" \
  "${pkgs[@]}"

"$informer_gen" \
  --go-header-file "$header" \
  --versioned-clientset-package "$module/$out/clientset/versioned" \
  --listers-package "$module/$out/listers" \
  --output-dir "$out/informers" \
  --output-pkg "$module/$out/informers" \
  "${pkgs[@]}"
