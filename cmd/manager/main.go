// Command addon-manager (installed as /manager) is the cluster-proxy hub
// addon-manager: it runs the proxy-servers a ManagedProxyConfiguration
// describes and registers the cluster-proxy addon with OCM.
package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/command"
)

func main() {
	opts := addonmanager.NewOptions()
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "cluster-proxy hub addon-manager",
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Complete()
			if err := opts.Validate(); err != nil {
				return err
			}
			cfg, err := restConfig(opts.Kubeconfig)
			if err != nil {
				return err
			}
			logger := klog.NewKlogr()
			ctrl.SetLogger(logger)
			ctx := klog.NewContext(ctrl.SetupSignalHandler(), logger)
			return addonmanager.Run(ctx, cfg, opts)
		},
	}
	opts.AddFlags(cmd.Flags())
	command.AddKlogFlags(cmd, command.DefaultVerbosity)
	command.Execute(cmd)
}

// restConfig loads the hub configuration from path, or the usual places
// (in-cluster, $KUBECONFIG, ~/.kube/config) when path is empty.
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := config.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("failed to load the hub configuration: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("failed to load kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}
