package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	anpserver "sigs.k8s.io/apiserver-network-proxy/pkg/server"
	"sigs.k8s.io/apiserver-network-proxy/pkg/server/proxystrategies"
	agentproto "sigs.k8s.io/apiserver-network-proxy/proto/agent"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/agent"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// hub is a proxy-server (ours or ANP's stock one, in this process) behind
// real gRPC with mTLS on loopback.
type hub struct {
	pki               *framework.TunnelPKI
	agentAddr, client string
	ours              *server.Server
}

func serverTLS(t *testing.T, pki *framework.TunnelPKI, certFile, keyFile string) credentials.TransportCredentials {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(pki.CA.Cert)
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
}

func listen(t *testing.T, creds credentials.TransportCredentials, register func(*grpc.Server)) string {
	t.Helper()
	gs := grpc.NewServer(grpc.Creds(creds))
	register(gs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	return l.Addr().String()
}

// startOurServer runs our proxy-server core with identity binding.
func startOurServer(t *testing.T, pki *framework.TunnelPKI, id string, count int) *hub {
	t.Helper()
	s, err := server.New(server.Options{ServerID: id, ServerCount: count, Strategies: []server.Strategy{server.StrategyDestHost},
		Authorize: func(cert *x509.Certificate, _, ids string) error {
			cluster, err := identity.ClusterFromCertificate(cert)
			if err != nil {
				return err
			}
			return identity.CheckIdentifiers(cluster, ids)
		}})
	if err != nil {
		t.Fatal(err)
	}
	h := &hub{pki: pki, ours: s}
	h.agentAddr = listen(t, serverTLS(t, pki, pki.AgentServerCertFile, pki.AgentServerKeyFile), func(gs *grpc.Server) { agentproto.RegisterAgentServiceServer(gs, s) })
	h.client = listen(t, serverTLS(t, pki, pki.ProxyServerCertFile, pki.ProxyServerKeyFile), func(gs *grpc.Server) { client.RegisterProxyServiceServer(gs, s) })
	return h
}

// startANPServer runs apiserver-network-proxy v0.36.0's stock server (its
// library) routing by destination host.
func startANPServer(t *testing.T, pki *framework.TunnelPKI) *hub {
	t.Helper()
	s := anpserver.NewProxyServer("anp", []proxystrategies.ProxyStrategy{proxystrategies.ProxyStrategyDestHost}, 1, &anpserver.AgentTokenAuthenticationOptions{}, 10)
	h := &hub{pki: pki}
	h.agentAddr = listen(t, serverTLS(t, pki, pki.AgentServerCertFile, pki.AgentServerKeyFile), func(gs *grpc.Server) { agentproto.RegisterAgentServiceServer(gs, s) })
	h.client = listen(t, serverTLS(t, pki, pki.ProxyServerCertFile, pki.ProxyServerKeyFile), func(gs *grpc.Server) { client.RegisterProxyServiceServer(gs, s) })
	return h
}

// startAgent runs our agent (Run, as the command does) for cluster,
// registering identifiers, against address, until the test ends.
func startAgent(t *testing.T, pki *framework.TunnelPKI, address, cluster, identifiers string) *agentRun {
	t.Helper()
	certFile, keyFile, err := pki.AgentCert(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return startAgentWith(t, address, certFile, keyFile, pki.CAFile, identifiers)
}

type agentRun struct {
	health string
	cancel context.CancelFunc
	done   chan error
}

func startAgentWith(t *testing.T, address, certFile, keyFile, caFile, identifiers string) *agentRun {
	t.Helper()
	ports := make([]string, 2)
	for i := range ports {
		p, err := framework.FreeLoopbackPort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	ctx, cancel := context.WithCancel(t.Context())
	stop := make(chan struct{})
	r := &agentRun{health: ports[0], cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- agent.Run(ctx, stop, agent.RunConfig{
			Options: agent.Options{AgentID: "agent-" + identifiers, Identifiers: identifiers, ServerAddress: address,
				SyncInterval: 50 * time.Millisecond, SyncIntervalCap: 500 * time.Millisecond, ProbeInterval: 100 * time.Millisecond,
				KeepaliveTime: time.Hour, DialTimeout: 5 * time.Second},
			AgentCert: certFile, AgentKey: keyFile, CACert: caFile, ServerName: "127.0.0.1",
			HealthAddress: ports[0], AdminAddress: ports[1],
		})
	}()
	t.Cleanup(func() {
		close(stop)
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("the agent stopped with %v", err)
		}
	})
	return r
}

// dial opens a connection through a stock single-use konnectivity tunnel.
func (h *hub) dial(ctx context.Context, address string) (net.Conn, error) {
	cert, err := tls.X509KeyPair(h.pki.ProxyClientCert, h.pki.ProxyClientKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.pki.CA.Cert)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	tunnel, err := konnectivity.CreateSingleUseGrpcTunnelWithContext(ctx, context.WithoutCancel(ctx), h.client, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	return tunnel.DialContext(ctx, "tcp", address)
}

// echoServer echoes every connection on 127.0.0.1.
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

// echoMany sends a distinct payload over n concurrent connections to
// address and checks each comes back whole and unmixed.
func echoMany(ctx context.Context, h *hub, address string, n, size int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			conn, err := h.dial(ctx, address)
			if err != nil {
				errs <- fmt.Errorf("dial %d: %w", i, err)
				return
			}
			defer func() { _ = conn.Close() }()
			payload := bytes.Repeat([]byte{byte(i + 1)}, size)
			go func() { _, _ = conn.Write(payload) }()
			got := make([]byte, size)
			if _, err := io.ReadFull(conn, got); err != nil {
				errs <- fmt.Errorf("read %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, payload) {
				errs <- fmt.Errorf("connection %d got other bytes", i)
			}
		})
	}
	wg.Wait()
	close(errs)
	var msgs []string
	for err := range errs {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

// startOpenServer runs our proxy-server core without identity binding: the
// tests' backends listen on 127.0.0.1, which their agents register as
// ipv4=127.0.0.1, an identifier the binding refuses.
func startOpenServer(t *testing.T, pki *framework.TunnelPKI) *hub {
	t.Helper()
	s, err := server.New(server.Options{ServerID: "open", ServerCount: 1, Strategies: []server.Strategy{server.StrategyDestHost}})
	if err != nil {
		t.Fatal(err)
	}
	h := &hub{pki: pki, ours: s}
	h.agentAddr = listen(t, serverTLS(t, pki, pki.AgentServerCertFile, pki.AgentServerKeyFile), func(gs *grpc.Server) { agentproto.RegisterAgentServiceServer(gs, s) })
	h.client = listen(t, serverTLS(t, pki, pki.ProxyServerCertFile, pki.ProxyServerKeyFile), func(gs *grpc.Server) { client.RegisterProxyServiceServer(gs, s) })
	return h
}

func newPKI(t *testing.T) *framework.TunnelPKI {
	t.Helper()
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

func TestEchoThroughOurServerAndAgent(t *testing.T) {
	g := NewWithT(t)
	pki := newPKI(t)
	h := startOpenServer(t, pki)
	echo := echoServer(t)
	startAgent(t, pki, h.agentAddr, "cluster1", "ipv4=127.0.0.1")
	g.Eventually(h.ours.Agents).WithTimeout(10 * time.Second).Should(Equal(1))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	g.Expect(echoMany(ctx, h, echo, 20, 256<<10)).To(Succeed())
	g.Eventually(h.ours.Stats).WithTimeout(10*time.Second).Should(Equal(server.Stats{Agents: 1}), "closed connections leave nothing on the server")
}

func TestOurAgentAgainstANPServer(t *testing.T) {
	g := NewWithT(t)
	pki := newPKI(t)
	h := startANPServer(t, pki)
	echo := echoServer(t)
	startAgent(t, pki, h.agentAddr, "cluster1", "ipv4=127.0.0.1")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	g.Eventually(func() error { return echoMany(ctx, h, echo, 1, 16) }).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(echoMany(ctx, h, echo, 10, 64<<10)).To(Succeed())
}

func TestAgentHoldsEveryServer(t *testing.T) {
	g := NewWithT(t)
	pki := newPKI(t)
	a, b := startOurServer(t, pki, "a", 2), startOurServer(t, pki, "b", 2)
	relay := roundRobin(t, a.agentAddr, b.agentAddr)
	startAgent(t, pki, relay, "cluster1", "host=cluster1")
	for _, h := range []*hub{a, b} {
		g.Eventually(h.ours.Agents).WithTimeout(10*time.Second).Should(Equal(1), "the agent found both servers through one address")
	}
}

func TestRefusedAgentKeepsTrying(t *testing.T) {
	g := NewWithT(t)
	pki := newPKI(t)
	h := startOurServer(t, pki, "s", 1)
	run := startAgent(t, pki, h.agentAddr, "cluster1", "host=cluster2")
	time.Sleep(500 * time.Millisecond)
	g.Expect(h.ours.Agents()).To(BeZero())
	g.Expect(readyz(run.health)).To(ContainSubstring("not connected"))
}

func TestAgentCertificateRenewedOnDisk(t *testing.T) {
	g := NewWithT(t)
	pki := newPKI(t)
	var seen sync.Map // serial -> true
	var accepted atomic.Int64
	s, err := server.New(server.Options{ServerID: "s", ServerCount: 1, Strategies: []server.Strategy{server.StrategyDestHost},
		Authorize: func(cert *x509.Certificate, _, _ string) error {
			seen.Store(cert.SerialNumber.String(), cert.Subject.CommonName)
			accepted.Add(1)
			return nil
		}})
	g.Expect(err).NotTo(HaveOccurred())
	agentAddr := listen(t, serverTLS(t, pki, pki.AgentServerCertFile, pki.AgentServerKeyFile), func(gs *grpc.Server) { agentproto.RegisterAgentServiceServer(gs, s) })
	certFile, keyFile, err := pki.AgentCert("cluster1")
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	cert, key := dir+"/tls.crt", dir+"/tls.key"
	copyFile(t, certFile, cert)
	copyFile(t, keyFile, key)
	first, err := tls.LoadX509KeyPair(cert, key)
	g.Expect(err).NotTo(HaveOccurred())
	firstLeaf, err := x509.ParseCertificate(first.Certificate[0])
	g.Expect(err).NotTo(HaveOccurred())

	// A small relay lets the test cut the agent's connection, so it has to
	// handshake again.
	relay := cuttableRelay(t, agentAddr)
	startAgentWith(t, relay.addr, cert, key, pki.CAFile, "host=cluster1")
	g.Eventually(s.Agents).WithTimeout(10 * time.Second).Should(Equal(1))
	_, ok := seen.Load(firstLeaf.SerialNumber.String())
	g.Expect(ok).To(BeTrue())

	renewedPEM, renewedKey, err := pki.CA.Issue(certs.LeafSpec{CommonName: "renewed-agent", Usage: certs.UsageClient}, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(key, renewedKey, 0o600)).To(Succeed())
	g.Expect(os.WriteFile(cert, renewedPEM, 0o600)).To(Succeed())
	relay.cut()
	g.Eventually(func() bool {
		found := false
		seen.Range(func(_, cn any) bool {
			found = found || cn == "renewed-agent"
			return true
		})
		return found
	}).WithTimeout(10*time.Second).Should(BeTrue(), "the next handshake presents the renewed certificate, no restart")
}

func TestAgentTrustsTheCAFileAsItIsNow(t *testing.T) {
	g := NewWithT(t)
	pki, other := newPKI(t), newPKI(t)
	h := startOurServer(t, pki, "s", 1)
	certFile, keyFile, err := pki.AgentCert("cluster1")
	g.Expect(err).NotTo(HaveOccurred())
	// The agent trusts another CA than the one that signed the server.
	caFile := t.TempDir() + "/ca.crt"
	copyFile(t, other.CAFile, caFile)
	startAgentWith(t, h.agentAddr, certFile, keyFile, caFile, "host=cluster1")
	time.Sleep(500 * time.Millisecond)
	g.Expect(h.ours.Agents()).To(BeZero())
	// Once its CA bundle file holds the right CA, it connects: re-read, no
	// restart, and the refusal was the CA's doing.
	copyFile(t, pki.CAFile, caFile)
	g.Eventually(h.ours.Agents).WithTimeout(10 * time.Second).Should(Equal(1))
}

func readyz(addr string) string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = conn.Close() }()
	_, _ = fmt.Fprintf(conn, "GET /readyz HTTP/1.0\r\n\r\n")
	body, _ := io.ReadAll(conn)
	return string(body)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// roundRobin relays each accepted connection to the next of targets, as a
// Service in front of proxy-server replicas does.
func roundRobin(t *testing.T, targets ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	var next atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			target := targets[int(next.Add(1))%len(targets)]
			go splice(c, target)
		}
	}()
	return l.Addr().String()
}

func splice(c net.Conn, target string) {
	defer func() { _ = c.Close() }()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer func() { _ = up.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

type relay struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

// cuttableRelay relays to target; cut closes every relayed connection.
func cuttableRelay(t *testing.T, target string) *relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	r := &relay{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			go splice(c, target)
		}
	}()
	return r
}

func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
}
