package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	proxyclient "open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/agentsim"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// scaleDials is how many dials (plus a round trip) to random clusters
// each latency figure of the scale table is made of.
const scaleDials = 300

// scaleResult is what one proxy-server did with many agents.
type scaleResult struct {
	// connect and reconnect: until every agent was connected, at start
	// and after a proxy-server restart.
	connect, reconnect time.Duration
	// herdFailures counts the agents' failed connection attempts from the
	// moment the restarted proxy-server accepted connections until all
	// were back (the attempts while it was down fail by design).
	herdFailures int
	// restartFailures counts them from the proxy-server's stop on: the
	// witness that the count counts.
	restartFailures int
	// rssPerAgentKiB is the proxy-server's RSS growth per agent.
	rssPerAgentKiB float64
	// idleP99 is with one agent connected, loadedP99 with all; both in ms.
	idleP99, loadedP99 float64
}

// measureScale runs agents simulated agents (package agentsim: our agent,
// one TLS connection and certificate each) against our proxy-server and
// ANP's, and prints the table.
func measureScale(ctx context.Context, dir string, bins *binaries, agents int) error {
	results := map[string]scaleResult{}
	names := []string{"cluster-proxy proxy-server", "ANP v0.36.0 proxy-server"}
	for i, bin := range []string{bins.proxyServer, bins.anpServer} {
		r, err := scaleOne(ctx, filepath.Join(dir, fmt.Sprintf("scale-%d", i)), bin, agents)
		if err != nil {
			return fmt.Errorf("%s with %d agents: %w", names[i], agents, err)
		}
		results[names[i]] = r
	}
	fmt.Printf("\n%d simulated agents (our agent library in the bench process, one TLS connection and certificate each), %d dials to random clusters per figure:\n\n", agents, scaleDials)
	fmt.Printf("| measure | %s |\n|---|---|---|\n", strings.Join(names, " | "))
	row := func(label string, f func(scaleResult) string) {
		cells := make([]string, 0, len(names))
		for _, n := range names {
			cells = append(cells, f(results[n]))
		}
		fmt.Printf("| %s | %s |\n", label, strings.Join(cells, " | "))
	}
	row("proxy-server RSS per agent, KiB", func(r scaleResult) string { return strconv.FormatFloat(r.rssPerAgentKiB, 'f', 1, 64) })
	row("all agents connected after start, s", func(r scaleResult) string { return strconv.FormatFloat(r.connect.Seconds(), 'f', 1, 64) })
	row("all agents reconnected after a proxy-server restart, s", func(r scaleResult) string {
		return strconv.FormatFloat(r.reconnect.Seconds(), 'f', 1, 64)
	})
	row("failed connection attempts once the restarted proxy-server listened (of all during the restart)", func(r scaleResult) string {
		return fmt.Sprintf("%d (of %d)", r.herdFailures, r.restartFailures)
	})
	row("dial + round trip p99, 1 agent, ms", func(r scaleResult) string { return strconv.FormatFloat(r.idleP99, 'f', 2, 64) })
	row(fmt.Sprintf("dial + round trip p99, %d agents, ms", agents), func(r scaleResult) string {
		return fmt.Sprintf("%.2f (%.2f× 1 agent)", r.loadedP99, r.loadedP99/r.idleP99)
	})
	ours := results[names[0]]
	fmt.Printf("\ngoal: every agent reconnected within 60 s of a proxy-server restart: %.1f s — %s\n", ours.reconnect.Seconds(), metOrNot(ours.reconnect <= time.Minute))
	fmt.Printf("goal: no thundering-herd failures (failed attempts once the restarted proxy-server listened): %d — %s\n", ours.herdFailures, metOrNot(ours.herdFailures == 0))
	fmt.Printf("goal: dial + round trip p99 with %d agents ≤ 10× with one: %.2f× — %s\n", agents, ours.loadedP99/ours.idleP99, metOrNot(ours.loadedP99 <= 10*ours.idleP99))
	return nil
}

