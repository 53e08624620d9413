// Command addon-agent (installed as /agent) is the cluster-proxy addon-agent
// on managed clusters: it renews the addon Lease while the proxy-agent is
// connected and serves the agent pod's health endpoint.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"open-cluster-management.io/cluster-proxy/pkg/addonagent"
)

func main() {
	opts := addonagent.NewOptions()
	cmd := &cobra.Command{
		Use:           "agent",
		Short:         "cluster-proxy addon-agent",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Complete()
			if err := opts.Validate(); err != nil {
				return err
			}
			ctx := klog.NewContext(ctrl.SetupSignalHandler(), klog.NewKlogr())
			return addonagent.Run(ctx, opts)
		},
	}
	opts.AddFlags(cmd.Flags())
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", "2")
	cmd.Flags().AddGoFlagSet(klogFlags)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}
