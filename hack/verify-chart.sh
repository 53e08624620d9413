#!/usr/bin/env bash
# Fails when the addon-manager's RBAC or the Helm chart drift from their
# sources: config/rbac/role.yaml must be what the code's +kubebuilder:rbac
# markers generate (as `make manifests` does), and the chart must pass its
# static checks (helm lint, renders, values.yaml vs values.schema.json vs
# README, the chart's roles vs config/rbac/role.yaml). Called by
# `make verify`, before hack/verify.sh:
#   hack/verify-chart.sh <make> <controller-gen> <helm>
set -o errexit -o nounset -o pipefail

make=$1 controller_gen=$2 helm=$3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# go test runs in the package directory: the tools' paths must be absolute.
case $controller_gen in /*) ;; *) controller_gen=$root/$controller_gen ;; esac
case $helm in /*) ;; *) helm=$root/$helm ;; esac
"$make" "$controller_gen" "$helm" >/dev/null
failed=0
fail() { echo "verify-chart: $*" >&2; failed=1; }

# Generated into a scratch directory (the same invocation as the manifests
# target), so that nothing in the tree changes and hack/verify.sh still sees
# the tree as it was.
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
"$controller_gen" rbac:roleName=cluster-proxy-addon-manager paths=./internal/... output:rbac:artifacts:config="$generated"
if ! diff -r -u config/rbac "$generated" >&2; then
  fail "config/rbac is not what the +kubebuilder:rbac markers generate (diff above): run 'make manifests', make charts/cluster-proxy/templates/{clusterrole,role}.yaml grant the same, and commit"
fi

if ! HELM="$helm" go test -count=1 ./test/integration/helm/ -args -ginkgo.label-filter=static -ginkgo.fail-on-empty >&2; then
  fail "the chart's static checks failed (output above); 'make test-helm' runs all chart tests"
fi

[ "$failed" = 0 ] || exit 1
echo "verify-chart: config/rbac and the Helm chart are in order"
