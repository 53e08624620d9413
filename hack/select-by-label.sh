#!/usr/bin/env bash
# Prints those of the given Ginkgo suite packages that hold at least one spec
# matching a label filter, one per line, and fails naming the filter when none
# does. Ginkgo reports a run of 0 specs as a pass, so without this a typo'd
# LABEL_FILTER would be green. Used by the Makefile's test-integration,
# test-helm and test-e2e when LABEL_FILTER is set:
#   [GO=go] [GO_TEST_FLAGS='-race -count=1'] hack/select-by-label.sh <filter> <package>...
#
# Each package is run once with -ginkgo.dry-run -ginkgo.fail-on-empty. That
# compiles it (with GO_TEST_FLAGS, so that the real run reuses the build) and
# walks its spec tree, but runs no setup: in a dry run Ginkgo skips
# BeforeSuite/AfterSuite and every BeforeAll/BeforeEach/It, so nothing is
# started. Plain Go tests (func TestX without RunSpecs) would run for real,
# and Ginkgo flags break them: pass only Ginkgo suite packages.
set -o errexit -o nounset -o pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <label-filter> <package>..." >&2
  exit 2
fi
filter=$1
shift
go=${GO:-go}
read -ra flags <<<"${GO_TEST_FLAGS:-}"

# Ginkgo's reason for failing an empty run under -ginkgo.fail-on-empty.
empty_reason='Detected no specs ran and --fail-on-empty is set'

# Package paths are shown without the module's prefix.
module=$("$go" list -m)
short() {
  local p out=()
  for p in "$@"; do out+=("${p#"$module"/}"); done
  echo "${out[*]}"
}

selected=() unmatched=()
for pkg in "$@"; do
  status=0
  out=$("$go" test "${flags[@]}" "$pkg" -args -ginkgo.dry-run -ginkgo.fail-on-empty \
    -ginkgo.label-filter="$filter" 2>&1) || status=$?
  if [ "$status" = 0 ] && ! grep -q '\[no test files\]' <<<"$out"; then
    selected+=("$pkg")
  elif [ "$status" != 0 ] && grep -qF "$empty_reason" <<<"$out"; then
    unmatched+=("$pkg")
  elif [ "$status" = 0 ]; then
    unmatched+=("$pkg")
  else
    echo "$out" >&2
    echo "select-by-label: the dry run of $(short "$pkg") with LABEL_FILTER='$filter' failed (output above): a build error, or a filter Ginkgo cannot parse" >&2
    exit 2
  fi
done

if [ "${#selected[@]}" = 0 ]; then
  # The labels the packages' specs use, to spot the typo (best effort: the
  # string arguments of Label(...) in their sources).
  mapfile -t dirs < <("$go" list -f '{{.Dir}}' "$@")
  labels=$(grep -rhoE --include='*_test.go' 'Label\([^)]*\)' "${dirs[@]}" 2>/dev/null |
    grep -oE '"[^"]*"' | tr -d '"' | sort -u | tr '\n' ' ')
  labels=${labels% }
  echo "select-by-label: LABEL_FILTER='$filter' matches no spec in $(short "$@"); the labels in use are: ${labels:-(none found)}" >&2
  exit 1
fi
echo "select-by-label: LABEL_FILTER='$filter' selects $(short "${selected[@]}")${unmatched:+ (no matching spec in $(short "${unmatched[@]}"))}" >&2
printf '%s\n' "${selected[@]}"
