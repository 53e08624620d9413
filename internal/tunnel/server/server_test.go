package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	anpagent "sigs.k8s.io/apiserver-network-proxy/pkg/agent"
	"sigs.k8s.io/apiserver-network-proxy/proto/agent"

	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// testServer is a Server behind real gRPC with mTLS on loopback: an agent
// port and a frontend port, as the proxy-server serves them.
type testServer struct {
	*server.Server
	pki                 *framework.TunnelPKI
	agentAddr, frontend string
}

func startServer(t *testing.T, opts server.Options) *testServer {
	t.Helper()
	g := NewWithT(t)
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	s, err := server.New(opts)
	g.Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(pki.CA.Cert)
	serve := func(certFile, keyFile string, register func(*grpc.Server)) string {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		g.Expect(err).NotTo(HaveOccurred())
		creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
		gs := grpc.NewServer(grpc.Creds(creds))
		register(gs)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		g.Expect(err).NotTo(HaveOccurred())
		go func() { _ = gs.Serve(l) }()
		t.Cleanup(gs.Stop)
		return l.Addr().String()
	}
	ts := &testServer{Server: s, pki: pki}
	ts.agentAddr = serve(pki.AgentServerCertFile, pki.AgentServerKeyFile, func(gs *grpc.Server) { agent.RegisterAgentServiceServer(gs, s) })
	ts.frontend = serve(pki.ProxyServerCertFile, pki.ProxyServerKeyFile, func(gs *grpc.Server) { client.RegisterProxyServiceServer(gs, s) })
	return ts
}

// startAgent runs apiserver-network-proxy's stock agent (its library, in
// this process) with the certificate of cluster, registering identifiers,
// until the returned stop is called.
func (ts *testServer) startAgent(t *testing.T, agentID, cluster, identifiers string) (stop func()) {
	t.Helper()
	g := NewWithT(t)
	certFile, keyFile, err := ts.pki.AgentCert(cluster)
	g.Expect(err).NotTo(HaveOccurred())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	g.Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(ts.pki.CA.Cert)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	stopCh := make(chan struct{})
	cfg := &anpagent.ClientSetConfig{
		Address: ts.agentAddr, AgentID: agentID, AgentIdentifiers: identifiers,
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

// dial opens a connection through a stock single-use konnectivity tunnel.
func (ts *testServer) dial(ctx context.Context, address string) (net.Conn, error) {
	cert, err := tls.X509KeyPair(ts.pki.ProxyClientCert, ts.pki.ProxyClientKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ts.pki.CA.Cert)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	tunnel, err := konnectivity.CreateSingleUseGrpcTunnelWithContext(ctx, context.WithoutCancel(ctx), ts.frontend, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	return tunnel.DialContext(ctx, "tcp", address)
}

// echoServer echoes every connection on loopback.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// identityAuthorizer binds agents to their certificate's cluster, as the
// proxy-server command does.
func identityAuthorizer(cert *x509.Certificate, _, identifiers string) error {
	if cert == nil {
		return errors.New("no client certificate")
	}
	cluster, err := identity.ClusterFromCertificate(cert)
	if err != nil {
		return err
	}
	return identity.CheckIdentifiers(cluster, identifiers)
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

func TestEchoThroughStockAgentAndClient(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts := startServer(t, server.Options{ServerID: "s1", ServerCount: 1, Strategies: []server.Strategy{server.StrategyDestHost}})
	echo := echoServer(t)
	ts.startAgent(t, "agent-1", "cluster1", "ipv4=127.0.0.1")
	eventuallyAgents(g, ts, 1)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			conn, err := ts.dial(ctx, echo)
			if err != nil {
				errs <- fmt.Errorf("dial %d: %w", i, err)
				return
			}
			defer func() { _ = conn.Close() }()
			payload := bytes.Repeat([]byte{byte(i)}, 256<<10)
			go func() { _, _ = conn.Write(payload) }()
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(conn, got); err != nil {
				errs <- fmt.Errorf("read %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, payload) {
				errs <- fmt.Errorf("connection %d got another connection's bytes", i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Closed connections leave nothing behind on the server.
	g.Eventually(ts.Stats).WithTimeout(10 * time.Second).Should(Equal(server.Stats{Agents: 1}))
}

func TestNoAgentFailsAtOnce(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts := startServer(t, server.Options{ServerID: "s1", ServerCount: 1, Strategies: []server.Strategy{server.StrategyDestHost}})
	ts.startAgent(t, "agent-1", "cluster1", "ipv4=127.0.0.1")
	eventuallyAgents(g, ts, 1)
	start := time.Now()
	_, err := ts.dial(t.Context(), "cluster9:443")
	g.Expect(err).To(MatchError(ContainSubstring(server.ErrNoAgent)))
	g.Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
}

func TestAgentBoundToItsCluster(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	var refused []string
	var mu sync.Mutex
	ts := startServer(t, server.Options{ServerID: "s1", ServerCount: 1, Strategies: []server.Strategy{server.StrategyDestHost},
		Authorize: identityAuthorizer,
		Refused: func(agentID string, err error) {
			mu.Lock()
			defer mu.Unlock()
			refused = append(refused, agentID+": "+err.Error())
		}})
	// cluster1's certificate claiming cluster2.
	ts.startAgent(t, "impostor", "cluster1", "host=cluster2")
	g.Eventually(func() []string {
		mu.Lock()
		defer mu.Unlock()
		return refused
	}).WithTimeout(10 * time.Second).Should(ContainElement(And(HavePrefix("impostor: "), ContainSubstring("cluster cluster1 may not register identifier host=cluster2"))))
	g.Expect(ts.Agents()).To(BeZero())
	_, err := ts.dial(t.Context(), "cluster2:443")
	g.Expect(err).To(MatchError(ContainSubstring(server.ErrNoAgent)), "the impostor receives no dial for cluster2")

	// cluster1's own agent is admitted and receives cluster1's dials: the
	// stock agent then fails to resolve "cluster1" here, which proves the
	// dial reached it.
	ts.startAgent(t, "agent-1", "cluster1", strings.Join(identity.AgentIdentifiers("cluster1", "open-cluster-management-cluster-proxy", true), "&"))
	eventuallyAgents(g, ts, 1)
	_, err = ts.dial(t.Context(), "cluster1:443")
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).NotTo(ContainSubstring(server.ErrNoAgent))
	g.Expect(err.Error()).To(ContainSubstring("cluster1"))
}

func TestAgentGoneClosesItsConnections(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts := startServer(t, server.Options{ServerID: "s1", ServerCount: 1, Strategies: []server.Strategy{server.StrategyDestHost}})
	echo := echoServer(t)
	stop := ts.startAgent(t, "agent-1", "cluster1", "ipv4=127.0.0.1")
	eventuallyAgents(g, ts, 1)
	conn, err := ts.dial(t.Context(), echo)
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
