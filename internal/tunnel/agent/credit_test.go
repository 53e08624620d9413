package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/credit"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// backend accepts connections on loopback and hands them to the test.
func backend(t *testing.T) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		for {
			select {
			case c := <-conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return l.Addr().String(), conns
}

// startCreditTunnel starts our server (no identity binding: the agent
// registers ipv4=127.0.0.1), a loopback backend and our agent, and waits
// until the server holds the agent.
func startCreditTunnel(t *testing.T) (*framework.TunnelPKI, *hub, *agentRun, string, <-chan net.Conn) {
	t.Helper()
	pki := newPKI(t)
	h := startOurServer(t, pki, "s", 1, nil)
	addr, accepted := backend(t)
	run := startAgent(t, pki, h.AgentAddr, "cluster1", "ipv4=127.0.0.1")
	NewWithT(t).Eventually(h.ours.Agents).WithTimeout(10 * time.Second).Should(Equal(1))
	return pki, h, run, addr, accepted
}

// checkNoLeaks fails t when goroutines started during t outlive it and its
// cleanups (call it first: cleanups run last-in first-out).
func checkNoLeaks(t *testing.T) {
	t.Helper()
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := goleak.Find(running)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func TestCreditedConnectionCarriesBothWaysAndItsCloses(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	_, h, _, addr, accepted := startCreditTunnel(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// The backend closes first: the client reads everything, then EOF.
	conn, err := h.Dial(ctx, addr)
	g.Expect(err).NotTo(HaveOccurred())
	var b net.Conn
	g.Eventually(accepted).Should(Receive(&b))
	g.Expect(h.ours.Stats()).To(Equal(server.Stats{Agents: 1, Connections: 1, WithCredit: 1}),
		"the connection is under per-connection credit")
	payload := make([]byte, 3<<20+1)
	_, _ = rand.Read(payload)
	go func(b net.Conn) {
		_, _ = b.Write(payload)
		_ = b.Close()
	}(b)
	got, err := io.ReadAll(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(got, payload)).To(BeTrue(), "read %d bytes of %d, or different ones", len(got), len(payload))
	// The single-use tunnel may have ended with the CLOSE_RSP already;
	// then Close says "tunnel closed" (pkg/client takes that as closed).
	_ = conn.Close()
	g.Eventually(h.ours.Stats).WithTimeout(5 * time.Second).Should(Equal(server.Stats{Agents: 1}))

	// The client closes first: the backend reads everything it wrote
	// before the close, then EOF.
	conn, err = h.Dial(ctx, addr)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(accepted).Should(Receive(&b))
	_, err = conn.Write(payload)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.Close()).To(Succeed())
	g.Expect(b.SetReadDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
	got, err = io.ReadAll(b)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(got, payload)).To(BeTrue(), "the backend read %d bytes of %d, or different ones", len(got), len(payload))
	_ = b.Close()
	g.Eventually(h.ours.Stats).WithTimeout(5 * time.Second).Should(Equal(server.Stats{Agents: 1}))
}

func TestCreditedConnectionEndsWhenItsFrontendGoes(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki, h, run, addr, accepted := startCreditTunnel(t)

	// A frontend that goes away without closing its connection: its
	// tunnel's context ends, and with it its gRPC stream.
	cert, err := tls.X509KeyPair(pki.ProxyClientCert, pki.ProxyClientKey)
	g.Expect(err).NotTo(HaveOccurred())
	tunnelCtx, endTunnel := context.WithCancel(t.Context())
	defer endTunnel()
	tunnel, err := konnectivity.CreateSingleUseGrpcTunnelWithContext(t.Context(), tunnelCtx, h.FrontendAddr,
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert))))
	g.Expect(err).NotTo(HaveOccurred())
	conn, err := tunnel.DialContext(t.Context(), "tcp", addr)
	g.Expect(err).NotTo(HaveOccurred())
	var b net.Conn
	g.Eventually(accepted).Should(Receive(&b))
	defer func() { _ = b.Close() }()
	g.Expect(h.ours.Stats().WithCredit).To(Equal(1))
	g.Eventually(run.open).WithContext(t.Context()).Should(Equal(1.0), "backend connections the agent holds")

	endTunnel()
	g.Expect(b.SetReadDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
	_, err = b.Read(make([]byte, 1))
	g.Expect(errors.Is(err, io.EOF)).To(BeTrue(), "the backend connection was not closed: %v", err)
	g.Eventually(h.ours.Stats).WithTimeout(5 * time.Second).Should(Equal(server.Stats{Agents: 1}))
	g.Eventually(run.open).WithContext(t.Context()).WithTimeout(5 * time.Second).Should(BeZero())
	_ = conn.Close()
}

// open scrapes the agent's konnectivity_network_proxy_agent_open_endpoint_connections.
func (r *agentRun) open(ctx context.Context) (float64, error) {
	return framework.ScrapeMetric(ctx, "http://"+r.health+"/metrics", "konnectivity_network_proxy_agent_open_endpoint_connections")
}

// TestTransfersAreByteExactAcrossChunkBoundaries moves sizes around every
// boundary of the data path (the agent's 4 KiB idle and 128 KiB streaming
// reads, the credit's largest packet and its window; 1 MiB, the writes of
// pkg/client and the boundary) both ways through
// our server and agent, and checks every byte.
func TestTransfersAreByteExactAcrossChunkBoundaries(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	_, h, _, addr, accepted := startCreditTunnel(t)

	var sizes []int
	for _, b := range []int{4 << 10, 128 << 10, 256 << 10, 1 << 20, credit.MaxData, credit.Window} {
		sizes = append(sizes, b-1, b, b+1)
	}
	sizes = append([]int{1}, append(sizes, 64<<20)...)
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	for _, n := range sizes {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		conn, err := h.Dial(ctx, addr)
		g.Expect(err).NotTo(HaveOccurred())
		var b net.Conn
		g.Eventually(accepted).Should(Receive(&b))
		up, down := patternOf(n, 1), patternOf(n, 2)
		backendDone := make(chan error, 1)
		go func(b net.Conn) {
			defer func() { _ = b.Close() }()
			got := make([]byte, n)
			if _, err := io.ReadFull(b, got); err != nil {
				backendDone <- fmt.Errorf("the backend read: %w", err)
				return
			}
			if !bytes.Equal(got, up) {
				backendDone <- fmt.Errorf("the backend got other bytes than the %d sent", n)
				return
			}
			_, err := b.Write(down)
			backendDone <- err
		}(b)
		// In 1 MiB writes, as pkg/client cuts them: a stock konnectivity
		// client sends each write as one gRPC message, and servers take
		// 4 MiB at most.
		for off := 0; off < n; off += 1 << 20 {
			_, err = conn.Write(up[off:min(n, off+1<<20)])
			g.Expect(err).NotTo(HaveOccurred())
		}
		got := make([]byte, n)
		_, err = io.ReadFull(conn, got)
		g.Expect(err).NotTo(HaveOccurred(), "size %d", n)
		g.Expect(bytes.Equal(got, down)).To(BeTrue(), "size %d: the client got other bytes than the backend sent", n)
		g.Expect(<-backendDone).To(Succeed(), "size %d", n)
		_ = conn.Close()
		cancel()
	}
	g.Eventually(h.ours.Stats).WithTimeout(5 * time.Second).Should(Equal(server.Stats{Agents: 1}))
}

// patternOf is n bytes that differ for each seed and at each offset.
func patternOf(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*131) ^ byte(i>>9) ^ seed
	}
	return p
}
