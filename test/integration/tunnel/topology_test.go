package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	agentoptions "sigs.k8s.io/apiserver-network-proxy/cmd/agent/app/options"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// Helpers for the fault and load specs: proxy-servers and proxy-agents
// started one by one (so a spec can kill, restart or multiply them), a
// round-robin TCP relay standing in for a Service in front of proxy-server
// replicas, and a scraper for the processes' Prometheus metrics.

// agentSyncIntervalCap is the longest the proxy-agent waits between two
// attempts to connect to a proxy-server (ANP's --sync-interval-cap default;
// the specs do not set the flag). Its backoff is jittered by 10 %.
var agentSyncIntervalCap = agentoptions.NewGrpcProxyAgentOptions().SyncIntervalCap

// reconnectBound is how long a spec lets an agent take to (re)connect: the
// backoff cap plus its jitter, plus a margin for process start-up and the
// TLS handshakes on a loaded 2-core machine. A bound on a hang, not a
// performance claim.
var reconnectBound = agentSyncIntervalCap + agentSyncIntervalCap/10 + 5*time.Second

// proxyServer is one proxy-server process of the binary under test.
type proxyServer struct {
	name        string
	serverCount int
	ports       framework.ProxyServerPorts
	pki         *framework.TunnelPKI
	// extraArgs follow the flags framework.ProxyServerArgs gives.
	extraArgs []string
	process   *framework.Process
	restarts  int
}

// startProxyServer starts a proxy-server named name (its --server-id) on
// fresh ports with the suite's certificates, expecting serverCount
// replicas. It is stopped when the surrounding node's cleanup runs. It does
// not wait for readiness: a proxy-server is ready once an agent is
// connected.
func startProxyServer(name string, serverCount int) *proxyServer {
	GinkgoHelper()
	return startProxyServerWith(name, serverCount, pki)
}

// startProxyServerWith is startProxyServer with the certificate files of
// p and extra flags.
func startProxyServerWith(name string, serverCount int, p *framework.TunnelPKI, extraArgs ...string) *proxyServer {
	GinkgoHelper()
	ports, err := framework.FreeProxyServerPorts()
	Expect(err).NotTo(HaveOccurred())
	s := &proxyServer{name: name, serverCount: serverCount, ports: ports, pki: p, extraArgs: extraArgs}
	s.start(name)
	return s
}

// start starts the process under the log name logName.
func (s *proxyServer) start(logName string) {
	GinkgoHelper()
	var err error
	args := append(framework.ProxyServerArgs(s.pki, s.ports, s.name, s.serverCount), s.extraArgs...)
	s.process, err = framework.StartProcess(logName, binaries.proxyServer, args, nil, workDir)
	Expect(err).NotTo(HaveOccurred())
	stopOnCleanup(s.process)
}

// stop stops the proxy-server, open tunnels and all.
func (s *proxyServer) stop() {
	GinkgoHelper()
	Expect(framework.StopTunnelProcess(s.process)).To(Succeed())
}

// startAgain starts a stopped proxy-server again with the same id, ports
// and certificates.
func (s *proxyServer) startAgain() {
	GinkgoHelper()
	s.restarts++
	s.start(fmt.Sprintf("%s-%d", s.name, s.restarts))
}

// address is the client (frontend) address of the proxy-server.
func (s *proxyServer) address() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ports.Server))
}

// healthURL is the URL of path on the health port (/readyz, /metrics).
func (s *proxyServer) healthURL(path string) string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ports.Health)) + path
}

// proxyAgent is one proxy-agent process of the binary under test, serving
// a managed cluster.
type proxyAgent struct {
	name    string
	cluster string
	// serverAgentPort is the port on 127.0.0.1 it connects to: a
	// proxy-server's agent port, or a relay in front of several.
	serverAgentPort int
	// backendIP is the address the cluster's host names resolve to in the
	// agent's /etc/hosts.
	backendIP             string
	pki                   *framework.TunnelPKI
	certFile, keyFile     string
	healthPort, adminPort int
	// extraArgs follow the flags framework.ProxyAgentArgs gives.
	extraArgs []string
	process   *framework.Process
	starts    int
}

// startProxyAgent starts a proxy-agent named name for cluster, connecting
// to 127.0.0.1:serverAgentPort and resolving the host names it registers to
// backendIP, and returns without waiting for it to connect. It is stopped
// when the surrounding node's cleanup runs.
func startProxyAgent(name, clusterName string, serverAgentPort int, backendIP string) *proxyAgent {
	GinkgoHelper()
	return startProxyAgentWith(name, clusterName, serverAgentPort, backendIP, pki)
}

// startProxyAgentWith is startProxyAgent with a certificate of p's CA,
// written into p.Dir, and extra flags.
func startProxyAgentWith(name, clusterName string, serverAgentPort int, backendIP string, p *framework.TunnelPKI, extraArgs ...string) *proxyAgent {
	GinkgoHelper()
	a := &proxyAgent{name: name, cluster: clusterName, serverAgentPort: serverAgentPort, backendIP: backendIP, pki: p, extraArgs: extraArgs}
	var err error
	a.certFile, a.keyFile, err = p.AgentCert(clusterName)
	Expect(err).NotTo(HaveOccurred())
	a.healthPort, err = framework.FreeTunnelPort()
	Expect(err).NotTo(HaveOccurred())
	a.adminPort, err = framework.FreeTunnelPort()
	Expect(err).NotTo(HaveOccurred())
	a.start()
	return a
}

