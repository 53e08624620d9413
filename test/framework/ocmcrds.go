package framework

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// ocmAPIModule is the module shipping OCM's CRDs as YAML files.
const ocmAPIModule = "open-cluster-management.io/api"

// ocmHubCRDs are the hub CRDs of the api module the addon-manager works with.
var ocmHubCRDs = []string{
	"cluster/v1/0000_00_clusters.open-cluster-management.io_managedclusters.crd.yaml",
	"cluster/v1beta2/0000_00_clusters.open-cluster-management.io_managedclustersets.crd.yaml",
	"cluster/v1beta2/0000_01_clusters.open-cluster-management.io_managedclustersetbindings.crd.yaml",
	"cluster/v1beta1/0000_02_clusters.open-cluster-management.io_placements.crd.yaml",
	"cluster/v1beta1/0000_03_clusters.open-cluster-management.io_placementdecisions.crd.yaml",
	"addon/v1beta1/0000_00_addon.open-cluster-management.io_clustermanagementaddons.crd.yaml",
	"addon/v1beta1/0000_01_addon.open-cluster-management.io_managedclusteraddons.crd.yaml",
	"addon/v1beta1/0000_02_addon.open-cluster-management.io_addondeploymentconfigs.crd.yaml",
	"work/v1/0000_00_work.open-cluster-management.io_manifestworks.crd.yaml",
}

// OCMHubCRDs writes the OCM hub CRDs (clusters, cluster sets, placements,
// addons, ManifestWorks) from the open-cluster-management.io/api module into
// a new directory under dir and returns it, for StartAPIServer.
//
// The addon CRDs serve v1alpha1 and v1beta1 with v1alpha1 stored, which a
// real hub makes work with OCM's conversion webhook. An API server started
// for a test has no webhook, and storing v1beta1 objects as v1alpha1 without
// conversion would drop fields. So — standing in for the webhook and for
// nothing else — these CRDs keep only v1beta1, served and stored. The
// addon-framework and our code use v1beta1 only. The local environment runs
// the real webhook.
func OCMHubCRDs(dir string) (string, error) {
	moduleDir, err := moduleDir(ocmAPIModule)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "ocm-crds")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", out, err)
	}
	for _, rel := range ocmHubCRDs {
		data, err := os.ReadFile(filepath.Join(moduleDir, rel))
		if err != nil {
			return "", fmt.Errorf("failed to read OCM CRD %s: %w", rel, err)
		}
		if strings.HasPrefix(rel, "addon/") {
			if data, err = onlyVersion(data, "v1beta1"); err != nil {
				return "", fmt.Errorf("failed to rewrite OCM CRD %s: %w", rel, err)
			}
		}
		if err := os.WriteFile(filepath.Join(out, filepath.Base(rel)), data, 0o600); err != nil {
			return "", fmt.Errorf("failed to write OCM CRD %s: %w", rel, err)
		}
	}
	return out, nil
}

// onlyVersion keeps only version of a CRD, served and stored.
func onlyVersion(data []byte, version string) ([]byte, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		return nil, fmt.Errorf("failed to parse the CRD: %w", err)
	}
	var kept []apiextensionsv1.CustomResourceDefinitionVersion
	for _, v := range crd.Spec.Versions {
		if v.Name == version {
			v.Served, v.Storage = true, true
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("CRD %s has no version %s", crd.Name, version)
	}
	crd.Spec.Versions = kept
	crd.Spec.Conversion = nil
	return yaml.Marshal(crd)
}

// moduleDir returns the directory of a module the main module requires.
func moduleDir(module string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("failed to locate module %s: %w: %s", module, err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("failed to locate module %s: not downloaded (run go mod download)", module)
	}
	return dir, nil
}
