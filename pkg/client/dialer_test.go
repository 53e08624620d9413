package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client/metrics"
)

// checkGoroutines makes the test fail when goroutines it started outlive
// it, once its other cleanups (registered later, run earlier) are done.
func checkGoroutines(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// countingDialer dials TCP and counts the connections it opened.
type countingDialer struct{ n atomic.Int64 }

func (c *countingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	c.n.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// echoOnce writes msg on conn and reads it back.
func echoOnce(conn net.Conn, msg string) (string, error) {
	if _, err := io.WriteString(conn, msg); err != nil {
		return "", fmt.Errorf("failed to write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return "", fmt.Errorf("failed to read: %w", err)
	}
	return string(buf), nil
}

func TestDialerSharesOneConnection(t *testing.T) {
	checkGoroutines(t)
	g := NewWithT(t)
	pki := newTestPKI(t)
	server := startFakeProxyServer(t, pki, "cluster1")
	counter := &countingDialer{}
	dialer, err := NewDialer(server.address, pki.clientTLS(t), WithContextDialer(counter.dial))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = dialer.Close() })

	for i := range 50 {
		conn, err := dialer.DialContext(t.Context(), "tcp", "cluster1:443")
		g.Expect(err).NotTo(HaveOccurred())
		msg := fmt.Sprintf("hello %d", i)
		g.Expect(echoOnce(conn, msg)).To(Equal(msg))
		g.Expect(conn.RemoteAddr().String()).To(Equal("cluster1:443"))
		g.Expect(conn.LocalAddr()).NotTo(BeNil())
		g.Expect(conn.Close()).To(Succeed())
	}

	g.Expect(counter.n.Load()).To(BeEquivalentTo(1), "TCP connections to the proxy-server")
	g.Expect(dialer.Stats()).To(Equal(DialerStats{Tunnels: 1, Dials: 50, OpenConnections: 0}))
	g.Expect(dialer.Close()).To(Succeed())
}

func TestDialerNoAgent(t *testing.T) {
	checkGoroutines(t)
	g := NewWithT(t)
	_, dialer := newTestDialer(t, g)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := dialer.DialContext(ctx, "tcp", "cluster2:443")
	g.Expect(ctx.Err()).NotTo(HaveOccurred(), "the dial waited for its deadline")
	var noAgent *NoAgentError
	g.Expect(errors.As(err, &noAgent)).To(BeTrue(), "error %v is not a *NoAgentError", err)
	g.Expect(noAgent.Cluster).To(Equal("cluster2"))
	g.Expect(noAgent.Address).To(Equal("cluster2:443"))
	g.Expect(err.Error()).To(ContainSubstring(`cluster "cluster2"`))
	isDialFailure, reason := konnectivity.GetDialFailureReason(err)
	g.Expect(isDialFailure).To(BeTrue())
	g.Expect(reason).To(Equal(metrics.DialFailureEndpoint))
	// A failed dial does not cost the shared connection.
	g.Expect(dialer.Stats().Tunnels).To(Equal(1))
}

func TestDialerRecoversAfterServerRestart(t *testing.T) {
	checkGoroutines(t)
	g := NewWithT(t)
	server, dialer := newTestDialer(t, g)

	held, err := dialer.DialContext(t.Context(), "tcp", "cluster1:443")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(echoOnce(held, "before")).To(Equal("before"))

	server.Stop()
	// The held connection ends with its tunnel.
	_, err = held.Read(make([]byte, 1))
	g.Expect(err).To(MatchError(io.EOF))
	g.Expect(held.Close()).To(Succeed())

	// While the proxy-server is down, dials fail (after the retries), and
	// not as if the cluster had no agent.
	_, err = dialer.DialContext(t.Context(), "tcp", "cluster1:443")
	g.Expect(err).To(HaveOccurred())
	var noAgent *NoAgentError
	g.Expect(errors.As(err, &noAgent)).To(BeFalse())
	g.Expect(err.Error()).To(ContainSubstring(server.address))

	server.Restart(t)
	conn, err := dialer.DialContext(t.Context(), "tcp", "cluster1:443")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(echoOnce(conn, "after")).To(Equal("after"))
	g.Expect(conn.Close()).To(Succeed())
	g.Expect(dialer.Stats().Tunnels).To(BeNumerically(">", 1))
	g.Expect(dialer.Stats().OpenConnections).To(BeZero())
}

func TestDialerRetriesAFailedTunnelWithinTheDeadline(t *testing.T) {
	checkGoroutines(t)
	g := NewWithT(t)
	pki := newTestPKI(t)
	server := startFakeProxyServer(t, pki, "cluster1")
	// The first four connections fail, as to a proxy-server replica that
	// is gone while its address is still resolved.
	var attempts atomic.Int64
	failing := func(ctx context.Context, addr string) (net.Conn, error) {
		if attempts.Add(1) <= 4 {
			return nil, errors.New("dial tcp: i/o timeout (test)")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	dialer, err := NewDialer(server.address, pki.clientTLS(t), WithContextDialer(failing))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = dialer.Close() })

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", "cluster1:443")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(echoOnce(conn, "after retries")).To(Equal("after retries"))
	g.Expect(conn.Close()).To(Succeed())
	g.Expect(attempts.Load()).To(BeEquivalentTo(5), "connections tried")
	g.Expect(dialer.Stats().Tunnels).To(BeEquivalentTo(5), "a new tunnel per attempt")

	// With the proxy-server gone, a dial whose deadline comes before the
	// retries are done gives up by its deadline, having retried.
	server.Stop()
	before := attempts.Load()
	start := time.Now()
	ctx, cancel = context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	_, err = dialer.DialContext(ctx, "tcp", "cluster1:443")
	g.Expect(err).To(MatchError(ContainSubstring(server.address)))
	g.Expect(time.Since(start)).To(BeNumerically("<", 700*time.Millisecond+time.Second))
	g.Expect(attempts.Load()-before).To(BeNumerically(">=", 2), "connections tried before giving up")
}

func TestDialerClose(t *testing.T) {
	checkGoroutines(t)
	g := NewWithT(t)
	pki := newTestPKI(t)
	server := startFakeProxyServer(t, pki, "cluster1")
	dialer, err := NewDialer(server.address, pki.clientTLS(t))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = dialer.Close() })

	open, err := dialer.DialContext(t.Context(), "tcp", "cluster1:443")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(dialer.Close()).To(Succeed())
	g.Expect(dialer.Close()).To(Succeed())

	// Close ended the open connection.
	_, err = open.Read(make([]byte, 1))
	g.Expect(err).To(MatchError(io.EOF))
	_ = open.Close()
	_, err = dialer.DialContext(t.Context(), "tcp", "cluster1:443")
	g.Expect(err).To(MatchError(ErrDialerClosed))
}

