package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client/metrics"

	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// heldConnectionBound bounds how long a connection held through the
	// tunnel takes to fail once its agent is gone. Nothing in the path
	// would ever time it out otherwise: konnectivity connections have no
	// deadlines, the client's gRPC connection to the proxy-server stays
	// healthy, and the agent's keepalive (1 h) is on the dead side. The
	// proxy-server sees the agent's TCP connection end at once and sends
	// CLOSE_RSP for each connection it carried, which ends the read; the
	// bound is far above that and below konnectivity's 30 s dial backstop,
	// so a pass means "told", not "timed out".
	heldConnectionBound = 15 * time.Second
	// agentGoneBound bounds how long an agent takes to notice that its
	// proxy-server went away (its gRPC stream ends with the TCP connection).
	agentGoneBound = 10 * time.Second
	// dialBound bounds one dial that must fail fast.
	dialBound = 5 * time.Second

	// Prometheus metrics of apiserver-network-proxy's processes.
	agentServerConnections = "konnectivity_network_proxy_agent_open_server_connections"
	// agentEndpointConnections counts the backend connections an agent
	// holds open.
	agentEndpointConnections = "konnectivity_network_proxy_agent_open_endpoint_connections"
	// serverReadyBackends counts one backend per host name an agent
	// registered (destHost strategy).
	serverReadyBackends = "konnectivity_network_proxy_server_ready_backend_connections"
	serverPendingDials  = "konnectivity_network_proxy_server_pending_backend_dials"
)

