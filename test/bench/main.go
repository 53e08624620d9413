// Command bench measures, in one run on loopback, direct TCP, the topology
// limit (two plain relays with TLS between them: the tunnel's shape with no
// protocol), our tunnel (our proxy-server and proxy-agent binaries) and ANP
// v0.36.0's stock binaries: bulk throughput (one stream and eight in parallel, each way),
// 64-byte round trips, dial plus first round trip (konnectivity's
// single-use tunnel and our pooled Dialer), and the proxy-server and agent
// memory with idle tunnelled connections, and isolation (another
// connection's download while one connection's reader is stopped with a
// gigabyte pending; isolation.go). It prints each figure with its
// ratios to direct TCP and to the topology limit. Memory is measured first,
// on fresh processes; then the paths take turns: each throughput figure
// twice per path (the best shown), round trips and dials in batches of 100
// per path, so load from elsewhere on the machine falls on every path
// alike.
//
// Then (unless -gets=0) it starts a real kube-apiserver and etcd (the
// control-plane build under bin/k8s), a fresh tunnel of ours, the
// service-proxy and the user-server (`cluster-proxy service-proxy` and
// `cluster-proxy user-server`, run as processes), and measures the p50 and
// p99 latency of a small authenticated GET (/api/v1/namespaces/default,
// with a service account's token) three ways: direct to the kube-apiserver;
// through our user-server, the tunnel and the service-proxy; and through a
// baseline user-server built the existing addon's way (kube.go,
// perRequestTunnels: a new konnectivity single-use tunnel and a new
// http.Transport for every request, otherwise our user-server's own
// routing), all three with keep-alive HTTP/1.1 clients. It prints them with
// their ratios and whether issue 13's goals are met: p50 through our
// user-server at most 1.5× direct and at least 5× faster than the baseline.
//
// Run it with `make bench` on an otherwise idle machine; it is a
// measurement, not a test.
package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	proxyclient "open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

