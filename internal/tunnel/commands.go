// Package tunnel wires the konnectivity (apiserver-network-proxy) proxy-server
// and proxy-agent that carry cluster-proxy's reverse tunnels. Their options
// accept the flags of ANP's own binaries, with the same names, defaults and
// meaning, so manifests written for either run unchanged.
package tunnel

import (
	"context"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	agentapp "sigs.k8s.io/apiserver-network-proxy/cmd/agent/app"
	agentoptions "sigs.k8s.io/apiserver-network-proxy/cmd/agent/app/options"
	serverapp "sigs.k8s.io/apiserver-network-proxy/cmd/server/app"
	serveroptions "sigs.k8s.io/apiserver-network-proxy/cmd/server/app/options"
)

// ServerOptions are the proxy-server's options: ANP's proxy-server flags.
type ServerOptions struct {
	anp *serveroptions.ProxyRunOptions
}

// NewServerOptions returns ANP's proxy-server defaults.
func NewServerOptions() *ServerOptions {
	return &ServerOptions{anp: serveroptions.NewProxyRunOptions()}
}

// AddFlags binds ANP's proxy-server flags.
func (o *ServerOptions) AddFlags(fs *pflag.FlagSet) { fs.AddFlagSet(o.anp.Flags()) }

// Complete has nothing to fill in.
func (o *ServerOptions) Complete() error { return nil }

// Validate applies ANP's proxy-server validation.
func (o *ServerOptions) Validate() error { return o.anp.Validate() }

// Log leaves the effective options to ANP, whose server prints every one of
// them when it starts.
func (o *ServerOptions) Log(logr.Logger) {}

// RunServer runs the proxy-server until ctx is done.
func RunServer(ctx context.Context, o *ServerOptions) error {
	return (&serverapp.Proxy{}).Run(o.anp, ctx.Done())
}

// AgentOptions are the proxy-agent's options: ANP's proxy-agent flags.
type AgentOptions struct {
	anp *agentoptions.GrpcProxyAgentOptions
}

// NewAgentOptions returns ANP's proxy-agent defaults.
func NewAgentOptions() *AgentOptions {
	return &AgentOptions{anp: agentoptions.NewGrpcProxyAgentOptions()}
}

// AddFlags binds ANP's proxy-agent flags.
func (o *AgentOptions) AddFlags(fs *pflag.FlagSet) { fs.AddFlagSet(o.anp.Flags()) }

// Complete has nothing to fill in.
func (o *AgentOptions) Complete() error { return nil }

// Validate applies ANP's proxy-agent validation.
func (o *AgentOptions) Validate() error { return o.anp.Validate() }

// Log leaves the effective options to ANP, whose agent prints every one of
// them when it starts.
func (o *AgentOptions) Log(logr.Logger) {}

// RunAgent runs the proxy-agent: when ctx is done (the first SIGTERM) it
// drains, telling the proxy-servers to send it no new dials, and keeps
// serving open connections until the process is stopped, as ANP's agent
// does.
func RunAgent(ctx context.Context, o *AgentOptions) error {
	return (&agentapp.Agent{}).Run(o.anp, ctx.Done(), nil)
}
