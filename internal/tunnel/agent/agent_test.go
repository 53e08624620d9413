package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	anpserver "sigs.k8s.io/apiserver-network-proxy/pkg/server"
	"sigs.k8s.io/apiserver-network-proxy/pkg/server/proxystrategies"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/tunnel"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/agent"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// hub is a proxy-server (ours or ANP's stock one, in this process) behind
// real gRPC with mTLS on loopback.
type hub struct {
	*framework.TunnelServer
	// ours is our server, nil for ANP's.
	ours *server.Server
}

// serveHub serves core on loopback (framework.ServeTunnelCore) until the
// test ends.
func serveHub(t *testing.T, pki *framework.TunnelPKI, core framework.TunnelCore) *hub {
	t.Helper()
	ts, err := framework.ServeTunnelCore(pki, core)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Stop)
	return &hub{TunnelServer: ts}
}

// startOurServer runs our proxy-server core with id and count, routing by
// destination host and admitting the agents authorize admits (nil: every
// agent).
func startOurServer(t *testing.T, pki *framework.TunnelPKI, id string, count int, authorize server.Authorizer) *hub {
	t.Helper()
	s, err := server.New(server.Options{ServerID: id, ServerCount: count, Strategies: []server.Strategy{server.StrategyDestHost},
		Authorize: authorize})
	if err != nil {
		t.Fatal(err)
	}
	h := serveHub(t, pki, s)
	h.ours = s
	return h
}

// startANPServer runs apiserver-network-proxy v0.36.0's stock server (its
// library) routing by destination host.
func startANPServer(t *testing.T, pki *framework.TunnelPKI) *hub {
	t.Helper()
	s := anpserver.NewProxyServer("anp", []proxystrategies.ProxyStrategy{proxystrategies.ProxyStrategyDestHost}, 1, &anpserver.AgentTokenAuthenticationOptions{}, 10)
	return serveHub(t, pki, s)
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

func newPKI(t *testing.T) *framework.TunnelPKI {
	t.Helper()
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

func TestEchoThroughOurServerAndAgent(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	// No identity binding: the backend listens on 127.0.0.1, which the
	// agent registers as ipv4=127.0.0.1, an identifier the binding refuses.
	h := startOurServer(t, pki, "open", 1, nil)
	echo, err := framework.StartEchoServer()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(echo.Close)
	startAgent(t, pki, h.AgentAddr, "cluster1", "ipv4=127.0.0.1")
	g.Eventually(h.ours.Agents).WithTimeout(10 * time.Second).Should(Equal(1))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	g.Expect(framework.EchoConcurrently(ctx, h.Dial, echo.Addr(), 20, 256<<10)).To(Succeed())
	g.Eventually(h.ours.Stats).WithTimeout(10*time.Second).Should(Equal(server.Stats{Agents: 1}), "closed connections leave nothing on the server")
}

func TestOurAgentAgainstANPServer(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	h := startANPServer(t, pki)
	echo, err := framework.StartEchoServer()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(echo.Close)
	startAgent(t, pki, h.AgentAddr, "cluster1", "ipv4=127.0.0.1")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	g.Eventually(func() error { return framework.EchoConcurrently(ctx, h.Dial, echo.Addr(), 1, 16) }).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(framework.EchoConcurrently(ctx, h.Dial, echo.Addr(), 10, 64<<10)).To(Succeed())
}

func TestAgentHoldsEveryServer(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	a, b := startOurServer(t, pki, "a", 2, tunnel.AuthorizeAgent), startOurServer(t, pki, "b", 2, tunnel.AuthorizeAgent)
	relay := startRelay(t, a.AgentAddr, b.AgentAddr).addr
	startAgent(t, pki, relay, "cluster1", "host=cluster1")
	for _, h := range []*hub{a, b} {
		g.Eventually(h.ours.Agents).WithTimeout(10*time.Second).Should(Equal(1), "the agent found both servers through one address")
	}
}

func TestAgentReportsTheServerCountItLearned(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	// One proxy-server saying there are three: connected to 1 of 3.
	h := startOurServer(t, pki, "a", 3, tunnel.AuthorizeAgent)
	metrics := "http://" + startAgent(t, pki, h.AgentAddr, "cluster1", "host=cluster1").health + "/metrics"
	for name, want := range map[string]float64{
		"cluster_proxy_proxy_agent_server_count":                   3,
		"konnectivity_network_proxy_agent_open_server_connections": 1,
	} {
		g.Eventually(func(ctx context.Context) (float64, error) {
			return framework.ScrapeMetric(ctx, metrics, name)
		}).WithContext(t.Context()).WithTimeout(10*time.Second).Should(Equal(want), name)
	}
}

func TestRefusedAgentKeepsTrying(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	h := startOurServer(t, pki, "s", 1, tunnel.AuthorizeAgent)
	run := startAgent(t, pki, h.AgentAddr, "cluster1", "host=cluster2")
	time.Sleep(500 * time.Millisecond)
	g.Expect(h.ours.Agents()).To(BeZero())
	g.Expect(readyz(run.health)).To(ContainSubstring("not connected"))
}

func TestAgentCertificateRenewedOnDisk(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	var seen sync.Map // serial -> true
	var accepted atomic.Int64
	h := startOurServer(t, pki, "s", 1, func(cert *x509.Certificate, _, _ string) error {
		seen.Store(cert.SerialNumber.String(), cert.Subject.CommonName)
		accepted.Add(1)
		return nil
	})
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
	relay := startRelay(t, h.AgentAddr)
	startAgentWith(t, relay.addr, cert, key, pki.CAFile, "host=cluster1")
	g.Eventually(h.ours.Agents).WithTimeout(10 * time.Second).Should(Equal(1))
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
	checkNoLeaks(t)
	g := NewWithT(t)
	pki, other := newPKI(t), newPKI(t)
	h := startOurServer(t, pki, "s", 1, tunnel.AuthorizeAgent)
	certFile, keyFile, err := pki.AgentCert("cluster1")
	g.Expect(err).NotTo(HaveOccurred())
	// The agent trusts another CA than the one that signed the server.
	caFile := t.TempDir() + "/ca.crt"
	copyFile(t, other.CAFile, caFile)
	startAgentWith(t, h.AgentAddr, certFile, keyFile, caFile, "host=cluster1")
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

// relay relays each accepted connection to the next of its targets, as a
// Service in front of proxy-server replicas does; cut closes every
// connection it accepted so far.
type relay struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

// startRelay relays from a free loopback port to targets until the test
// ends.
func startRelay(t *testing.T, targets ...string) *relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	r := &relay{addr: l.Addr().String()}
	var next atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			go splice(c, targets[int(next.Add(1))%len(targets)])
		}
	}()
	return r
}