func main() {
	size := flag.Int64("size", 1<<30, "bytes per single-stream transfer (the 8-stream run moves the same total)")
	rounds := flag.Int("round-trips", 2000, "64-byte round trips per path")
	dials := flag.Int("dials", 1000, "dials (plus first round trip) per path and kind (pooled, single-use)")
	idle := flag.Int("idle", 10000, "idle tunnelled connections for the memory figure (issue 15's goal is set at 10,000)")
	gets := flag.Int("gets", 2000, "small kube GETs per user-server path, after a warm-up (0 skips the kube-apiserver and user-server rows)")
	agents := flag.Int("agents", 3500, "simulated agents for the scale table (0 skips it)")
	plot := flag.String("plot", filepath.Join("_output", "bench", "throughput.png"), "PNG file for the plot of throughput against the topology limit (empty: none)")
	flag.Parse()
	// envtest logs through controller-runtime's logger; its failures come
	// back as errors, so its logs are not needed.
	logf.SetLogger(logr.Discard())
	if err := run(*size, *rounds, *dials, *idle, *gets, *agents, *plot); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// path is a way to reach the backend.
type path struct {
	name string
	// dial opens a connection to the backend; pooled is the pooled variant
	// (nil for direct TCP).
	dial, singleUse func(ctx context.Context) (net.Conn, error)
	server, agent   *framework.Process
}

func run(size int64, rounds, dials, idle, gets, agents int, plot string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "cluster-proxy-bench-")
	if err != nil {
		return fmt.Errorf("failed to create a work directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bins, removeBinaries, err := buildBinaries(gets > 0)
	if err != nil {
		return err
	}
	defer removeBinaries()

	fmt.Printf("cluster-proxy benchmark, %s, loopback, %d CPUs\n\n", time.Now().UTC().Format(time.RFC3339), numCPU())
	if err := measureTunnels(ctx, dir, bins, size, rounds, dials, idle, plot); err != nil {
		return err
	}
	if agents > 0 {
		if err := measureScale(ctx, dir, bins, agents); err != nil {
			return err
		}
	}
	if gets > 0 {
		return measureKubeGETs(ctx, dir, bins, gets)
	}
	return nil
}

// binaries are the programs the bench runs, built from source in the run.
type binaries struct {
	// proxyServer and proxyAgent are ours, anpServer and anpAgent
	// apiserver-network-proxy v0.36.0's stock server and agent.
	proxyServer, proxyAgent, anpServer, anpAgent string
	// clusterProxy is our `cluster-proxy` (user-server, service-proxy);
	// empty when the kube GET rows are skipped.
	clusterProxy string
}

// buildBinaries builds the binaries; remove deletes them.
func buildBinaries(withClusterProxy bool) (b *binaries, remove func(), err error) {
	b = &binaries{}
	var dirs []string
	remove = func() {
		for _, dir := range dirs {
			_ = os.RemoveAll(dir)
		}
	}
	build := func(bin *string, pkg, name string) {
		if err != nil {
			return
		}
		if *bin, err = framework.BuildBinary(pkg, name); err == nil {
			dirs = append(dirs, filepath.Dir(*bin))
		}
	}
	build(&b.proxyServer, "./cmd/proxy-server", "proxy-server")
	build(&b.proxyAgent, "./cmd/proxy-agent", "proxy-agent")
	build(&b.anpServer, "sigs.k8s.io/apiserver-network-proxy/cmd/server", "anp-server")
	build(&b.anpAgent, "sigs.k8s.io/apiserver-network-proxy/cmd/agent", "anp-agent")
	if withClusterProxy {
		build(&b.clusterProxy, "./cmd/cluster-proxy", "cluster-proxy")
	}
	if err != nil {
		remove()
		return nil, nil, err
	}
	return b, remove, nil
}

// measureTunnels measures and prints the byte-level figures: direct TCP,
// the topology limit, our tunnel and ANP's.
func measureTunnels(ctx context.Context, dir string, bins *binaries, size int64, rounds, dials, idle int, plot string) error {
	backend, err := startBackend()
	if err != nil {
		return err
	}
	defer func() { _ = backend.Close() }()
	target := backend.Addr().String()

	direct := &path{name: "direct TCP", dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target)
	}}
	limit, stopLimit, err := startTopologyLimit(target)
	if err != nil {
		return err
	}
	defer stopLimit()
	paths := []*path{direct, limit}
	for _, t := range []struct{ name, tag, server, agent string }{
		{"cluster-proxy tunnel", "clusterproxy", bins.proxyServer, bins.proxyAgent},
		{"ANP v0.36.0 tunnel", "ANP", bins.anpServer, bins.anpAgent},
	} {
		p, cleanup, err := startTunnelPath(ctx, dir, t.name, t.tag, t.server, t.agent, target)
		if err != nil {
			return err
		}
		defer cleanup()
		paths = append(paths, p)
	}

	table := &results{}
	if err := measureAll(ctx, paths, size, rounds, dials, idle, table); err != nil {
		return err
	}
	table.print(os.Stdout, direct.name, limit.name)
	if plot != "" {
		if err := plotThroughput(table, []string{limit.name, paths[2].name, paths[3].name}, plot); err != nil {
			return err
		}
		fmt.Printf("\nThroughput plot: %s\n", plot)
	}
	ours := paths[2].name
	if v, ok := table.values[fmt.Sprintf(idlePerConnRow, idle)][ours]; ok {
		fmt.Printf("\ngoal: at most %d KiB of proxy-server + agent RSS per idle connection at 10,000 open: %.1f KiB at %d — %s\n",
			idleGoalKiB, v, idle, metOrNot(v <= idleGoalKiB && idle >= 10000))
	}
	if v, ok := table.values[isolationRatioRow][ours]; ok {
		pending := table.values[isolationPendingRow][ours]
		fmt.Printf("\ngoal: with %d MiB pending behind a stopped reader (at least %d), another connection of the agent at ≥ %.1f× its speed alone: %.2f× — %s\n",
			int(pending), isolationPendingMin>>20, isolationGoal, v, metOrNot(v >= isolationGoal && pending >= isolationPendingMin>>20))
	}
	return nil
}

// tunnel is a running proxy-server and proxy-agent.
type tunnel struct {
	pki *framework.TunnelPKI
	// address is the proxy-server's client (frontend) address; tlsConfig
	// is a proxy-client's mTLS configuration for it.
	address       string
	tlsConfig     *tls.Config
	server, agent *framework.Process
}

