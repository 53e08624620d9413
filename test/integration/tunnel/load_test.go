package tunnel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/pkg/client"
)

const (
	// concurrentRequests is the number of HTTP requests in flight at once,
	// spread evenly over the clusters.
	concurrentRequests = 100
	// transfers is the number of concurrent transfers in each direction.
	transfers = 10
	// transferSize is the size of one transfer.
	transferSize = 10 << 20
	// loadBound bounds each load spec's traffic: it fails a stalled
	// tunnel, and is not a throughput target.
	loadBound = 60 * time.Second
)

var _ = Describe("The tunnel under load", Label("tunnel", "load"), Ordered, func() {
	// clusters are two managed clusters, each with an agent whose cluster
	// host names resolve to a loopback address of its own, where the
	// cluster's HTTP backend listens, on the same port for both.
	clusters := []struct {
		name, ip string
	}{{cluster, "127.0.0.2"}, {"cluster2", "127.0.0.3"}}
	var (
		server   *proxyServer
		backends []*clusterBackend
		httpPort int
		bulk     *transferBackend
	)

	BeforeAll(func(ctx SpecContext) {
		ips := make([]string, len(clusters))
		for i, c := range clusters {
			ips[i] = c.ip
		}
		listeners := listenSamePort(ips)
		httpPort = listeners[0].Addr().(*net.TCPAddr).Port
		for i, c := range clusters {
			backends = append(backends, startClusterBackend(c.name, listeners[i]))
		}
		bulk = startTransferBackend(clusters[0].ip)

		server = startProxyServer("load-proxy-server", 1)
		dialer := newDialer(server.ports.Server)
		for _, c := range clusters {
			agent := startProxyAgent("load-proxy-agent-"+c.name, c.name, server.ports.Agent, c.ip)
			waitHTTPOK(agent.healthURL("/readyz"), readyTimeout, agent.process, server.process)
			// The agent is ready once connected; the proxy-server routes
			// to it once it registered its host names, right after.
			Eventually(func(ctx context.Context) error {
				conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(c.name, strconv.Itoa(httpPort)))
				if err != nil {
					return err
				}
				return conn.Close()
			}).WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		}
	})

	It("answers 100 concurrent HTTP requests over two agents, each from the right cluster", func(ctx SpecContext) {
		dialer := newDialer(server.ports.Server)
		// One tunnelled connection per request.
		transport := &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}
		DeferCleanup(transport.CloseIdleConnections)
		httpClient := &http.Client{Transport: transport, Timeout: loadBound}
		for _, b := range backends {
			b.served.Store(0)
		}
		nonce := rand.Uint64()

		start := make(chan struct{})
		errs := make([]error, concurrentRequests)
		var wg sync.WaitGroup
		for i := range concurrentRequests {
			b := backends[i%len(backends)]
			id := fmt.Sprintf("%x-%d", nonce, i)
			wg.Go(func() {
				<-start
				errs[i] = getFromCluster(ctx, httpClient, b.cluster, httpPort, id)
			})
		}
		began := time.Now()
		close(start)
		wg.Wait()
		GinkgoWriter.Printf("%d requests answered in %v\n", concurrentRequests, time.Since(began))

		Expect(errors.Join(errs...)).NotTo(HaveOccurred())
		for _, b := range backends {
			Expect(b.served.Load()).To(BeEquivalentTo(concurrentRequests/len(backends)), "requests %s served", b.cluster)
		}
		stats := dialer.Stats()
		Expect(stats.Tunnels).To(Equal(1))
		Expect(stats.Dials).To(BeNumerically(">=", concurrentRequests))
		transport.CloseIdleConnections()
		Eventually(func() int { return dialer.Stats().OpenConnections }).WithTimeout(5 * time.Second).Should(BeZero())
	})

	It("moves 10 concurrent 10 MiB streams each way through one agent, byte for byte", func(specCtx SpecContext) {
		dialer := newDialer(server.ports.Server)
		address := net.JoinHostPort(clusters[0].name, strconv.Itoa(bulk.port))
		ctx, cancel := context.WithTimeout(specCtx, loadBound)
		defer cancel()

		start := make(chan struct{})
		errs := make([]error, 2*transfers)
		var wg sync.WaitGroup
		for i := range transfers {
			wg.Go(func() {
				<-start
				errs[2*i] = download(ctx, dialer, address, uint64(i))
			})
			wg.Go(func() {
				<-start
				errs[2*i+1] = upload(ctx, dialer, address, uint64(transfers+i))
			})
		}
		began := time.Now()
		close(start)
		wg.Wait()
		GinkgoWriter.Printf("%d × %d MiB moved in %v\n", 2*transfers, transferSize>>20, time.Since(began))

		Expect(errors.Join(errs...)).NotTo(HaveOccurred())
		if failure := bulk.lastFailure.Load(); failure != nil {
			Fail(fmt.Sprintf("the transfer backend failed: %v", *failure))
		}
		Expect(bulk.uploads.Load()).To(BeEquivalentTo(transfers))
		Expect(bulk.downloads.Load()).To(BeEquivalentTo(transfers))
		Expect(dialer.Stats()).To(Equal(client.DialerStats{Tunnels: 1, Dials: 2 * transfers}))
	})
})