// start starts a new process of the agent, with the same id, ports and
// certificate as the previous one.
func (a *proxyAgent) start() {
	GinkgoHelper()
	a.starts++
	logName := fmt.Sprintf("%s-%d", a.name, a.starts)
	args := append(framework.ProxyAgentArgs(a.pki, a.name, a.serverAgentPort, a.certFile, a.keyFile,
		framework.ProxyAgentIdentifiers(a.cluster, agentNamespace), a.healthPort, a.adminPort), a.extraArgs...)
	var err error
	a.process, err = startWithHosts(logName, binaries.proxyAgent, args, a.backendIP,
		framework.ProxyAgentHosts(a.cluster, agentNamespace))
	Expect(err).NotTo(HaveOccurred())
	stopOnCleanup(a.process)
}

// kill sends SIGKILL to the agent (by PID, as the OOM killer or a node
// failure would end it: no drain, no goodbye to the proxy-server) and waits
// until it has been reaped.
func (a *proxyAgent) kill() {
	GinkgoHelper()
	Expect(syscall.Kill(a.process.PID, syscall.SIGKILL)).To(Succeed())
	Eventually(a.process.Done()).WithTimeout(10 * time.Second).Should(BeClosed())
}

// healthURL is the URL of path on the agent's health port.
func (a *proxyAgent) healthURL(path string) string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.healthPort)) + path
}

// waitHTTPOK waits up to timeout for url to answer 200, failing early when
// p exits, and shows the logs of logs when it does not.
func waitHTTPOK(url string, timeout time.Duration, p *framework.Process, logs ...*framework.Process) {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(GinkgoT().Context(), timeout)
	defer cancel()
	err := framework.WaitHTTPOK(ctx, url, false, p)
	if err != nil {
		var tails []string
		for _, l := range append([]*framework.Process{p}, logs...) {
			tails = append(tails, fmt.Sprintf("--- %s:\n%s", l.Name, l.LogTail(logLines)))
		}
		Fail(fmt.Sprintf("%v\n%s", err, strings.Join(tails, "\n")))
	}
}

// hostAliasScript is framework's: it bind-mounts "$1" over /etc/hosts in
// the private mount namespace unshare(1) created, then execs the binary.
const hostAliasScript = `mount --bind "$1" /etc/hosts || exit 1; shift; exec "$@"`

// startWithHosts starts binary like framework.StartProcessWithHostAliases,
// with hostnames resolving to ip instead of 127.0.0.1 in the process's
// private /etc/hosts. With a different loopback address per agent
// (127.0.0.2, 127.0.0.3, ...), backends of different clusters can listen on
// the same port, and only the agent of the right cluster reaches each: a
// response then proves the proxy-server routed the dial to that agent.
func startWithHosts(name, binary string, args []string, ip string, hostnames []string) (*framework.Process, error) {
	if ip == "127.0.0.1" {
		return framework.StartProcessWithHostAliases(name, binary, args, nil, workDir, hostnames)
	}
	if net.ParseIP(ip) == nil {
		return nil, fmt.Errorf("failed to start %s: invalid address %q", name, ip)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("failed to start %s with host aliases: %w", name, err)
	}
	hostsFile := filepath.Join(workDir, name+".hosts")
	hosts := "127.0.0.1 localhost\n" + ip + " " + strings.Join(hostnames, " ") + "\n::1 localhost\n"
	if err := os.WriteFile(hostsFile, []byte(hosts), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write the hosts file of %s: %w", name, err)
	}
	unshareArgs := []string{"--mount"}
	if os.Geteuid() != 0 {
		unshareArgs = []string{"--user", "--map-root-user", "--mount"}
	}
	unshareArgs = append(unshareArgs, "--", "/bin/sh", "-c", hostAliasScript, "sh", hostsFile, binary)
	return framework.StartProcess(name, unshare, append(unshareArgs, args...), nil, workDir)
}

// scrapeMetric is framework.ScrapeMetric.
func scrapeMetric(ctx context.Context, url, name string) (float64, error) {
	return framework.ScrapeMetric(ctx, url, name)
}

// metricFunc is scrapeMetric for Eventually.
func metricFunc(url, name string) func(context.Context) (float64, error) {
	return func(ctx context.Context) (float64, error) { return scrapeMetric(ctx, url, name) }
}