// tunnelSpec describes a tunnel to start.
type tunnelSpec struct {
	// tag names the tunnel's directory and its processes' logs.
	tag string
	// serverBin and agentBin are the proxy-server and proxy-agent binaries.
	serverBin, agentBin string
	// cluster is the cluster the agent's certificate names.
	cluster string
	// identifiers is the agent's --agent-identifiers.
	identifiers string
	// names, when set, is the only name resolution of the agent
	// (framework.StartProcessWithPrivateNames).
	names map[string]string
}

// startTunnel starts a proxy-server and a proxy-agent as spec says, with a
// new PKI and their logs in dir/<tag>, and returns once the agent is
// connected.
func startTunnel(ctx context.Context, dir string, spec tunnelSpec) (*tunnel, error) {
	tag := spec.tag
	pkiDir := filepath.Join(dir, tag)
	if err := os.MkdirAll(pkiDir, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create %s: %w", pkiDir, err)
	}
	pki, err := framework.NewTunnelPKI(pkiDir, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	tlsConfig, err := proxyclient.NewTLSConfig(pki.CA.CertPEM, pki.ProxyClientCert, pki.ProxyClientKey, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	ports, err := framework.FreeProxyServerPorts()
	if err != nil {
		return nil, err
	}
	server, err := framework.StartProcess(tag+"-server", spec.serverBin, append(framework.ProxyServerArgs(pki, ports, "s0", 1), "--v=0"), nil, pkiDir)
	if err != nil {
		return nil, err
	}
	t := &tunnel{pki: pki, address: "127.0.0.1:" + strconv.Itoa(ports.Server), tlsConfig: tlsConfig, server: server}
	cert, key, err := pki.AgentCert(spec.cluster)
	if err != nil {
		t.stop()
		return nil, err
	}
	health, err := framework.FreeTunnelPort()
	if err != nil {
		t.stop()
		return nil, err
	}
	admin, err := framework.FreeTunnelPort()
	if err != nil {
		t.stop()
		return nil, err
	}
	agentArgs := append(framework.ProxyAgentArgs(pki, "a0", ports.Agent, cert, key, spec.identifiers, health, admin), "--v=0")
	if spec.names == nil {
		t.agent, err = framework.StartProcess(tag+"-agent", spec.agentBin, agentArgs, nil, pkiDir)
	} else {
		t.agent, err = framework.StartProcessWithPrivateNames(tag+"-agent", spec.agentBin, agentArgs, nil, pkiDir, spec.names)
	}
	if err != nil {
		t.stop()
		return nil, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := framework.WaitHTTPOK(waitCtx, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports.Health), false, server); err != nil {
		t.stop()
		return nil, fmt.Errorf("%s: the agent did not connect: %w\nagent log:\n%s", tag, err, t.agent.LogTail(20))
	}
	return t, nil
}

// stop stops the agent and the proxy-server.
func (t *tunnel) stop() {
	if t.agent != nil {
		_ = framework.StopTunnelProcess(t.agent)
	}
	_ = framework.StopTunnelProcess(t.server)
}

// benchCluster is the cluster of the throughput tunnels' agents: they
// register host=bench (our proxy-server admits an agent only for its own
// cluster's names), resolve it to the backend's loopback address, and the
// paths dial bench:<backend port>.
const benchCluster = "bench"

// startTunnelPath starts a tunnel whose agent registers host=bench, which
// it resolves to the backend's address, and returns the path through it to
// target's port.
func startTunnelPath(ctx context.Context, dir, name, tag, serverBin, agentBin, target string) (*path, func(), error) {
	backendHost, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, nil, err
	}
	target = net.JoinHostPort(benchCluster, port)
	t, err := startTunnel(ctx, dir, tunnelSpec{tag: tag, serverBin: serverBin, agentBin: agentBin, cluster: benchCluster,
		identifiers: "host=" + benchCluster, names: map[string]string{benchCluster: backendHost}})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	pooled, err := proxyclient.NewDialer(t.address, t.tlsConfig)
	if err != nil {
		t.stop()
		return nil, nil, err
	}
	p := &path{
		name:   name,
		server: t.server, agent: t.agent,
		dial: func(ctx context.Context) (net.Conn, error) { return pooled.DialContext(ctx, "tcp", target) },
		singleUse: func(ctx context.Context) (net.Conn, error) {
			tunnel, err := konnectivity.CreateSingleUseGrpcTunnel(ctx, t.address,
				grpc.WithTransportCredentials(credentials.NewTLS(t.tlsConfig.Clone())))
			if err != nil {
				return nil, err
			}
			return tunnel.DialContext(ctx, "tcp", target)
		},
	}
	return p, func() { _ = pooled.Close(); t.stop() }, nil
}

// The backend speaks a one-byte protocol: 'D'+size: send size bytes;
// 'U': read to EOF then answer the count; 'E': echo.
func startBackend() (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the backend: %w", err)
	}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serve(conn)
		}
	}()
	return l, nil
}

