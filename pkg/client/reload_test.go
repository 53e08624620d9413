package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// tlsServer accepts TLS connections with pki's serving certificate,
// requiring a client certificate of pki's CA, and completes each
// handshake.
func tlsServer(t *testing.T, pki *testPKI) string {
	t.Helper()
	pair, err := tls.X509KeyPair(pki.serverCertPEM, pki.serverKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(pki.caPEM)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = conn.(*tls.Conn).Handshake()
				_ = conn.Close()
			}()
		}
	}()
	return l.Addr().String()
}

// handshake runs a TLS handshake with cfg against addr (the server's
// verdict on the client certificate included, by reading its close).
func handshake(addr string, cfg *tls.Config) error {
	conn, err := tls.Dial("tcp", addr, cfg.Clone())
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	if errors.Is(err, io.EOF) {
		// The server completed the handshake and closed the connection.
		return nil
	}
	return err
}

// TestReloadingTLSConfigFollowsTheLoader switches the loader from one PKI
// to another, as a CA rotation does: before the reload only the first
// PKI's proxy-server is accepted and accepts the client; after it, only
// the second's. A loader that then fails keeps the second.
func TestReloadingTLSConfigFollowsTheLoader(t *testing.T) {
	g := NewWithT(t)
	oldPKI, newPKI := newTestPKI(t), newTestPKI(t)
	oldServer, newServer := tlsServer(t, oldPKI), tlsServer(t, newPKI)
	var phase atomic.Int32
	var loads atomic.Int32
	load := func(context.Context) (*tls.Config, error) {
		loads.Add(1)
		switch phase.Load() {
		case 0:
			return NewTLSConfig(oldPKI.caPEM, oldPKI.clientCertPEM, oldPKI.clientKeyPEM, testServerName)
		case 1:
			return NewTLSConfig(newPKI.caPEM, newPKI.clientCertPEM, newPKI.clientKeyPEM, testServerName)
		}
		return nil, errors.New("the Secrets are gone")
	}
	cfg, err := ReloadingTLSConfig(t.Context(), 20*time.Millisecond, load)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(handshake(oldServer, cfg)).To(Succeed())
	g.Expect(handshake(newServer, cfg)).To(MatchError(ContainSubstring("failed to verify the proxy-server's certificate")))

	phase.Store(1)
	g.Eventually(func() error { return handshake(newServer, cfg) }).Should(Succeed())
	g.Expect(handshake(oldServer, cfg)).NotTo(Succeed())

	phase.Store(2)
	seen := loads.Load()
	g.Eventually(loads.Load).Should(BeNumerically(">", seen+2), "the loader keeps being called")
	g.Expect(handshake(newServer, cfg)).To(Succeed(), "a failed load keeps the last good material")
}

// TestReloadingTLSConfigRefusesUnusableMaterial checks the first load's
// errors and an interval that is not positive.
func TestReloadingTLSConfigRefusesUnusableMaterial(t *testing.T) {
	pki := newTestPKI(t)
	good := func(context.Context) (*tls.Config, error) {
		return NewTLSConfig(pki.caPEM, pki.clientCertPEM, pki.clientKeyPEM, testServerName)
	}
	tests := []struct {
		name     string
		interval time.Duration
		load     func(context.Context) (*tls.Config, error)
		wantErr  string
	}{
		{"zero interval", 0, good, "interval 0s is not positive"},
		{"loader fails", time.Second, func(context.Context) (*tls.Config, error) { return nil, errors.New("forbidden") }, "forbidden"},
		{"no configuration", time.Second, func(context.Context) (*tls.Config, error) { return nil, nil }, "returned no configuration"},
		{"no client certificate", time.Second, func(context.Context) (*tls.Config, error) {
			return &tls.Config{ServerName: testServerName, RootCAs: x509.NewCertPool()}, nil
		}, "0 client certificates"},
		{"no CA bundle", time.Second, func(ctx context.Context) (*tls.Config, error) {
			cfg, err := good(ctx)
			cfg.RootCAs = nil
			return cfg, err
		}, "no CA bundle"},
		{"no server name", time.Second, func(ctx context.Context) (*tls.Config, error) {
			cfg, err := good(ctx)
			cfg.ServerName = ""
			return cfg, err
		}, "no server name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReloadingTLSConfig(t.Context(), tt.interval, tt.load)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}
