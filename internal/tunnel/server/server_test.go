package server_test

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	anpagent "sigs.k8s.io/apiserver-network-proxy/pkg/agent"

	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/tunnel"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// testServer is a Server behind real gRPC with mTLS on loopback: an agent
// port and a frontend port, as the proxy-server serves them.
type testServer struct {
	*server.Server
	*framework.TunnelServer
}

// destHost are the options of the only server, routing by destination
// host.
func destHost() server.Options {
	return server.Options{ServerID: "s1", ServerCount: 1, Strategies: []server.Strategy{server.StrategyDestHost}}
}

// startServer runs a Server with opts, and a PKI of its own, on loopback
// (framework.ServeTunnelCore) until the test ends.
func startServer(t *testing.T, opts server.Options) *testServer {
	t.Helper()
	g := NewWithT(t)
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	s, err := server.New(opts)
	g.Expect(err).NotTo(HaveOccurred())
	served, err := framework.ServeTunnelCore(pki, s)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(served.Stop)
	return &testServer{Server: s, TunnelServer: served}
}

// startAgent runs apiserver-network-proxy's stock agent (its library, in
// this process) with the certificate of cluster, registering identifiers,
// until the returned stop is called.
func (ts *testServer) startAgent(t *testing.T, agentID, cluster, identifiers string) (stop func()) {
	t.Helper()
	g := NewWithT(t)
	certFile, keyFile, err := ts.PKI.AgentCert(cluster)
	g.Expect(err).NotTo(HaveOccurred())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	g.Expect(err).NotTo(HaveOccurred())
	return ts.startAgentWithCert(t, agentID, cert, identifiers)
}

// startAgentWithCert is startAgent with the client certificate cert.
func (ts *testServer) startAgentWithCert(t *testing.T, agentID string, cert tls.Certificate, identifiers string) (stop func()) {
	t.Helper()
	creds := credentials.NewTLS(ts.PKI.ClientTLS(cert))
	stopCh := make(chan struct{})
	cfg := &anpagent.ClientSetConfig{
		Address: ts.AgentAddr, AgentID: agentID, AgentIdentifiers: identifiers,
		SyncInterval: 100 * time.Millisecond, ProbeInterval: 100 * time.Millisecond, SyncIntervalCap: time.Second,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(creds)}, XfrChannelSize: 150,
	}
	cs := cfg.NewAgentClientSet(make(chan struct{}), stopCh)
	cs.SetServerCounter(anpagent.NewResponseBasedCounter(cs)) // what the stock binary does without leases
	cs.Serve()
	var once sync.Once
	stop = func() { once.Do(func() { close(stopCh) }) }
	t.Cleanup(stop)
	return stop
}