var zeros = make([]byte, 256<<10)

func serve(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	op := make([]byte, 1)
	if _, err := io.ReadFull(conn, op); err != nil {
		return
	}
	switch op[0] {
	case 'D':
		var n int64
		if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
			return
		}
		for n > 0 {
			w, err := conn.Write(zeros[:min(n, int64(len(zeros)))])
			if err != nil {
				return
			}
			n -= int64(w)
		}
	case 'U':
		var n int64
		if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, conn, n); err != nil {
			return
		}
		_, _ = conn.Write([]byte{'k'})
	case 'E':
		// Not io.Copy: between two TCP connections it splices through a
		// pipe, two more descriptors per idle connection, and the bench
		// ran out of them at 10,000 idle connections.
		_, _ = io.CopyBuffer(struct{ io.Writer }{conn}, struct{ io.Reader }{conn}, make([]byte, 4<<10))
	case 'S':
		serveStalled(conn)
	}
}

func throughput(ctx context.Context, p *path, op byte, total int64, streams int) (float64, error) {
	per := total / int64(streams)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- transfer(ctx, p, op, per)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return gbps(per*int64(streams), time.Since(start)), nil
}

func transfer(ctx context.Context, p *path, op byte, n int64) error {
	conn, err := p.dial(ctx)
	if err != nil {
		return fmt.Errorf("failed to dial: %w", err)
	}
	defer func() { _ = conn.Close() }()
	header := append([]byte{op}, binary.BigEndian.AppendUint64(nil, uint64(n))...)
	if _, err := conn.Write(header); err != nil {
		return fmt.Errorf("failed to send the request: %w", err)
	}
	if op == 'D' {
		got, err := io.CopyBuffer(io.Discard, io.LimitReader(conn, n), make([]byte, 256<<10))
		if err != nil || got != n {
			return fmt.Errorf("download: got %d of %d bytes: %w", got, n, err)
		}
		return nil
	}
	for sent := int64(0); sent < n; {
		w, err := conn.Write(zeros[:min(n-sent, int64(len(zeros)))])
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		sent += int64(w)
	}
	ack := make([]byte, 1)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return fmt.Errorf("upload: no acknowledgement: %w", err)
	}
	return nil
}

// batch is how many round trips or dials one path makes before the next
// path takes its turn, so load from elsewhere on the machine falls on every
// path alike.
const batch = 100

// throughputRuns is how often each throughput figure is measured per path,
// the paths taking turns (the second time in reverse order); the table
// shows the best.
const throughputRuns = 2

