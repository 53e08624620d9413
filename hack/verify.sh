#!/usr/bin/env bash
# Fails when the tree is not what its sources generate, or not formatted, vetted
# and tidy. Called by `make verify` (which also runs the linter):
#   hack/verify.sh <make>
set -o errexit -o nounset -o pipefail

make=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
failed=0
fail() { echo "verify: $*" >&2; failed=1; }

# Everything generated: deepcopy, clientset/listers/informers, the CRD.
# Snapshot them, regenerate, and compare: a hand edit of a generated file, or a
# source change without regeneration, shows up as a difference.
generated=(pkg/apis pkg/generated charts/cluster-proxy/crds)
snapshot=$(mktemp -d)
trap 'rm -rf "$snapshot"' EXIT
for p in "${generated[@]}"; do
  mkdir -p "$snapshot/$(dirname "$p")"
  cp -a "$p" "$snapshot/$p"
done
"$make" generate >/dev/null
for p in "${generated[@]}"; do
  if ! diff -r -u "$snapshot/$p" "$p" >&2; then
    fail "$p is not what 'make generate' produces (diff above; the regenerated files are now in place): never edit generated files by hand, run 'make generate' and commit"
  fi
done

# gofmt on every Go file of every module in the repository.
unformatted=$(git ls-files -z --cached --others --exclude-standard -- '*.go' | xargs -0 gofmt -l)
[ -z "$unformatted" ] || fail "gofmt needed on: $unformatted"

go vet ./... || fail "go vet failed"

# go.mod/go.sum must be tidy in the main module and in every tool module.
for mod in . hack/tools/*/; do
  mod=${mod%/}
  tidy=$(mktemp -d)
  cp "$mod/go.mod" "$mod/go.sum" "$tidy/"
  if ! (cd "$mod" && go mod tidy >/dev/null) ||
    ! cmp -s "$mod/go.mod" "$tidy/go.mod" || ! cmp -s "$mod/go.sum" "$tidy/go.sum"; then
    fail "go.mod/go.sum of $mod are not tidy; run 'go mod tidy' there"
  fi
  cp "$tidy/go.mod" "$tidy/go.sum" "$mod/"
  rm -rf "$tidy"
done

[ "$failed" = 0 ] || exit 1
echo "verify: generated code, CRDs, gofmt, go vet and go.mod files are in order"
