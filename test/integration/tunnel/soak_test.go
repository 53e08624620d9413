package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/goleak"

	"open-cluster-management.io/cluster-proxy/pkg/client"
)

const (
	// soakDials is how many dials the soak makes, each with one round trip
	// and a close.
	soakDials = 10000
	// soakConcurrency is how many of them are in flight at once.
	soakConcurrency = 16
	// soakBound bounds the whole soak: it fails a stalled tunnel, and is not
	// a throughput target (about 15 s here on 2 shared cores).
	soakBound = 3 * time.Minute

	// The resource metrics of the proxy-server and the agent (Prometheus's
	// Go and process collectors on their health ports).
	serverGoroutines = "go_goroutines"
	serverOpenFDs    = "process_open_fds"

	// soakGoroutineSlack and soakFDSlack are how far above the resting
	// baseline the proxy-server (and the agent) may end. At rest the
	// proxy-server holds the same things
	// before and after: its four listeners, the agent's connection and
	// stream, the Dialer's gRPC connection (its dials' streams all ended),
	// and the connection of the scrape that measures it. The slack covers
	// one scrape connection the HTTP server has not finished closing (one
	// goroutine and one descriptor) and a gRPC transport goroutine that
	// comes and goes with keepalive activity. A leak of one goroutine or
	// descriptor per thousand dials already ends 10 above the baseline; one
	// per dial, 10,000.
	soakGoroutineSlack = 2
	soakFDSlack        = 1
	// settleBound bounds how long the proxy-server takes to come back to
	// rest once the last dial closed.
	settleBound = 15 * time.Second
)

var _ = Describe("The tunnel over many dials", Label("tunnel", "soak"), func() {
	It("carries 10,000 dials and leaves the proxy-server's and the agent's goroutines and open files at their baseline", func(ctx SpecContext) {
		server := startProxyServer("soak-proxy-server", 1)
		agent := startProxyAgent("soak-proxy-agent", cluster, server.ports.Agent, "127.0.0.1")
		waitHTTPOK(server.healthURL("/readyz"), readyTimeout, server.process, agent.process)

		leaks := goleak.IgnoreCurrent()
		dialer, err := client.NewDialer(server.address(), proxyTLS)
		Expect(err).NotTo(HaveOccurred())
		closed := false
		DeferCleanup(func() {
			if !closed {
				Expect(dialer.Close()).To(Succeed())
			}
		})
		// Warm up: the first dials wait until the agent has registered its
		// host names; a few more bring up everything that stays up (the
		// Dialer's gRPC connection and its transport on the server).
		Eventually(func(ctx context.Context) error {
			return echoThrough(ctx, dialer, cluster, "warm-up")
		}).WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		for i := range soakConcurrency {
			Expect(echoThrough(ctx, dialer, cluster, fmt.Sprintf("warm-up %d", i))).To(Succeed())
		}
		processes := []restingProcess{{"proxy-server", server.healthURL("/metrics")}, {"proxy-agent", agent.healthURL("/metrics")}}
		base := make([]levels, len(processes))
		for i, p := range processes {
			base[i] = restingLevels(ctx, p.metrics)
			GinkgoWriter.Printf("%s at rest before the soak: %v goroutines, %v open file descriptors\n", p.name, base[i].goroutines, base[i].fds)
		}

		soakCtx, cancel := context.WithTimeout(ctx, soakBound)
		defer cancel()
		var next, failed atomic.Int64
		var firstErr error
		var errOnce sync.Once
		var wg sync.WaitGroup
		began := time.Now()
		for range soakConcurrency {
			wg.Go(func() {
				for i := next.Add(1); i <= soakDials; i = next.Add(1) {
					if err := echoThrough(soakCtx, dialer, cluster, fmt.Sprintf("soak dial %d", i)); err != nil {
						failed.Add(1)
						errOnce.Do(func() { firstErr = fmt.Errorf("dial %d: %w", i, err) })
						if errors.Is(soakCtx.Err(), context.DeadlineExceeded) {
							return
						}
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(began)
		GinkgoWriter.Printf("%d dials (%d at a time) in %v: %.0f dials/s\n", soakDials, soakConcurrency, elapsed,
			float64(soakDials)/elapsed.Seconds())
		Expect(failed.Load()).To(BeZero(), "failed dials, the first: %v", firstErr)
		stats := dialer.Stats()
		Expect(stats.Dials).To(BeNumerically(">=", soakDials))
		Expect(stats.Tunnels).To(Equal(1), "the Dialer kept its one gRPC connection")
		Expect(stats.OpenConnections).To(BeZero())

		// Back at rest: the proxy-server forgot every dial and connection
		// and released what served them.
		Eventually(metricFunc(server.healthURL("/metrics"), serverPendingDials)).WithContext(ctx).
			WithTimeout(settleBound).Should(BeZero())
		for i, p := range processes {
			var now levels
			Eventually(func(ctx context.Context) error {
				var err error
				if now, err = scrapeLevels(ctx, p.metrics); err != nil {
					return err
				}
				if now.goroutines > base[i].goroutines+soakGoroutineSlack || now.fds > base[i].fds+soakFDSlack {
					return fmt.Errorf("%v goroutines and %v open file descriptors, baseline %v and %v", now.goroutines, now.fds, base[i].goroutines, base[i].fds)
				}
				return nil
			}).WithContext(ctx).WithTimeout(settleBound).WithPolling(250*time.Millisecond).Should(Succeed(),
				"the %s did not come back to its resting goroutines and file descriptors", p.name)
			GinkgoWriter.Printf("%s at rest after the soak: %v goroutines, %v open file descriptors\n", p.name, now.goroutines, now.fds)
		}

		// The client side let go of everything too.
		Expect(dialer.Close()).To(Succeed())
		closed = true
		expectNoLeaks(leaks)
	})
})

// restingProcess is a process the soak checks, by its metrics URL.
type restingProcess struct{ name, metrics string }

// levels are a process's goroutines and open file descriptors.
type levels struct{ goroutines, fds float64 }

// scrapeLevels reads a process's levels from its metrics.
func scrapeLevels(ctx context.Context, metrics string) (levels, error) {
	g, err := scrapeMetric(ctx, metrics, serverGoroutines)
	if err != nil {
		return levels{}, err
	}
	f, err := scrapeMetric(ctx, metrics, serverOpenFDs)
	if err != nil {
		return levels{}, err
	}
	return levels{g, f}, nil
}

// restingLevels returns a process's goroutines and open file descriptors
// once three scrapes in a row agree, so that the baseline is not taken
// while something is still winding down.
func restingLevels(ctx context.Context, metrics string) levels {
	GinkgoHelper()
	var seen []levels
	Eventually(func(ctx context.Context) error {
		l, err := scrapeLevels(ctx, metrics)
		if err != nil {
			return err
		}
		seen = append(seen, l)
		if n := len(seen); n < 3 || seen[n-1] != seen[n-2] || seen[n-2] != seen[n-3] {
			return fmt.Errorf("not settled yet: %v", seen)
		}
		return nil
	}).WithContext(ctx).WithTimeout(settleBound).WithPolling(200 * time.Millisecond).Should(Succeed())
	return seen[len(seen)-1]
}
