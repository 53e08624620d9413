package userserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// fakeServiceProxy is an HTTPS server standing in for a cluster's
// service-proxy, reached through a dial function that counts its dials.
type fakeServiceProxy struct {
	server *httptest.Server
	// dials counts the user-server's dials; newConns the connections the
	// fake accepted.
	dials, newConns atomic.Int32

	mu         sync.Mutex
	dialed     []string
	lastHeader http.Header
	lastPath   string
}

func newFakeServiceProxy(t *testing.T, handler http.HandlerFunc) *fakeServiceProxy {
	f := &fakeServiceProxy{}
	f.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.lastHeader, f.lastPath = r.Header.Clone(), r.URL.Path
		f.mu.Unlock()
		handler(w, r)
	}))
	f.server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			f.newConns.Add(1)
		}
	}
	f.server.StartTLS()
	t.Cleanup(f.server.Close)
	return f
}

// transport is the user-server's service-proxy transport, its dials
// going to the fake whatever the address.
func (f *fakeServiceProxy) transport(t *testing.T) *http.Transport {
	roots := x509.NewCertPool()
	roots.AddCert(f.server.Certificate())
	tr := serviceProxyTransport(func(ctx context.Context, network, address string) (net.Conn, error) {
		f.dials.Add(1)
		f.mu.Lock()
		f.dialed = append(f.dialed, address)
		f.mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, f.server.Listener.Addr().String())
	}, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "example.com"})
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// writeCountingListener counts the writes on the connections it accepts.
type writeCountingListener struct {
	net.Listener
	writes *atomic.Int32
}

func (l writeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return writeCountingConn{Conn: c, writes: l.writes}, nil
}

type writeCountingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c writeCountingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// startUserServer serves s over plain HTTP (the user-server's TLS is not
// what these tests are about) and returns its URL and a counter of the
// writes to its clients.
func startUserServer(t *testing.T, s *Server) (string, *atomic.Int32) {
	writes := &atomic.Int32{}
	front := httptest.NewUnstartedServer(s)
	front.Listener = writeCountingListener{Listener: front.Listener, writes: writes}
	front.Start()
	t.Cleanup(front.Close)
	return front.URL, writes
}

func TestServerReusesOneServiceProxyConnection(t *testing.T) {
	g := NewWithT(t)
	const answer = `{"kind":"Namespace","metadata":{"name":"default"}}`
	sp := newFakeServiceProxy(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	})
	url, writes := startUserServer(t, &Server{Transport: sp.transport(t), Allowlist: func() Allowlist { return Allowlist{} }})
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)

	const requests = 20
	for i := range requests {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/cluster1/api/v1/namespaces/default", nil)
		g.Expect(err).NotTo(HaveOccurred())
		// The caller's own target headers never reach the service-proxy.
		req.Header.Set(proxyv1alpha1.HeaderService, "elsewhere")
		resp, err := client.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK), "request %d: %s", i, body)
		g.Expect(string(body)).To(Equal(answer))
	}

	sp.mu.Lock()
	defer sp.mu.Unlock()
	g.Expect(sp.lastPath).To(Equal("/api/v1/namespaces/default"))
	g.Expect(sp.lastHeader.Values(proxyv1alpha1.HeaderService)).To(Equal([]string{"kubernetes"}))
	g.Expect(sp.lastHeader.Values(proxyv1alpha1.HeaderNamespace)).To(Equal([]string{"default"}))
	// The witness: one tunnel dial and one TLS connection for all the
	// requests, not one per request.
	g.Expect(sp.dials.Load()).To(Equal(int32(1)), "dials through the tunnel")
	g.Expect(sp.newConns.Load()).To(Equal(int32(1)), "connections the service-proxy accepted")
	g.Expect(sp.dialed).To(Equal([]string{net.JoinHostPort(proxyv1alpha1.ServiceProxyHost("cluster1"), strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort)))}))
	// An answer of known length reaches the caller in one write (headers
	// and body together), not headers first on their own.
	g.Expect(writes.Load()).To(Equal(int32(requests)), "writes to the caller")
}

func TestServerStreamsAnswersOfUnknownLength(t *testing.T) {
	g := NewWithT(t)
	release := make(chan struct{})
	sp := newFakeServiceProxy(t, func(w http.ResponseWriter, r *http.Request) {
		// A watch: no Content-Length, events written as they happen.
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{\"type\":\"ADDED\"}\n")
		http.NewResponseController(w).Flush() //nolint:errcheck // the test fails on a missing event
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "{\"type\":\"MODIFIED\"}\n")
	})
	url, _ := startUserServer(t, &Server{Transport: sp.transport(t), Allowlist: func() Allowlist { return Allowlist{} }})

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/cluster1/api/v1/namespaces/default/configmaps?watch=true", nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	lines := make(chan string)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	// The first event arrives while the service-proxy still holds the
	// answer open.
	g.Eventually(lines, 5*time.Second).Should(Receive(Equal(`{"type":"ADDED"}`)))
	close(release)
	g.Eventually(lines, 5*time.Second).Should(Receive(Equal(`{"type":"MODIFIED"}`)))
}