func TestDialerCancelledDial(t *testing.T) {
	checkGoroutines(t)
	g := NewWithT(t)
	_, dialer := newTestDialer(t, g)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := dialer.DialContext(ctx, "tcp", "cluster1:443")
	g.Expect(err).To(HaveOccurred())
	g.Expect(dialer.Stats().OpenConnections).To(BeZero())

	// The Dialer still works.
	conn, err := dialer.DialContext(t.Context(), "tcp", "cluster1:443")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.Close()).To(Succeed())
}

func TestNewDialerAndDialValidation(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name    string
		address string
		network string
		wantErr string
	}{
		{name: "address without port", address: "proxy", network: "tcp", wantErr: "invalid proxy-server address"},
		{name: "udp", address: "127.0.0.1:1", network: "udp", wantErr: `network "udp" is not supported`},
		{name: "unix", address: "127.0.0.1:1", network: "unix", wantErr: `network "unix" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			dialer, err := NewDialer(tt.address, pki.clientTLS(t))
			if err == nil {
				t.Cleanup(func() { g.Expect(dialer.Close()).To(Succeed()) })
				_, err = dialer.DialContext(t.Context(), tt.network, "cluster1:443")
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
	g := NewWithT(t)
	_, err := NewDialer("127.0.0.1:1", nil)
	g.Expect(err).To(MatchError(ContainSubstring("TLS configuration is nil")))
}

// newTestDialer starts a fake proxy-server with an agent for cluster1 and a
// Dialer to it, which must close cleanly when the test ends.
func newTestDialer(t *testing.T, g *WithT) (*fakeProxyServer, *Dialer) {
	t.Helper()
	pki := newTestPKI(t)
	server := startFakeProxyServer(t, pki, "cluster1")
	dialer, err := NewDialer(server.address, pki.clientTLS(t))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { g.Expect(dialer.Close()).To(Succeed()) })
	return server, dialer
}