// roundRobinRelay is a TCP relay on 127.0.0.1 that hands each accepted
// connection to the next of its upstreams in turn, like a Service (in
// iptables or IPVS round-robin mode) in front of proxy-server replicas. It
// also plays the network between agents and proxy-servers failing: it can
// be cut (connections reset, nothing accepted) and restored, and its
// connections can be black-holed (half-open: bytes vanish, nobody is told).
type roundRobinRelay struct {
	port      int
	upstreams []string
	next      atomic.Uint64
	// accepted counts, per upstream, the connections relayed to it.
	accepted []atomic.Int64

	mu       sync.Mutex
	listener net.Listener // nil while cut
	pairs    map[*relayPair]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// relayPair is one relayed connection: the accepted one and the one to its
// upstream.
type relayPair struct {
	down, up net.Conn
	// blackholed pairs drop what they read and no longer pass on closes.
	blackholed atomic.Bool
}

func (p *relayPair) close() {
	_ = p.down.Close()
	_ = p.up.Close()
}

// startRoundRobinRelay listens on a free tunnel port and relays to
// upstreams ("host:port"). It is closed when the surrounding node's
// cleanup runs.
func startRoundRobinRelay(upstreams ...string) *roundRobinRelay {
	GinkgoHelper()
	r := &roundRobinRelay{
		upstreams: upstreams,
		accepted:  make([]atomic.Int64, len(upstreams)),
		pairs:     map[*relayPair]struct{}{},
	}
	// FreeTunnelPort's port can be taken before the listen; try again then.
	Eventually(func() error {
		port, err := framework.FreeTunnelPort()
		if err != nil {
			return err
		}
		r.port = port
		return r.listen()
	}).WithTimeout(5 * time.Second).Should(Succeed())
	DeferCleanup(r.Close)
	return r
}

// listen listens on the relay's port and accepts in the background.
func (r *roundRobinRelay) listen() error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)))
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return l.Close()
	}
	r.listener = l
	r.wg.Add(1)
	go r.accept(l)
	return nil
}

func (r *roundRobinRelay) accept(l net.Listener) {
	defer r.wg.Done()
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		i := int((r.next.Add(1) - 1) % uint64(len(r.upstreams)))
		r.wg.Add(1)
		go r.relay(conn, i)
	}
}

// relay pumps between downstream and a new connection to upstream i until
// both directions end, then closes both.
func (r *roundRobinRelay) relay(downstream net.Conn, i int) {
	defer r.wg.Done()
	upstream, err := net.DialTimeout("tcp", r.upstreams[i], 5*time.Second)
	if err != nil {
		_ = downstream.Close()
		return
	}
	p := &relayPair{down: downstream, up: upstream}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		p.close()
		return
	}
	r.pairs[p] = struct{}{}
	r.mu.Unlock()
	r.accepted[i].Add(1)
	done := make(chan struct{}, 2)
	go func() { r.pump(p, upstream, downstream); done <- struct{}{} }()
	go func() { r.pump(p, downstream, upstream); done <- struct{}{} }()
	<-done
	<-done
	r.mu.Lock()
	delete(r.pairs, p)
	r.mu.Unlock()
	p.close()
}

// pump copies src to dst. When src ends, it closes the pair (which ends
// the other direction too), unless the pair is black-holed: then neither
// end learns anything.
func (r *roundRobinRelay) pump(p *relayPair, dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.blackholed.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil && !p.blackholed.Load() {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if !p.blackholed.Load() {
		p.close()
	}
}

// dropConnections closes every relayed connection (both ends see it end)
// and keeps accepting new ones.
func (r *roundRobinRelay) dropConnections() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.pairs {
		p.close()
	}
}

// cut stops accepting and closes every relayed connection: the network
// between agents and proxy-servers is gone.
func (r *roundRobinRelay) cut() {
	GinkgoHelper()
	r.mu.Lock()
	l := r.listener
	r.listener = nil
	r.mu.Unlock()
	Expect(l).NotTo(BeNil(), "the relay is cut already")
	Expect(l.Close()).To(Succeed())
	r.dropConnections()
}

// restore accepts again on the same port after cut.
func (r *roundRobinRelay) restore() {
	GinkgoHelper()
	Eventually(r.listen).WithTimeout(5*time.Second).Should(Succeed(), "listening on the relay's port %d again", r.port)
}

// blackhole makes every relayed connection half-open: from now on the
// relay drops what either end sends and tells neither end when the other
// closes. New connections are relayed normally.
func (r *roundRobinRelay) blackhole() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.pairs {
		p.blackholed.Store(true)
	}
	return len(r.pairs)
}

// Close stops accepting, closes every relayed connection and waits for the
// relay's goroutines.
func (r *roundRobinRelay) Close() {
	r.mu.Lock()
	r.closed = true
	l := r.listener
	r.listener = nil
	for p := range r.pairs {
		p.close()
	}
	r.mu.Unlock()
	if l != nil {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			GinkgoWriter.Printf("closing the relay listener: %v\n", err)
		}
	}
	r.wg.Wait()
}

// httpStatus makes one GET of url and returns the response status code.
func httpStatus(ctx context.Context, url string) (int, error) {
	status, _, err := httpGet(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("failed to get %s: %w", url, err)
	}
	return status, nil
}

// httpGet makes one GET of url on a fresh connection, bounded to 5 s, and
// returns the status code and body.
func httpGet(ctx context.Context, url string) (int, []byte, error) {
	transport := &http.Transport{DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
