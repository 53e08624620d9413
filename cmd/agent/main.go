// Command addon-agent (installed as /agent) is the cluster-proxy addon-agent
// on managed clusters: it renews the addon Lease while the proxy-agent is
// connected, serves the agent pod's health endpoint and, for PortForward
// entrypoints, relays the proxy-agent to the hub proxy-servers.
package main

import (
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"open-cluster-management.io/cluster-proxy/internal/addonagent"
	"open-cluster-management.io/cluster-proxy/internal/command"
)

func main() {
	opts := addonagent.NewOptions()
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "cluster-proxy addon-agent",
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
	command.AddKlogFlags(cmd, command.DefaultVerbosity)
	command.Execute(cmd)
}