var _ = Describe("Tunnel faults", Label("tunnel", "faults"), func() {
	It("carries new dials again after the agent is killed and restarted, and fails held connections at once", func(ctx SpecContext) {
		server := startProxyServer("kill-proxy-server", 1)
		agent := startProxyAgent("kill-proxy-agent", cluster, server.ports.Agent, "127.0.0.1")
		waitHTTPOK(server.healthURL("/readyz"), readyTimeout, server.process, agent.process)
		dialer := newDialer(server.ports.Server)
		Expect(echoThrough(ctx, dialer, cluster, "before the kill")).To(Succeed())
		held, err := dialer.DialContext(ctx, "tcp", echoAddress(cluster))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = held.Close() })
		Expect(roundTrip(held, "held")).To(Succeed())
		Expect(scrapeMetric(ctx, agent.healthURL("/metrics"), agentEndpointConnections)).To(BeNumerically("==", 1),
			"backend connections the agent holds")

		agent.kill()
		killed := time.Now()

		readErr := make(chan error, 1)
		go func() {
			_, err := held.Read(make([]byte, 1))
			readErr <- err
		}()
		Eventually(readErr).WithTimeout(heldConnectionBound).Should(Receive(HaveOccurred()),
			"a read on a connection through the killed agent is still blocked")
		GinkgoWriter.Printf("the held connection failed %v after the kill\n", time.Since(killed))
		Expect(held.Close()).To(Succeed())

		// With no agent, a dial is refused at once, naming the cluster.
		Eventually(func(ctx context.Context) error {
			return expectNoAgent(ctx, dialer, cluster)
		}).WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		agent.start()
		restarted := time.Now()
		Eventually(func(ctx context.Context) error {
			return echoThrough(ctx, dialer, cluster, "after the restart")
		}).WithContext(ctx).WithTimeout(reconnectBound).WithPolling(100*time.Millisecond).Should(Succeed(),
			"no dial succeeded within the agent's backoff cap (%v) plus margin", agentSyncIntervalCap)
		GinkgoWriter.Printf("a dial succeeded %v after the agent restarted\n", time.Since(restarted))

		// The client's pooled gRPC connection to the proxy-server lived
		// through it all.
		Expect(dialer.Stats().Tunnels).To(Equal(1))
		Expect(dialer.Stats().OpenConnections).To(BeZero())
	})

	It("has the agent reconnect by itself after the proxy-server restarts", func(ctx SpecContext) {
		server := startProxyServer("restart-proxy-server", 1)
		agent := startProxyAgent("restart-proxy-agent", cluster, server.ports.Agent, "127.0.0.1")
		waitHTTPOK(server.healthURL("/readyz"), readyTimeout, server.process, agent.process)
		waitHTTPOK(agent.healthURL("/readyz"), readyTimeout, agent.process, server.process)
		dialer := newDialer(server.ports.Server)
		Expect(echoThrough(ctx, dialer, cluster, "before the restart")).To(Succeed())

		server.stop()
		// The agent notices (it is no longer ready), and retries with its
		// backoff while the proxy-server is away.
		Eventually(func(ctx context.Context) (int, error) {
			return httpStatus(ctx, agent.healthURL("/readyz"))
		}).WithContext(ctx).WithTimeout(agentGoneBound).WithPolling(100 * time.Millisecond).
			Should(And(BeNumerically(">=", 400), Not(Equal(http.StatusNotFound))))
		server.startAgain()
		restarted := time.Now()

		waitHTTPOK(server.healthURL("/readyz"), reconnectBound, server.process, agent.process)
		GinkgoWriter.Printf("the agent reconnected %v after the proxy-server restarted\n", time.Since(restarted))
		Expect(agent.process.Done()).NotTo(BeClosed(), "the agent exited instead of reconnecting")
		Expect(agent.starts).To(Equal(1))
		Eventually(func(ctx context.Context) error {
			return echoThrough(ctx, dialer, cluster, "after the restart")
		}).WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})

	It("has one agent behind a Service hold both of two proxy-server replicas, and dials through either succeed", func(ctx SpecContext) {
		replicas := []*proxyServer{startProxyServer("ha-proxy-server-a", 2), startProxyServer("ha-proxy-server-b", 2)}
		// The agent is given one address, as in a real deployment (the
		// proxy-server Service); it finds both replicas by connecting
		// again until it has seen --server-count distinct server IDs.
		relay := startRoundRobinRelay(
			net.JoinHostPort("127.0.0.1", strconv.Itoa(replicas[0].ports.Agent)),
			net.JoinHostPort("127.0.0.1", strconv.Itoa(replicas[1].ports.Agent)))
		agent := startProxyAgent("ha-proxy-agent", cluster, relay.port, "127.0.0.1")

		for _, replica := range replicas {
			waitHTTPOK(replica.healthURL("/readyz"), readyTimeout, replica.process, agent.process)
			Eventually(metricFunc(replica.healthURL("/metrics"), serverReadyBackends)).WithContext(ctx).
				WithTimeout(5*time.Second).Should(BeNumerically("==", len(framework.ProxyAgentHosts(cluster, agentNamespace))),
				"host names registered on %s", replica.name)
		}
		Eventually(metricFunc(agent.healthURL("/metrics"), agentServerConnections)).WithContext(ctx).
			WithTimeout(5*time.Second).Should(BeNumerically("==", 2), "proxy-servers the agent holds")
		Expect(relay.accepted[0].Load()).To(BeNumerically(">=", 1))
		Expect(relay.accepted[1].Load()).To(BeNumerically(">=", 1))

		for _, replica := range replicas {
			dialer := newDialer(replica.ports.Server)
			for i := range 5 {
				Expect(echoThrough(ctx, dialer, cluster, fmt.Sprintf("via %s, %d", replica.name, i))).To(Succeed())
			}
		}
	})

	It("leaks no goroutines when the client cancels dials", func(ctx SpecContext) {
		server := startProxyServer("cancel-proxy-server", 1)
		agent := startProxyAgent("cancel-proxy-agent", cluster, server.ports.Agent, "127.0.0.1")
		waitHTTPOK(server.healthURL("/readyz"), readyTimeout, server.process, agent.process)
		silent := startSilentBackend()

		snapshot := goleak.IgnoreCurrent()
		dialer, err := client.NewDialer(server.address(), proxyTLS)
		Expect(err).NotTo(HaveOccurred())
		Expect(echoThrough(ctx, dialer, cluster, "warm-up")).To(Succeed())

		// A dial the agent cannot complete (the backend's accept queue is
		// full), cancelled while the proxy-server holds it as pending.
		dialCtx, cancel := context.WithCancel(ctx)
		result := make(chan error, 1)
		go func() {
			conn, err := dialer.DialContext(dialCtx, "tcp", net.JoinHostPort(cluster, strconv.Itoa(silent.port)))
			if conn != nil {
				_ = conn.Close()
			}
			result <- err
		}()
		Eventually(metricFunc(server.healthURL("/metrics"), serverPendingDials)).WithContext(ctx).
			WithTimeout(5 * time.Second).WithPolling(20 * time.Millisecond).Should(BeNumerically("==", 1))
		cancel()
		var dialErr error
		Eventually(result).WithTimeout(dialBound).Should(Receive(&dialErr))
		Expect(dialErr).To(HaveOccurred())
		isDialFailure, reason := konnectivity.GetDialFailureReason(dialErr)
		Expect(isDialFailure).To(BeTrue(), "error %v", dialErr)
		Expect(reason).To(Equal(metrics.DialFailureContext))
		// Not checked: that the proxy-server's pending-dial gauge drops back
		// to 0. The server does forget the dial when the cancelled dial's
		// stream ends, but apiserver-network-proxy v0.36.0 does not update
		// the gauge on that path (PendingDialManager.removeForStream), so it
		// reads 1 until the agent's own dial times out 5 s later.

		// Dials cancelled at every stage: before the request leaves, while
		// pending, and racing the answer.
		for i := range 40 {
			dialCtx, cancel := context.WithTimeout(ctx, time.Duration(i)*250*time.Microsecond)
			conn, err := dialer.DialContext(dialCtx, "tcp", echoAddress(cluster))
			cancel()
			if err != nil {
				isDialFailure, reason := konnectivity.GetDialFailureReason(err)
				Expect(isDialFailure && reason == metrics.DialFailureContext).To(BeTrue(),
					"dial %d failed with %v, not because its context ended", i, err)
				continue
			}
			Expect(roundTrip(conn, fmt.Sprintf("dial %d", i))).To(Succeed())
			Expect(conn.Close()).To(Succeed())
		}

		// The shared tunnel is still the first one, and still works.
		Expect(echoThrough(ctx, dialer, cluster, "after the cancellations")).To(Succeed())
		Expect(dialer.Stats().Tunnels).To(Equal(1))
		Expect(dialer.Stats().OpenConnections).To(BeZero())
		Expect(dialer.Close()).To(Succeed())
		expectNoLeaks(snapshot)
	})
})