// measureAll measures every path: memory first, on fresh processes (after
// the throughput runs their heaps hold freed memory the idle connections
// would reuse), then throughput, round trips and dials with the paths
// taking turns.
func measureAll(ctx context.Context, paths []*path, size int64, rounds, dials, idle int, r *results) error {
	for _, p := range paths {
		// One cell per path in the table's column order.
		r.column(p.name)
	}
	for _, p := range paths {
		if p.server == nil {
			continue
		}
		m, err := idleMemory(ctx, p, idle)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		r.add(fmt.Sprintf("proxy-server RSS with %d idle connections, MiB", idle), p.name, m.server)
		r.add(fmt.Sprintf("proxy-agent RSS with %d idle connections, MiB", idle), p.name, m.agent)
		r.add(fmt.Sprintf(idlePerConnRow, idle), p.name, m.perConnKiB)
	}
	for _, streams := range []int{1, 8} {
		for _, dir := range []byte{'D', 'U'} {
			what := map[byte]string{'D': "download", 'U': "upload"}[dir]
			row := fmt.Sprintf("%s, %d stream(s), Gbit/s", what, streams)
			for run := range throughputRuns {
				order := slices.Clone(paths)
				if run%2 == 1 {
					slices.Reverse(order)
				}
				for _, p := range order {
					v, err := throughput(ctx, p, dir, size, streams)
					if err != nil {
						return fmt.Errorf("%s: %w", p.name, err)
					}
					r.max(row, p.name, v)
				}
			}
		}
	}
	for _, p := range paths {
		if p.server == nil {
			continue
		}
		iso, err := measureIsolation(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: isolation: %w", p.name, err)
		}
		r.add(isolationPendingRow, p.name, float64(iso.pending>>20))
		r.add(fmt.Sprintf("isolation: another connection's %d MiB beside it, Gbit/s", isolationSize>>20), p.name, iso.beside)
		r.add(isolationRatioRow, p.name, iso.beside/iso.solo)
		if iso.moved < isolationSize {
			r.add(fmt.Sprintf("isolation: MiB it moved in %s (stalled)", isolationLimit), p.name, float64(iso.moved>>20))
		}
	}
	if err := roundTrips(ctx, paths, rounds, r); err != nil {
		return err
	}
	for _, label := range []string{"pooled", "single-use tunnel"} {
		dialers := make([]func(ctx context.Context) (net.Conn, error), len(paths))
		for i, p := range paths {
			dialers[i] = p.dial
			if label != "pooled" && p.singleUse != nil {
				dialers[i] = p.singleUse
			}
		}
		lat, err := takeTurns(ctx, paths, dials, func(ctx context.Context, i int) (float64, error) {
			return dialRoundTrip(ctx, dialers[i])
		})
		if err != nil {
			return err
		}
		for i, p := range paths {
			r.add("dial + first round trip p50, ms ("+label+")", p.name, percentile(lat[i], 50)/1000)
			r.add("dial + first round trip p99, ms ("+label+")", p.name, percentile(lat[i], 99)/1000)
		}
	}
	return nil
}

// takeTurns runs n samples of each path, batch by batch with the paths
// taking turns, and returns each path's samples (µs).
func takeTurns(ctx context.Context, paths []*path, n int, sample func(ctx context.Context, i int) (float64, error)) ([][]float64, error) {
	lat := make([][]float64, len(paths))
	for done := 0; done < n; done += batch {
		for i, p := range paths {
			for range min(batch, n-done) {
				v, err := sample(ctx, i)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", p.name, err)
				}
				lat[i] = append(lat[i], v)
			}
		}
	}
	return lat, nil
}

