// Package agentsim runs many proxy-agents in one process, for tests and
// benchmarks of a proxy-server at the scale of a large hub: each simulated
// agent is our real agent (internal/tunnel/agent) with a client
// certificate of its own cluster and its own TLS connection to the
// proxy-server. Their backends are in memory: a connection to any address
// in cluster c answers the first bytes it is sent with "c\n" and echoes
// everything, so a test sees which cluster's agent carried a dial. (The
// client speaks first: konnectivity-client v0.36 may drop DATA that
// arrives right behind its DIAL_RSP, before it has registered the
// connection.)
package agentsim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/agent"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// Config configures a Simulator.
type Config struct {
	// PKI issues every agent's certificate (framework.TunnelPKI.AgentCert)
	// and holds the CA the agents trust.
	PKI *framework.TunnelPKI
	// ServerAddress is the proxy-servers' agent address (host:port).
	ServerAddress string
	// Clusters name the simulated clusters, one agent each; an agent
	// registers host=<cluster>.
	Clusters []string
	// SyncInterval and SyncIntervalCap are the agents' connection back-off
	// (apiserver-network-proxy's defaults, 1 s and 10 s, when zero).
	SyncInterval, SyncIntervalCap time.Duration
}

// Validate reports every invalid field.
func (c *Config) Validate() error {
	var errs []error
	if c.PKI == nil {
		errs = append(errs, errors.New("no PKI"))
	}
	if _, _, err := net.SplitHostPort(c.ServerAddress); err != nil {
		errs = append(errs, fmt.Errorf("server address %q: %w", c.ServerAddress, err))
	}
	if len(c.Clusters) == 0 {
		errs = append(errs, errors.New("no clusters"))
	}
	return errors.Join(errs...)
}

// Simulator is a set of running simulated agents.
type Simulator struct {
	agents []*agent.Agent
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start issues the agents' certificates and starts every agent; it
// returns before they are connected (see Connected).
func Start(ctx context.Context, c Config) (*Simulator, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid agent simulator configuration: %w", err)
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = time.Second
	}
	if c.SyncIntervalCap == 0 {
		c.SyncIntervalCap = 10 * time.Second
	}
	s := &Simulator{}
	for _, cluster := range c.Clusters {
		certFile, keyFile, err := c.PKI.AgentCert(cluster)
		if err != nil {
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("failed to load the certificate of %s: %w", cluster, err)
		}
		creds := credentials.NewTLS(c.PKI.ClientTLS(cert))
		a, err := agent.New(agent.Options{
			AgentID: "sim-" + cluster, Identifiers: "host=" + cluster, ServerAddress: c.ServerAddress, Credentials: creds,
			SyncInterval: c.SyncInterval, SyncIntervalCap: c.SyncIntervalCap, ProbeInterval: time.Second,
			KeepaliveTime: time.Hour, DialTimeout: 5 * time.Second, Dial: backendOf(cluster),
		})
		if err != nil {
			return nil, err
		}
		s.agents = append(s.agents, a)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	for _, a := range s.agents {
		s.wg.Go(func() { a.Run(ctx) })
	}
	return s, nil
}

// Connected returns how many agents hold a stream to at least one
// proxy-server.
func (s *Simulator) Connected() int {
	n := 0
	for _, a := range s.agents {
		if a.Servers() > 0 {
			n++
		}
	}
	return n
}

// ConnectFailures returns how many attempts to connect to a proxy-server
// failed, over every agent.
func (s *Simulator) ConnectFailures() int {
	n := 0
	for _, a := range s.agents {
		n += a.ConnectFailures()
	}
	return n
}

// Stop stops every agent and waits for them.
func (s *Simulator) Stop() {
	s.cancel()
	s.wg.Wait()
}

// backendOf is the Dial of cluster's agent: an in-memory connection whose
// far end answers the first bytes it reads with "<cluster>\n" and echoes.
func backendOf(cluster string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		near, far := net.Pipe()
		go func() {
			defer func() { _ = far.Close() }()
			buf := make([]byte, 512)
			n, err := far.Read(buf)
			if err != nil {
				return
			}
			if _, err := far.Write(append([]byte(cluster+"\n"), buf[:n]...)); err != nil {
				return
			}
			_, _ = io.Copy(far, far)
		}()
		return near, nil
	}
}