// echoAddress is the address of the echo backend in the cluster whose
// agent resolves host to 127.0.0.1.
func echoAddress(host string) string {
	return net.JoinHostPort(host, strconv.Itoa(echo.port))
}

// roundTrip writes msg on conn and expects it back.
func roundTrip(conn net.Conn, msg string) error {
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("failed to write through the tunnel: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("failed to read through the tunnel: %w", err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo answered %q, want %q", got, msg)
	}
	return nil
}

// expectNoAgent dials host through dialer and returns nil when the dial
// fails fast with a NoAgentError naming host.
func expectNoAgent(ctx context.Context, dialer *client.Dialer, host string) error {
	ctx, cancel := context.WithTimeout(ctx, dialBound)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", echoAddress(host))
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("a dial of %s succeeded, want no agent", host)
	}
	var noAgent *client.NoAgentError
	if !errors.As(err, &noAgent) {
		return fmt.Errorf("a dial of %s failed with %w, want a NoAgentError", host, err)
	}
	if noAgent.Cluster != host {
		return fmt.Errorf("the NoAgentError names %q, want %q", noAgent.Cluster, host)
	}
	return nil
}

// silentBackend is a TCP listener on 127.0.0.1 whose accept queue is full,
// so the kernel drops further connection attempts (SYNs) and a dial to it
// hangs until the dialler gives up: a backend that does not answer, on
// loopback.
type silentBackend struct {
	fd     int
	port   int
	filler net.Conn
}

// startSilentBackend listens with a backlog of 0 (one queued connection on
// Linux), never accepts, and fills the queue with one connection. It is
// closed when the surrounding node's cleanup runs.
func startSilentBackend() *silentBackend {
	GinkgoHelper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	Expect(err).NotTo(HaveOccurred())
	b := &silentBackend{fd: fd}
	DeferCleanup(b.Close)
	Expect(syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})).To(Succeed())
	Expect(syscall.Listen(fd, 0)).To(Succeed())
	sa, err := syscall.Getsockname(fd)
	Expect(err).NotTo(HaveOccurred())
	b.port = sa.(*syscall.SockaddrInet4).Port
	b.filler, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)), 5*time.Second)
	Expect(err).NotTo(HaveOccurred())
	// Check that the queue is full: a second dial must hang.
	probe, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)), 300*time.Millisecond)
	if err == nil {
		_ = probe.Close()
	}
	Expect(err).To(HaveOccurred(), "a dial to the full backlog succeeded; the kernel does not drop SYNs here")
	return b
}

// Close closes the filler connection and the listening socket.
func (b *silentBackend) Close() {
	if b.filler != nil {
		_ = b.filler.Close()
	}
	_ = syscall.Close(b.fd)
}