// roundTrips measures 64 B round trips on one held connection per path,
// after a warm-up of 50.
func roundTrips(ctx context.Context, paths []*path, n int, r *results) error {
	conns := make([]net.Conn, len(paths))
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	msg, buf := make([]byte, 64), make([]byte, 64)
	roundTrip := func(ctx context.Context, i int) (float64, error) {
		start := time.Now()
		if _, err := conns[i].Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(conns[i], buf); err != nil {
			return 0, err
		}
		return float64(time.Since(start).Microseconds()), nil
	}
	for i, p := range paths {
		c, err := p.dial(ctx)
		if err != nil {
			return fmt.Errorf("%s: failed to dial: %w", p.name, err)
		}
		conns[i] = c
		if _, err := c.Write([]byte{'E'}); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		for range 50 { // warm-up
			if _, err := roundTrip(ctx, i); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
	}
	lat, err := takeTurns(ctx, paths, n, roundTrip)
	if err != nil {
		return err
	}
	for i, p := range paths {
		r.add("64 B round trip p50, µs", p.name, percentile(lat[i], 50))
		r.add("64 B round trip p99, µs", p.name, percentile(lat[i], 99))
	}
	return nil
}

// dialRoundTrip dials, makes a 1-byte round trip and closes; it returns
// the time until the byte came back, µs.
func dialRoundTrip(ctx context.Context, dial func(ctx context.Context) (net.Conn, error)) (float64, error) {
	start := time.Now()
	conn, err := dial(ctx)
	if err != nil {
		return 0, fmt.Errorf("failed to dial: %w", err)
	}
	defer func() { _ = conn.Close() }()
	buf := []byte{'E', 'x'}
	if _, err := conn.Write(buf); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(conn, buf[:1]); err != nil {
		return 0, err
	}
	return float64(time.Since(start).Microseconds()), nil
}

// idlePerConnRow is the row of the RSS growth per idle connection (with
// the number opened); idleGoalKiB is issue 15's goal for it, at 10,000
// connections.
const (
	idlePerConnRow = "proxy-server + agent RSS growth per idle connection (%d opened), KiB"
	idleGoalKiB    = 32
)

// idleUse is what idle connections cost.
type idleUse struct {
	// server and agent are the processes' RSS with the connections open,
	// MiB.
	server, agent float64
	// perConnKiB is the growth of both processes' RSS while the
	// connections were opened, per connection.
	perConnKiB float64
}

func idleMemory(ctx context.Context, p *path, n int) (idleUse, error) {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	before, err := rssSum(p)
	if err != nil {
		return idleUse{}, err
	}
	for range n {
		c, err := p.dial(ctx)
		if err != nil {
			return idleUse{}, fmt.Errorf("failed to open idle connection %d: %w", len(conns)+1, err)
		}
		if _, err := c.Write([]byte{'E'}); err != nil {
			return idleUse{}, err
		}
		conns = append(conns, c)
	}
	time.Sleep(2 * time.Second)
	var u idleUse
	if u.server, err = rssMiB(p.server.PID); err != nil {
		return idleUse{}, err
	}
	if u.agent, err = rssMiB(p.agent.PID); err != nil {
		return idleUse{}, err
	}
	u.perConnKiB = (u.server + u.agent - before) * 1024 / float64(n)
	return u, nil
}

// rssSum is the RSS of p's server and agent, MiB.
func rssSum(p *path) (float64, error) {
	server, err := rssMiB(p.server.PID)
	if err != nil {
		return 0, err
	}
	agent, err := rssMiB(p.agent.PID)
	return server + agent, err
}

func rssMiB(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the memory of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

func percentile(v []float64, p int) float64 {
	slices.Sort(v)
	return v[min(len(v)-1, len(v)*p/100)]
}

func numCPU() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(data), "processor\t:")
}

// results is the table: one row per measure, one column per path.
type results struct {
	rows   []string
	values map[string]map[string]float64
	paths  []string
}

// column adds path's column (columns are in the order first named).
func (r *results) column(path string) {
	if !slices.Contains(r.paths, path) {
		r.paths = append(r.paths, path)
	}
}

// max sets row's cell of path to v if it has none or a smaller one.
func (r *results) max(row, path string, v float64) {
	if old, ok := r.values[row][path]; ok && old >= v {
		return
	}
	r.add(row, path, v)
}

func (r *results) add(row, path string, v float64) {
	if r.values == nil {
		r.values = map[string]map[string]float64{}
	}
	if _, ok := r.values[row]; !ok {
		r.rows = append(r.rows, row)
		r.values[row] = map[string]float64{}
	}
	r.column(path)
	r.values[row][path] = v
}

func (r *results) print(w io.Writer, base, limit string) {
	_, _ = fmt.Fprintf(w, "| measure | %s |\n|---|%s\n", strings.Join(r.paths, " | "), strings.Repeat("---|", len(r.paths)))
	for _, row := range r.rows {
		cells := make([]string, 0, len(r.paths))
		for _, p := range r.paths {
			v, ok := r.values[row][p]
			if !ok {
				cells = append(cells, "–")
				continue
			}
			cell := strconv.FormatFloat(v, 'g', 3, 64)
			if b, ok := r.values[row][base]; ok && p != base && b != 0 {
				cell += fmt.Sprintf(" (%.2f× direct", v/b)
				if l, ok := r.values[row][limit]; ok && p != limit && l != 0 {
					cell += fmt.Sprintf(", %.2f× limit", v/l)
				}
				cell += ")"
			}
			cells = append(cells, cell)
		}
		_, _ = fmt.Fprintf(w, "| %s | %s |\n", row, strings.Join(cells, " | "))
	}
}
