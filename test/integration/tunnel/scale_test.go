package tunnel_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sync/errgroup"

	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/agentsim"
)

const (
	// simulatedAgents is how many agents the scale spec runs: sized for
	// CI; the bench runs 3,500.
	simulatedAgents = 1000
	// scaleConnectBound bounds how long the simulated agents take to
	// connect (again): their back-off cap plus the TLS handshakes of all
	// of them, on a 2-core machine with the race detector in this
	// process. A bound on a hang, not a performance claim.
	scaleConnectBound = 90 * time.Second
	// scaleDials is how many dials to random clusters each round makes.
	scaleDials = 200
)

var _ = Describe("Many agents on one proxy-server", Label("tunnel", "scale"), func() {
	It("has 1,000 simulated agents connect, get their own clusters' dials, and reconnect after the proxy-server restarts", func(ctx SpecContext) {
		server := startProxyServer("scale-proxy-server", 1)
		clusters := make([]string, simulatedAgents)
		for i := range clusters {
			clusters[i] = fmt.Sprintf("sim-%04d", i)
		}
		start := time.Now()
		sim, err := agentsim.Start(ctx, agentsim.Config{PKI: pki,
			ServerAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(server.ports.Agent)), Clusters: clusters})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sim.Stop)
		Eventually(metricFunc(server.healthURL("/metrics"), serverReadyBackends)).WithContext(ctx).
			WithTimeout(scaleConnectBound).WithPolling(time.Second).Should(BeNumerically("==", simulatedAgents))
		GinkgoWriter.Printf("%d agents connected %v after they started\n", simulatedAgents, time.Since(start))

		dialer := newDialer(server.ports.Server)
		Expect(dialClusters(ctx, dialer, clusters, scaleDials)).To(Succeed())

		server.stop()
		Eventually(sim.Connected).WithTimeout(agentGoneBound).WithPolling(100*time.Millisecond).Should(BeZero(),
			"agents that still think they are connected")
		server.startAgain()
		restarted := time.Now()
		Eventually(metricFunc(server.healthURL("/metrics"), serverReadyBackends)).WithContext(ctx).
			WithTimeout(scaleConnectBound).WithPolling(time.Second).Should(BeNumerically("==", simulatedAgents))
		GinkgoWriter.Printf("%d agents reconnected %v after the proxy-server restarted\n", simulatedAgents, time.Since(restarted))
		Expect(dialClusters(ctx, dialer, clusters, scaleDials)).To(Succeed())
	})
})

// dialClusters dials n random clusters' backends through dialer, 20 at a
// time, and checks that each answers with its own cluster's name and
// echoes.
func dialClusters(ctx context.Context, dialer *client.Dialer, clusters []string, n int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(20)
	for i := range n {
		cluster := clusters[rand.IntN(len(clusters))]
		g.Go(func() error {
			conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(cluster, "80"))
			if err != nil {
				return fmt.Errorf("dial %d of %s: %w", i, cluster, err)
			}
			defer func() { _ = conn.Close() }()
			msg := fmt.Sprintf("hello %d", i)
			if _, err := conn.Write([]byte(msg)); err != nil {
				return err
			}
			r := bufio.NewReader(conn)
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("dial %d of %s: %w", i, cluster, err)
			}
			if line != cluster+"\n" {
				return fmt.Errorf("dial %d of %s reached %q", i, cluster, line)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(r, got); err != nil {
				return fmt.Errorf("dial %d of %s: %w", i, cluster, err)
			}
			if string(got) != msg {
				return fmt.Errorf("dial %d of %s echoed %q, want %q", i, cluster, got, msg)
			}
			return nil
		})
	}
	return g.Wait()
}