// listenSamePort listens on the same free port at each of ips.
func listenSamePort(ips []string) []net.Listener {
	GinkgoHelper()
	var listeners []net.Listener
	Eventually(func() error {
		for _, l := range listeners {
			_ = l.Close()
		}
		listeners = nil
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			return err
		}
		listeners = append(listeners, first)
		port := strconv.Itoa(first.Addr().(*net.TCPAddr).Port)
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				return err
			}
			listeners = append(listeners, l)
		}
		return nil
	}).WithTimeout(5 * time.Second).Should(Succeed())
	return listeners
}

// clusterBackend is an HTTP server of one managed cluster that answers
// "cluster=<cluster> id=<id>" to GET /?id=<id>.
type clusterBackend struct {
	cluster string
	served  atomic.Int64
}

// startClusterBackend serves on l until the surrounding node's cleanup
// runs.
func startClusterBackend(clusterName string, l net.Listener) *clusterBackend {
	b := &clusterBackend{cluster: clusterName}
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.served.Add(1)
		_, _ = fmt.Fprintf(w, "cluster=%s id=%s", b.cluster, r.URL.Query().Get("id"))
	}))
	_ = server.Listener.Close()
	server.Listener = l
	server.Start()
	DeferCleanup(server.Close)
	return b
}

// getFromCluster asks the backend of clusterName, through the tunnel, to
// echo id and checks the answer.
func getFromCluster(ctx context.Context, httpClient *http.Client, clusterName string, port int, id string) error {
	url := "http://" + net.JoinHostPort(clusterName, strconv.Itoa(port)) + "/?id=" + id
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("request %s failed: %w", id, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("request %s: failed to read the body: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("request %s: %s: %s", id, resp.Status, body)
	}
	if want := fmt.Sprintf("cluster=%s id=%s", clusterName, id); string(body) != want {
		return fmt.Errorf("request %s: got %q, want %q", id, body, want)
	}
	return nil
}

// Transfer protocol: the client sends a header, opDownload or opUpload, an
// 8-byte seed and an 8-byte size (big endian). For a download the backend
// then sends size bytes of the ChaCha8 stream of seed followed by their
// SHA-256 and closes; for an upload the client sends size bytes and the
// backend answers their SHA-256.
const (
	opDownload  byte = 'D'
	opUpload    byte = 'U'
	headerSize       = 1 + 8 + 8
	maxTransfer      = 1 << 30
)

// transferBackend is the TCP server of the transfer protocol.
type transferBackend struct {
	listener           net.Listener
	port               int
	uploads, downloads atomic.Int64
	// lastFailure is the error of the last transfer that failed.
	lastFailure atomic.Pointer[error]

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startTransferBackend listens on a free port of ip until the surrounding
// node's cleanup runs.
func startTransferBackend(ip string) *transferBackend {
	GinkgoHelper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	Expect(err).NotTo(HaveOccurred())
	b := &transferBackend{listener: l, port: l.Addr().(*net.TCPAddr).Port, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	DeferCleanup(b.Close)
	return b
}

func (b *transferBackend) accept() {
	defer b.wg.Done()
	for {
		conn, err := b.listener.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[conn] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := b.serve(conn); err != nil {
				b.lastFailure.Store(&err)
			}
			_ = conn.Close()
			b.mu.Lock()
			delete(b.conns, conn)
			b.mu.Unlock()
		}()
	}
}

// serve handles one transfer.
func (b *transferBackend) serve(conn net.Conn) error {
	header := make([]byte, headerSize)
	if _, err := io.ReadFull(conn, header); err != nil {
		return fmt.Errorf("failed to read the header: %w", err)
	}
	seed := binary.BigEndian.Uint64(header[1:9])
	size := int64(binary.BigEndian.Uint64(header[9:17]))
	if size < 0 || size > maxTransfer {
		return fmt.Errorf("invalid size %d", size)
	}
	hash := sha256.New()
	switch header[0] {
	case opDownload:
		if _, err := io.CopyN(io.MultiWriter(conn, hash), newStream(seed), size); err != nil {
			return fmt.Errorf("failed to send: %w", err)
		}
		if _, err := conn.Write(hash.Sum(nil)); err != nil {
			return fmt.Errorf("failed to send the checksum: %w", err)
		}
		b.downloads.Add(1)
	case opUpload:
		if _, err := io.CopyN(hash, conn, size); err != nil {
			return fmt.Errorf("failed to receive: %w", err)
		}
		if _, err := conn.Write(hash.Sum(nil)); err != nil {
			return fmt.Errorf("failed to send the checksum: %w", err)
		}
		b.uploads.Add(1)
	default:
		return fmt.Errorf("unknown operation %q", header[0])
	}
	return nil
}

// Close stops accepting, closes open connections and waits for their
// goroutines.
func (b *transferBackend) Close() {
	_ = b.listener.Close()
	b.mu.Lock()
	for conn := range b.conns {
		_ = conn.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// newStream returns the deterministic byte stream of seed.
func newStream(seed uint64) io.Reader {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}

// transferHeader encodes a transfer request.
func transferHeader(op byte, seed uint64, size int64) []byte {
	header := make([]byte, headerSize)
	header[0] = op
	binary.BigEndian.PutUint64(header[1:9], seed)
	binary.BigEndian.PutUint64(header[9:17], uint64(size))
	return header
}

// download receives transferSize bytes of seed's stream from address
// through dialer and checks them against the backend's checksum, and that
// nothing follows.
func download(ctx context.Context, dialer *client.Dialer, address string, seed uint64) error {
	conn, err := dialer.DialContext(ctx, "tcp", address)
	if err != nil {
		return fmt.Errorf("download %d: %w", seed, err)
	}
	defer func() { _ = conn.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := conn.Write(transferHeader(opDownload, seed, transferSize)); err != nil {
		return fmt.Errorf("download %d: failed to send the header: %w", seed, err)
	}
	received, sent := sha256.New(), make([]byte, sha256.Size)
	if n, err := io.CopyN(received, conn, transferSize); err != nil {
		return fmt.Errorf("download %d: failed after %d bytes: %w", seed, n, err)
	}
	if _, err := io.ReadFull(conn, sent); err != nil {
		return fmt.Errorf("download %d: failed to read the checksum: %w", seed, err)
	}
	if !bytes.Equal(received.Sum(nil), sent) {
		return fmt.Errorf("download %d: the bytes received differ from the bytes sent", seed)
	}
	n, err := conn.Read(make([]byte, 1))
	if n > 0 {
		return fmt.Errorf("download %d: bytes follow the checksum", seed)
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("download %d: want the end of the stream after the checksum: %w", seed, err)
	}
	return nil
}

// upload sends transferSize bytes of seed's stream to address through
// dialer and checks the backend's checksum of what it received.
func upload(ctx context.Context, dialer *client.Dialer, address string, seed uint64) error {
	conn, err := dialer.DialContext(ctx, "tcp", address)
	if err != nil {
		return fmt.Errorf("upload %d: %w", seed, err)
	}
	defer func() { _ = conn.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := conn.Write(transferHeader(opUpload, seed, transferSize)); err != nil {
		return fmt.Errorf("upload %d: failed to send the header: %w", seed, err)
	}
	received := make([]byte, sha256.Size)
	// The whole 10 MiB in one Write: konnectivity sends each Write as one
	// gRPC message, which the proxy-server refuses above 4 MiB, so the
	// Dialer's connections must split large writes (they once lost them).
	payload := make([]byte, transferSize)
	if _, err := io.ReadFull(newStream(seed), payload); err != nil {
		return fmt.Errorf("upload %d: failed to generate the payload: %w", seed, err)
	}
	sum := sha256.Sum256(payload)
	if n, err := conn.Write(payload); err != nil || n != len(payload) {
		return fmt.Errorf("upload %d: wrote %d of %d bytes: %w", seed, n, len(payload), err)
	}
	if _, err := io.ReadFull(conn, received); err != nil {
		return fmt.Errorf("upload %d: failed to read the checksum: %w", seed, err)
	}
	if !bytes.Equal(sum[:], received) {
		return fmt.Errorf("upload %d: the bytes the backend received differ from the bytes sent", seed)
	}
	return nil
}
