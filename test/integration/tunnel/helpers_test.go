package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/goleak"

	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// readyTimeout bounds the wait for a proxy-server to report a connected
	// agent.
	readyTimeout = 30 * time.Second
	// logLines is how much of a process log a failure report shows.
	logLines = 40
)

// echoServer is the suite's TCP backend on 127.0.0.1 that writes back what
// it reads, with its port at hand.
type echoServer struct {
	*framework.EchoServer
	port int
}

// startEchoServer listens on a free loopback port.
func startEchoServer() (*echoServer, error) {
	s, err := framework.StartEchoServer()
	if err != nil {
		return nil, err
	}
	return &echoServer{EchoServer: s, port: s.Port()}, nil
}

// echoThrough dials host:<echo port> through dialer and checks one round
// trip.
func echoThrough(ctx context.Context, dialer *client.Dialer, host, msg string) error {
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(echo.port)))
	if err != nil {
		return err
	}
	if _, err := io.WriteString(conn, msg); err != nil {
		_ = conn.Close()
		return fmt.Errorf("failed to write through the tunnel: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		_ = conn.Close()
		return fmt.Errorf("failed to read through the tunnel: %w", err)
	}
	if string(got) != msg {
		_ = conn.Close()
		return fmt.Errorf("echo answered %q, want %q", got, msg)
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("failed to close the tunnelled connection: %w", err)
	}
	return nil
}

// newDialer returns a Dialer for the proxy-server client port serverPort,
// closed when the spec (or container) ends.
func newDialer(serverPort int, opts ...client.DialerOption) *client.Dialer {
	dialer, err := client.NewDialer(net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort)), proxyTLS, opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(dialer.Close()).To(Succeed()) })
	return dialer
}

// expectNoLeaks fails when goroutines that were not running at snapshot
// time are still running (after a grace period for those winding down).
func expectNoLeaks(snapshot goleak.Option) {
	GinkgoHelper()
	Eventually(func() error { return goleak.Find(snapshot) }).
		WithTimeout(10 * time.Second).WithPolling(200 * time.Millisecond).
		Should(Succeed())
}

// tunnel is one proxy-server and one proxy-agent serving cluster.
type tunnel struct {
	serverBinary string
	serverName   string
	serverPorts  framework.ProxyServerPorts
	server       *framework.Process
	agent        *framework.Process
	restarts     int
}

// startTunnel starts serverBinary as a proxy-server and agentBinary as the
// proxy-agent of cluster, and waits until the server has the agent. Both are
// stopped by PID when the surrounding container ends.
//
// The agent runs with host aliases mapping the names it registers to
// 127.0.0.1. In a real deployment those names resolve, in the agent's pod,
// to the managed cluster's kube-apiserver (cluster name) and service-proxy
// (hostAliases); here the backends are loopback listeners, so dialling
// "<cluster>:<port>" through the tunnel reaches 127.0.0.1:<port> after the
// proxy-server routed it by host name (destHost) to this agent.
func startTunnel(name, serverBinary, agentBinary string) *tunnel {
	GinkgoHelper()
	var err error
	t := &tunnel{serverBinary: serverBinary, serverName: name + "-proxy-server"}
	t.serverPorts, err = framework.FreeProxyServerPorts()
	Expect(err).NotTo(HaveOccurred())
	t.startServer(t.serverName)

	certFile, keyFile, err := pki.AgentCert(cluster)
	Expect(err).NotTo(HaveOccurred())
	healthPort, err := framework.FreeTunnelPort()
	Expect(err).NotTo(HaveOccurred())
	adminPort, err := framework.FreeTunnelPort()
	Expect(err).NotTo(HaveOccurred())
	args := framework.ProxyAgentArgs(pki, name+"-agent", t.serverPorts.Agent, certFile, keyFile,
		framework.ProxyAgentIdentifiers(cluster, agentNamespace), healthPort, adminPort)
	t.agent, err = framework.StartProcessWithHostAliases(name+"-proxy-agent", agentBinary, args, nil, workDir,
		framework.ProxyAgentHosts(cluster, agentNamespace))
	Expect(err).NotTo(HaveOccurred())
	stopOnCleanup(t.agent)

	t.waitReady()
	return t
}

// startServer starts the proxy-server process under the log name name.
func (t *tunnel) startServer(name string) {
	GinkgoHelper()
	var err error
	t.server, err = framework.StartProcess(name, t.serverBinary,
		framework.ProxyServerArgs(pki, t.serverPorts, name, 1), nil, workDir)
	Expect(err).NotTo(HaveOccurred())
	stopOnCleanup(t.server)
}

// waitReady waits until the proxy-server's /readyz says an agent is
// connected.
func (t *tunnel) waitReady() {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(GinkgoT().Context(), readyTimeout)
	defer cancel()
	err := framework.WaitHTTPOK(ctx, "http://127.0.0.1:"+strconv.Itoa(t.serverPorts.Health)+"/readyz", false, t.server)
	Expect(err).NotTo(HaveOccurred(), "proxy-server log:\n%s\n\nproxy-agent log:\n%s",
		t.server.LogTail(logLines), t.agent.LogTail(logLines))
}

// restartServer stops the proxy-server, open tunnels and all, and starts it
// again on the same ports and certificates.
func (t *tunnel) restartServer() {
	GinkgoHelper()
	Expect(framework.StopTunnelProcess(t.server)).To(Succeed())
	t.restarts++
	t.startServer(fmt.Sprintf("%s-%d", t.serverName, t.restarts))
}

// stopOnCleanup stops p when the current node's cleanup runs, and shows its
// log when the spec failed.
func stopOnCleanup(p *framework.Process) {
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("--- last lines of %s (%s):\n%s\n", p.Name, p.LogPath, p.LogTail(logLines))
		}
		Expect(framework.StopTunnelProcess(p)).To(Succeed())
	})
}