// verifyNoLeaks fails t when a goroutine started during t still runs once
// t and every cleanup it registered are done (call it first: cleanups run
// last-in first-out, so its check runs after the gRPC servers, agents and
// echo servers were stopped). Only goroutines already running when t began
// are ignored. The stock agent library stops within its sync interval cap
// (a second here), so the check waits up to leakBound for stragglers.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		deadline := time.Now().Add(leakBound)
		for {
			err := goleak.Find(running)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left behind: %v", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// leakBound bounds how long the goroutines of a test take to end after its
// cleanups.
const leakBound = 10 * time.Second

func eventuallyAgents(g Gomega, ts *testServer, n int) {
	g.Eventually(ts.Agents).WithTimeout(10 * time.Second).WithPolling(20 * time.Millisecond).Should(Equal(n))
}

// startEchoTunnel starts a Server routing by destination host, an echo
// backend on loopback and a stock agent of cluster1 registering the
// backend's address (ipv4=127.0.0.1), and waits until the server has the
// agent. stopAgent stops the agent.
func startEchoTunnel(t *testing.T) (ts *testServer, echo string, stopAgent func()) {
	t.Helper()
	g := NewWithT(t)
	ts = startServer(t, destHost())
	backend, err := framework.StartEchoServer()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(backend.Close)
	stopAgent = ts.startAgent(t, "agent-1", "cluster1", "ipv4=127.0.0.1")
	eventuallyAgents(g, ts, 1)
	return ts, backend.Addr(), stopAgent
}

func TestEchoThroughStockAgentAndClient(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts, echo, _ := startEchoTunnel(t)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	g.Expect(framework.EchoConcurrently(ctx, ts.Dial, echo, 20, 256<<10)).To(Succeed(), "no connection gets another's bytes")
	// Closed connections leave nothing behind on the server.
	g.Eventually(ts.Stats).WithTimeout(10 * time.Second).Should(Equal(server.Stats{Agents: 1}))
}

func TestNoAgentFailsAtOnce(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts := startServer(t, destHost())
	ts.startAgent(t, "agent-1", "cluster1", "ipv4=127.0.0.1")
	eventuallyAgents(g, ts, 1)
	start := time.Now()
	_, err := ts.Dial(t.Context(), "cluster9:443")
	g.Expect(err).To(MatchError(ContainSubstring(server.ErrNoAgent)))
	g.Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
}

func TestAgentBoundToItsCluster(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	var refused []string
	var mu sync.Mutex
	opts := destHost()
	opts.Authorize = tunnel.AuthorizeAgent // as the proxy-server command does
	opts.Refused = func(agentID string, err error) {
		mu.Lock()
		defer mu.Unlock()
		refused = append(refused, agentID+": "+err.Error())
	}
	ts := startServer(t, opts)
	// cluster1's certificate claiming cluster2.
	stopImpostor := ts.startAgent(t, "impostor", "cluster1", "host=cluster2")
	g.Eventually(func() []string {
		mu.Lock()
		defer mu.Unlock()
		return refused
	}).WithTimeout(10 * time.Second).Should(ContainElement(And(HavePrefix("impostor: "), ContainSubstring("cluster cluster1 may not register identifier host=cluster2"))))
	// Each refusal is counted under the certificate's cluster, not the
	// one it claimed (the stock agent retries until it is stopped).
	stopImpostor()
	g.Eventually(func(g Gomega) {
		mu.Lock()
		n := len(refused)
		mu.Unlock()
		g.Expect(n).To(BeNumerically(">=", 1))
		g.Expect(withPrefix(metricValues(t, ts.Server), "cluster_proxy_proxy_server_agent_refusals_total")).To(Equal(map[string]float64{
			`cluster_proxy_proxy_server_agent_refusals_total{cluster="cluster1"}`: float64(n),
		}))
	}).WithTimeout(5 * time.Second).Should(Succeed())
	g.Expect(ts.Agents()).To(BeZero())
	_, err := ts.Dial(t.Context(), "cluster2:443")
	g.Expect(err).To(MatchError(ContainSubstring(server.ErrNoAgent)), "the impostor receives no dial for cluster2")

	// cluster1's own agent is admitted and receives cluster1's dials: the
	// stock agent then fails to resolve "cluster1" here, which proves the
	// dial reached it.
	ts.startAgent(t, "agent-1", "cluster1", strings.Join(identity.AgentIdentifiers("cluster1", "open-cluster-management-cluster-proxy", true), "&"))
	eventuallyAgents(g, ts, 1)
	_, err = ts.Dial(t.Context(), "cluster1:443")
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).NotTo(ContainSubstring(server.ErrNoAgent))
	g.Expect(err.Error()).To(ContainSubstring("cluster1"))
}

func TestAgentGoneClosesItsConnections(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts, echo, stop := startEchoTunnel(t)
	conn, err := ts.Dial(t.Context(), echo)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close() }()
	g.Expect(ts.Stats().Connections).To(Equal(1))
	stop()
	eventuallyAgents(g, ts, 0)
	// konnectivity's connections have no deadlines: read in the background.
	readErr := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		readErr <- err
	}()
	g.Eventually(readErr).WithTimeout(5*time.Second).Should(Receive(HaveOccurred()), "the frontend learns at once that its agent is gone")
	g.Expect(ts.Stats()).To(Equal(server.Stats{}))
}

func TestParseStrategies(t *testing.T) {
	g := NewWithT(t)
	got, err := server.ParseStrategies("destHost, default")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal([]server.Strategy{server.StrategyDestHost, server.StrategyDefault}))
	_, err = server.ParseStrategies("destHost,nearest")
	g.Expect(err).To(MatchError(ContainSubstring(`unknown strategy "nearest"`)))
	_, err = server.ParseStrategies(" ")
	g.Expect(err).To(MatchError(ContainSubstring("--proxy-strategies is empty")))
}

func TestOptionsValidate(t *testing.T) {
	g := NewWithT(t)
	_, err := server.New(server.Options{ServerCount: 0, DialTimeout: -time.Second})
	g.Expect(err).To(HaveOccurred())
	for _, want := range []string{"server ID is empty", "--server-count 0", "no proxy strategy", "--backend-dial-timeout -1s"} {
		g.Expect(err.Error()).To(ContainSubstring(want))
	}
	g.Expect(strings.Count(err.Error(), "\n")).To(Equal(3), "one line per problem")
}