func metOrNot(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// scaleOne measures one proxy-server binary.
func scaleOne(ctx context.Context, dir, serverBin string, agents int) (scaleResult, error) {
	var r scaleResult
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	pki, err := framework.NewTunnelPKI(dir, "127.0.0.1")
	if err != nil {
		return r, err
	}
	tlsConfig, err := proxyclient.NewTLSConfig(pki.CA.CertPEM, pki.ProxyClientCert, pki.ProxyClientKey, "127.0.0.1")
	if err != nil {
		return r, err
	}
	ports, err := framework.FreeProxyServerPorts()
	if err != nil {
		return r, err
	}
	args := append(framework.ProxyServerArgs(pki, ports, "s0", 1), "--v=0")
	server, err := framework.StartProcess("server", serverBin, args, nil, dir)
	if err != nil {
		return r, err
	}
	defer func() { _ = framework.StopTunnelProcess(server) }()
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports.Health)
	agentAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.Agent))

	// One agent first: the idle figure.
	base, err := agentsim.Start(ctx, agentsim.Config{PKI: pki, ServerAddress: agentAddr, Clusters: []string{"base"}})
	if err != nil {
		return r, err
	}
	defer base.Stop()
	if _, err := waitRoutes(ctx, metrics, 1); err != nil {
		return r, err
	}
	dialer, err := proxyclient.NewDialer(net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.Server)), tlsConfig)
	if err != nil {
		return r, err
	}
	defer func() { _ = dialer.Close() }()
	if r.idleP99, err = clusterDials(ctx, dialer, []string{"base"}); err != nil {
		return r, err
	}

	before, err := rssMiB(server.PID)
	if err != nil {
		return r, err
	}
	clusters := make([]string, agents)
	for i := range clusters {
		clusters[i] = fmt.Sprintf("sim-%05d", i)
	}
	start := time.Now()
	sim, err := agentsim.Start(ctx, agentsim.Config{PKI: pki, ServerAddress: agentAddr, Clusters: clusters})
	if err != nil {
		return r, err
	}
	defer sim.Stop()
	if _, err := waitRoutes(ctx, metrics, agents+1); err != nil {
		return r, err
	}
	r.connect = time.Since(start)
	time.Sleep(2 * time.Second)
	after, err := rssMiB(server.PID)
	if err != nil {
		return r, err
	}
	r.rssPerAgentKiB = (after - before) * 1024 / float64(agents)
	if r.loadedP99, err = clusterDials(ctx, dialer, clusters); err != nil {
		return r, err
	}

	stopped := sim.ConnectFailures() + base.ConnectFailures()
	if err := framework.StopTunnelProcess(server); err != nil {
		return r, err
	}
	server, err = framework.StartProcess("server-restarted", serverBin, args, nil, dir)
	if err != nil {
		return r, err
	}
	start = time.Now()
	if err := waitListening(ctx, agentAddr); err != nil {
		return r, err
	}
	failures := sim.ConnectFailures() + base.ConnectFailures()
	if _, err := waitRoutes(ctx, metrics, agents+1); err != nil {
		return r, err
	}
	r.reconnect = time.Since(start)
	r.herdFailures = sim.ConnectFailures() + base.ConnectFailures() - failures
	r.restartFailures = sim.ConnectFailures() + base.ConnectFailures() - stopped
	return r, nil
}

// waitListening waits up to a minute until address accepts TCP
// connections.
func waitListening(ctx context.Context, address string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", address)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the restarted proxy-server did not listen on %s within a minute: %w", address, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRoutes waits up to two minutes until the proxy-server serving
// metrics reports n ready backend connections (one per simulated agent).
func waitRoutes(ctx context.Context, metrics string, n int) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	for {
		v, err := readyBackends(ctx, metrics)
		if err == nil && v == n {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d agents connected after 2 minutes (last scrape: %w)", v, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyBackends reads konnectivity_network_proxy_server_ready_backend_connections.
func readyBackends(ctx context.Context, url string) (int, error) {
	v, err := framework.ScrapeMetric(ctx, url, "konnectivity_network_proxy_server_ready_backend_connections")
	return int(v), err
}

// scaleWarmUp is how many dials clusterDials makes before it counts: the
// first dials of a new Dialer (its connection, TLS and gRPC warming up)
// would otherwise be the one-agent p99.
const scaleWarmUp = 30

// clusterDials dials scaleDials random clusters' simulated backends one
// after another, each with a round trip, after scaleWarmUp uncounted ones,
// and returns the p99 in ms.
func clusterDials(ctx context.Context, dialer *proxyclient.Dialer, clusters []string) (float64, error) {
	lat := make([]float64, 0, scaleDials)
	for i := range scaleWarmUp + scaleDials {
		cluster := clusters[rand.IntN(len(clusters))]
		start := time.Now()
		conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(cluster, "80"))
		if err != nil {
			return 0, fmt.Errorf("dial %d of %s: %w", i, cluster, err)
		}
		if _, err := conn.Write([]byte{'x'}); err != nil {
			_ = conn.Close()
			return 0, fmt.Errorf("dial %d of %s: %w", i, cluster, err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		_ = conn.Close()
		if err != nil {
			return 0, fmt.Errorf("dial %d of %s: %w", i, cluster, err)
		}
		if line != cluster+"\n" {
			return 0, fmt.Errorf("dial %d of %s reached %q", i, cluster, line)
		}
		if i >= scaleWarmUp {
			lat = append(lat, float64(time.Since(start).Microseconds())/1000)
		}
	}
	return percentile(lat, 99), nil
}
