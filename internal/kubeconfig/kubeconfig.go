// Package kubeconfig loads the client configuration our binaries talk to a
// cluster with, the same way in every binary.
package kubeconfig

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Load returns the configuration in the kubeconfig file at path or, when
// path is empty, the usual places in kubectl's order: $KUBECONFIG,
// ~/.kube/config, then the in-cluster service account.
func Load(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("failed to load kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("failed to load a kubeconfig ($KUBECONFIG, ~/.kube/config) or the in-cluster configuration: %w", err)
	}
	return cfg, nil
}
