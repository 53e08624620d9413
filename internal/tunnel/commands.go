// Package tunnel wires the konnectivity (apiserver-network-proxy) proxy-server
// and proxy-agent that carry cluster-proxy's reverse tunnels. The commands it
// builds accept the flags of ANP's own binaries, with the same names,
// defaults and meaning, so manifests written for either run unchanged.
package tunnel

import (
	"flag"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	agentapp "sigs.k8s.io/apiserver-network-proxy/cmd/agent/app"
	agentoptions "sigs.k8s.io/apiserver-network-proxy/cmd/agent/app/options"
	serverapp "sigs.k8s.io/apiserver-network-proxy/cmd/server/app"
	serveroptions "sigs.k8s.io/apiserver-network-proxy/cmd/server/app/options"
	"sigs.k8s.io/apiserver-network-proxy/pkg/util"
)

// defaultVerbosity is the klog verbosity ANP's binaries start with.
const defaultVerbosity = "4"

// NewServerCommand returns the proxy-server command with ANP's proxy-server
// flags and klog's flags.
func NewServerCommand() *cobra.Command {
	opts := serveroptions.NewProxyRunOptions()
	cmd := serverapp.NewProxyCommand(&serverapp.Proxy{}, opts)
	cmd.Flags().AddFlagSet(opts.Flags())
	addKlogFlags(cmd)
	return cmd
}

// NewAgentCommand returns the proxy-agent command with ANP's proxy-agent
// flags and klog's flags.
func NewAgentCommand() *cobra.Command {
	opts := agentoptions.NewGrpcProxyAgentOptions()
	cmd := agentapp.NewAgentCommand(&agentapp.Agent{}, opts)
	cmd.Flags().AddFlagSet(opts.Flags())
	addKlogFlags(cmd)
	return cmd
}

// addKlogFlags registers klog's flags on cmd under ANP's normalised names
// (dashes, not underscores) with ANP's default verbosity.
func addKlogFlags(cmd *cobra.Command) {
	fs := flag.NewFlagSet(cmd.Name(), flag.ContinueOnError)
	klog.InitFlags(fs)
	// Setting a registered flag to a valid integer cannot fail.
	_ = fs.Set("v", defaultVerbosity)
	fs.VisitAll(func(f *flag.Flag) {
		f.Name = util.Normalize(f.Name)
		cmd.Flags().AddGoFlag(f)
	})
}