// splice relays c to a new connection to target until either side ends.
func splice(c net.Conn, target string) {
	defer func() { _ = c.Close() }()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer func() { _ = up.Close() }()
	framework.Splice(c, up)
}

func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
}

// TestAgentReplacesItsConnectionWhenItsCertificateChanges: a renewed
// certificate (a CA rotation's) gets a new connection at once, the old one
// is drained and keeps what it carries until that closes, and the server
// counts only the new one for the cluster.
func TestAgentReplacesItsConnectionWhenItsCertificateChanges(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	h := startOurServer(t, pki, "s", 1, nil)
	echo, err := framework.StartEchoServer()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(echo.Close)
	certFile, keyFile, err := pki.AgentCert("cluster1")
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	cert, key := dir+"/tls.crt", dir+"/tls.key"
	copyFile(t, certFile, cert)
	copyFile(t, keyFile, key)
	startAgentWith(t, h.AgentAddr, cert, key, pki.CAFile, "ipv4=127.0.0.1")
	g.Eventually(h.ours.Agents).WithTimeout(10 * time.Second).Should(Equal(1))
	firstSerial := h.ours.Clusters()[0].Certificate.Serial

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	open, err := h.Dial(ctx, echo.Addr())
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = open.Close() }()
	echoOnce := func(conn net.Conn, msg string) {
		t.Helper()
		_, err := conn.Write([]byte(msg))
		g.Expect(err).NotTo(HaveOccurred())
		buf := make([]byte, len(msg))
		_, err = io.ReadFull(conn, buf)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(buf)).To(Equal(msg))
	}
	echoOnce(open, "before the renewal")

	renewedCert, renewedKey, err := pki.AgentCert("cluster1")
	g.Expect(err).NotTo(HaveOccurred())
	copyFile(t, renewedKey, key)
	copyFile(t, renewedCert, cert)

	// The new connection comes while the old one still carries the open
	// connection: two streams, the cluster counted once, with the new
	// certificate.
	g.Eventually(h.ours.Agents).WithTimeout(10*time.Second).Should(Equal(2), "a new connection with the renewed certificate")
	g.Eventually(func(g Gomega) {
		clusters := h.ours.Clusters()
		g.Expect(clusters).To(HaveLen(1))
		g.Expect(clusters[0].Agents).To(Equal(1), "the draining connection is not counted")
		g.Expect(clusters[0].Certificate.Serial).NotTo(Equal(firstSerial))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	echoOnce(open, "carried on by the drained connection")
	// New dials go to the new connection (the old one is draining), and
	// work.
	g.Expect(framework.EchoConcurrently(ctx, h.Dial, echo.Addr(), 5, 64<<10)).To(Succeed())
	g.Expect(h.ours.Agents()).To(Equal(2), "the old connection waits for the open one")

	g.Expect(open.Close()).To(Succeed())
	g.Eventually(h.ours.Agents).WithTimeout(10*time.Second).Should(Equal(1), "the drained connection closes once idle")
	g.Expect(framework.EchoConcurrently(ctx, h.Dial, echo.Addr(), 5, 64<<10)).To(Succeed())
}

// TestAgentsBehindARoundRobinBalancerReachEveryServer: two agents retrying
// at the same capped interval through one round-robin balancer each reach
// all four servers (their waits are jittered, so their turns do not stay
// in step, each seeing only every other server).
func TestAgentsBehindARoundRobinBalancerReachEveryServer(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	var hubs []*hub
	var addrs []string
	for _, id := range []string{"a", "b", "c", "d"} {
		h := startOurServer(t, pki, id, 4, tunnel.AuthorizeAgent)
		hubs = append(hubs, h)
		addrs = append(addrs, h.AgentAddr)
	}
	relay := startRelay(t, addrs...).addr
	for _, cluster := range []string{"cluster1", "cluster2"} {
		startAgent(t, pki, relay, cluster, "host="+cluster)
	}
	for _, h := range hubs {
		g.Eventually(h.ours.Agents).WithTimeout(30*time.Second).Should(Equal(2), "both agents on every server")
	}
}
