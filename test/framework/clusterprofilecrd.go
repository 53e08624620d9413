package framework

import (
	"fmt"
	"os"
	"path/filepath"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// clusterInventoryModule is the Cluster Inventory API module, which ships
// the ClusterProfile CRD as YAML.
const clusterInventoryModule = "sigs.k8s.io/cluster-inventory-api"

// clusterProfileCRDFile is the ClusterProfile CRD inside that module.
const clusterProfileCRDFile = "config/crd/bases/multicluster.x-k8s.io_clusterprofiles.yaml"

// ClusterProfileCRD returns the ClusterProfile CRD
// (multicluster.x-k8s.io/v1alpha1) of the sigs.k8s.io/cluster-inventory-api
// version go.mod requires, unchanged, for a test to create when it wants it.
func ClusterProfileCRD() (*apiextensionsv1.CustomResourceDefinition, error) {
	dir, err := moduleDir(clusterInventoryModule)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, clusterProfileCRDFile))
	if err != nil {
		return nil, fmt.Errorf("failed to read the ClusterProfile CRD: %w", err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		return nil, fmt.Errorf("failed to parse the ClusterProfile CRD: %w", err)
	}
	return crd, nil
}

// ClusterProfileCRDDir writes the ClusterProfile CRD into a new directory
// under dir and returns it, for StartAPIServer.
func ClusterProfileCRDDir(dir string) (string, error) {
	crd, err := ClusterProfileCRD()
	if err != nil {
		return "", err
	}
	data, err := yaml.Marshal(crd)
	if err != nil {
		return "", fmt.Errorf("failed to encode the ClusterProfile CRD: %w", err)
	}
	out := filepath.Join(dir, "cluster-inventory-crds")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", out, err)
	}
	if err := os.WriteFile(filepath.Join(out, filepath.Base(clusterProfileCRDFile)), data, 0o600); err != nil {
		return "", fmt.Errorf("failed to write the ClusterProfile CRD: %w", err)
	}
	return out, nil
}
