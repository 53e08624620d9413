package tunnel_test

import (
	"context"
	"net"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// grpcKeepaliveTimeout is how long gRPC waits for the answer to a
	// keepalive ping before it closes the connection (its default on both
	// ends; neither proxy-server nor proxy-agent has a flag for it).
	grpcKeepaliveTimeout = 20 * time.Second
	// serverKeepalive is the proxy-server's --keepalive-time in the
	// half-open spec: how long an agent connection may be silent before
	// the proxy-server pings it.
	serverKeepalive = 5 * time.Second
	// agentKeepalive is the proxy-agent's --keepalive-time in the
	// half-open spec, the shortest the proxy-server accepts (its keepalive
	// enforcement policy, as apiserver-network-proxy's, allows one ping per
	// 30 s).
	agentKeepalive = 30 * time.Second
	// keepaliveMargin covers process scheduling on a loaded machine on top
	// of a keepalive deadline.
	keepaliveMargin = 10 * time.Second
)

var _ = Describe("The network between agents and proxy-servers", Label("tunnel", "faults", "network"), func() {
	It("has the agent reconnect within its backoff cap after the network is cut and restored", func(ctx SpecContext) {
		server := startProxyServer("cut-proxy-server", 1)
		relay := startRoundRobinRelay(net.JoinHostPort("127.0.0.1", strconv.Itoa(server.ports.Agent)))
		agent := startProxyAgent("cut-proxy-agent", cluster, relay.port, "127.0.0.1")
		waitHTTPOK(server.healthURL("/readyz"), readyTimeout, server.process, agent.process)
		dialer := newDialer(server.ports.Server)
		Expect(echoThrough(ctx, dialer, cluster, "before the cut")).To(Succeed())

		relay.cut()
		// Both ends see their connection reset: the proxy-server drops the
		// agent's routes, so dials fail fast naming the cluster, and the
		// agent starts retrying.
		Eventually(metricFunc(server.healthURL("/metrics"), serverReadyBackends)).WithContext(ctx).
			WithTimeout(agentGoneBound).Should(BeZero())
		Expect(expectNoAgent(ctx, dialer, cluster)).To(Succeed())
		Eventually(metricFunc(agent.healthURL("/metrics"), agentServerConnections)).WithContext(ctx).
			WithTimeout(agentGoneBound).Should(BeZero())
		// The network stays down long enough for the agent's retries to
		// back off to their cap: the reconnect below is then bounded by
		// the cap, not by the first, short retry intervals.
		time.Sleep(agentSyncIntervalCap + 2*time.Second)

		relay.restore()
		restored := time.Now()
		Eventually(func(ctx context.Context) error {
			return echoThrough(ctx, dialer, cluster, "after the network came back")
		}).WithContext(ctx).WithTimeout(reconnectBound).WithPolling(100*time.Millisecond).Should(Succeed(),
			"no dial succeeded within the agent's backoff cap (%v) plus margin", agentSyncIntervalCap)
		GinkgoWriter.Printf("a dial succeeded %v after the network came back\n", time.Since(restored))
		Expect(agent.process.Done()).NotTo(BeClosed(), "the agent exited instead of reconnecting")
		Expect(agent.starts).To(Equal(1))
		Expect(dialer.Stats().Tunnels).To(Equal(1))
	})

	It("detects a half-open agent connection by keepalive on both ends, and the agent reconnects", func(ctx SpecContext) {
		server := startProxyServerWith("halfopen-proxy-server", 1, pki, "--keepalive-time="+serverKeepalive.String())
		relay := startRoundRobinRelay(net.JoinHostPort("127.0.0.1", strconv.Itoa(server.ports.Agent)))
		agent := startProxyAgentWith("halfopen-proxy-agent", cluster, relay.port, "127.0.0.1", pki,
			"--keepalive-time="+agentKeepalive.String())
		waitHTTPOK(server.healthURL("/readyz"), readyTimeout, server.process, agent.process)
		dialer := newDialer(server.ports.Server)
		Expect(echoThrough(ctx, dialer, cluster, "before the black hole")).To(Succeed())
		hosts := len(framework.ProxyAgentHosts(cluster, agentNamespace))

		Expect(relay.blackhole()).To(Equal(1), "agent connections relayed")
		blackholed := time.Now()
		// Nothing tells either end: the proxy-server keeps the agent's
		// routes until its keepalive gives up (a witness that the relay
		// neither reset nor closed the connection).
		Consistently(metricFunc(server.healthURL("/metrics"), serverReadyBackends)).WithContext(ctx).
			WithTimeout(serverKeepalive / 2).Should(BeNumerically("==", hosts))

		// The proxy-server pings every serverKeepalive, gets no answer and
		// drops the connection: dials fail fast again instead of hanging
		// on an agent that cannot answer.
		Eventually(metricFunc(server.healthURL("/metrics"), serverReadyBackends)).WithContext(ctx).
			WithTimeout(serverKeepalive+grpcKeepaliveTimeout+keepaliveMargin).WithPolling(250*time.Millisecond).
			Should(BeZero(), "the proxy-server still routes to the half-open agent connection")
		GinkgoWriter.Printf("the proxy-server dropped the half-open connection after %v\n", time.Since(blackholed))
		Expect(expectNoAgent(ctx, dialer, cluster)).To(Succeed())

		// The agent hears nothing once the proxy-server's pings stop,
		// pings after agentKeepalive, gives up after the ping timeout, and
		// connects again through the relay, which relays new connections.
		Eventually(func(ctx context.Context) error {
			return echoThrough(ctx, dialer, cluster, "after the agent reconnected")
		}).WithContext(ctx).WithTimeout(agentKeepalive+grpcKeepaliveTimeout+reconnectBound).WithPolling(250*time.Millisecond).
			Should(Succeed(), "the agent did not notice its half-open connection")
		GinkgoWriter.Printf("the agent was back %v after its connection went half-open\n", time.Since(blackholed))
		Expect(relay.accepted[0].Load()).To(BeNumerically(">=", 2), "connections through the relay")
		Expect(agent.process.Done()).NotTo(BeClosed(), "the agent exited instead of reconnecting")
		Expect(agent.starts).To(Equal(1))
	})
})
