package tlsfiles

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// handshakeWith serves one TLS handshake on loopback with serving and
// returns the client's result: a client that skips crypto/tls's own
// verification and verifies with VerifyServer(roots, serverName), sending
// sni as its SNI name (crypto/tls sends none for an IP address).
func handshakeWith(t *testing.T, serving tls.Certificate, roots *Pool, serverName, sni string) error {
	t.Helper()
	return handshake(t, serving, &tls.Config{
		MinVersion: tls.VersionTLS12, ServerName: sni,
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies: what is tested.
		VerifyConnection:   VerifyServer(t.Context(), roots, serverName),
	})
}

// handshake serves one TLS handshake on loopback with serving and returns
// the result of a client with config.
func handshake(t *testing.T, serving tls.Certificate, config *tls.Config) error {
	t.Helper()
	g := NewWithT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_ = tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{serving}, MinVersion: tls.VersionTLS12}).Handshake()
	}()
	d := tls.Dialer{Config: config}
	conn, err := d.DialContext(t.Context(), "tcp", l.Addr().String())
	if err != nil {
		return err
	}
	return conn.Close()
}

func TestVerifyServer(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	now := time.Now()
	trusted, err := certs.NewCA("trusted CA", now, time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	other, err := certs.NewCA("other CA", now, time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	bundle := filepath.Join(dir, "ca.crt")
	g.Expect(os.WriteFile(bundle, trusted.CertPEM, 0o600)).To(Succeed())
	roots, err := NewPool(bundle)
	g.Expect(err).NotTo(HaveOccurred())
	leaf := func(ca *certs.CA, usage certs.Usage, sans ...string) tls.Certificate {
		certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: "server", SANs: sans, Usage: usage}, now)
		g.Expect(err).NotTo(HaveOccurred())
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		g.Expect(err).NotTo(HaveOccurred())
		return pair
	}
	const host = "cluster-1.open-cluster-management.proxy"
	good := leaf(trusted, certs.UsageServing, "*.open-cluster-management.proxy", "127.0.0.1")

	tests := []struct {
		name             string
		serving          tls.Certificate
		serverName, sni  string
		wantErrSubstring string
		// builtinAccepts: crypto/tls's own verification accepts what
		// VerifyServer refuses.
		builtinAccepts bool
	}{
		{name: "the SNI name, covered by a wildcard", serving: good, sni: host},
		{name: "an IP address given as the server name", serving: good, serverName: "127.0.0.1"},
		{name: "the given name wins over the SNI name", serving: good, serverName: "127.0.0.1", sni: "elsewhere.example"},
		{name: "a name the certificate does not cover", serving: good, sni: "cluster-1.example", wantErrSubstring: "certificate is valid for"},
		{name: "an IP address the certificate does not cover", serving: good, serverName: "127.0.0.2", wantErrSubstring: "certificate is valid for"},
		// crypto/tls verifies the IP address dialled (tls.Dialer and
		// http.Transport make it the ServerName), which a VerifyConnection
		// does not see: refused rather than unchecked.
		{name: "no name at all: refused, not unchecked", serving: good, wantErrSubstring: "no server name to verify", builtinAccepts: true},
		{name: "a CA outside the bundle", serving: leaf(other, certs.UsageServing, "*.open-cluster-management.proxy"), sni: host,
			wantErrSubstring: "certificate signed by unknown authority"},
		{name: "a client certificate of the trusted CA", serving: leaf(trusted, certs.UsageClient, "*.open-cluster-management.proxy"), sni: host,
			wantErrSubstring: "incompatible key usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := handshakeWith(t, tt.serving, roots, tt.serverName, tt.sni)
			// crypto/tls's own verification, with the bundle as fixed
			// roots and the name to verify as ServerName, agrees.
			name := tt.serverName
			if name == "" {
				name = tt.sni
			}
			pool, _ := roots.Get()
			builtin := handshake(t, tt.serving, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: name})
			if tt.wantErrSubstring == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(builtin).NotTo(HaveOccurred(), "crypto/tls's verification")
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErrSubstring)))
			if tt.builtinAccepts {
				g.Expect(builtin).NotTo(HaveOccurred(), "crypto/tls's verification")
				return
			}
			g.Expect(builtin).To(HaveOccurred(), "crypto/tls's verification")
		})
	}

	t.Run("the bundle as the file holds it at the handshake", func(t *testing.T) {
		g := NewWithT(t)
		fromOther := leaf(other, certs.UsageServing, "*.open-cluster-management.proxy")
		g.Expect(handshakeWith(t, fromOther, roots, "", host)).To(MatchError(ContainSubstring("unknown authority")))
		replace(t, bundle, append(append([]byte{}, trusted.CertPEM...), other.CertPEM...))
		g.Expect(handshakeWith(t, fromOther, roots, "", host)).To(Succeed())
		g.Expect(handshakeWith(t, good, roots, "", host)).To(Succeed())
		replace(t, bundle, other.CertPEM)
		g.Expect(handshakeWith(t, good, roots, "", host)).To(MatchError(ContainSubstring("unknown authority")))
	})
}

// replace writes data to a new file next to path and renames it over path,
// as a kubelet updates a mounted Secret (atomically).
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(os.WriteFile(path+".new", data, 0o600)).To(Succeed())
	g.Expect(os.Rename(path+".new", path)).To(Succeed())
}
