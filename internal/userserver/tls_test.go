package userserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// serviceProxySANs are the names of the service-proxy's serving
// certificate (internal/servicecert).
var serviceProxySANs = []string{"*", "localhost", "127.0.0.1", "*.open-cluster-management.proxy"}

// tlsFiles are the user-server's certificate files in a directory, each
// replaced as a kubelet updates a mounted Secret.
type tlsFiles struct {
	t   *testing.T
	dir string
}

// replace writes data to a new file next to <dir>/name and renames it
// over it; it returns the path.
func (f tlsFiles) replace(name string, data []byte) string {
	f.t.Helper()
	g := NewWithT(f.t)
	path := filepath.Join(f.dir, name)
	g.Expect(os.WriteFile(path+".new", data, 0o600)).To(Succeed())
	g.Expect(os.Rename(path+".new", path)).To(Succeed())
	return path
}

// issue issues spec from ca into <name>.crt and <name>.key (key first) and
// returns the certificate.
func (f tlsFiles) issue(ca *certs.CA, name string, spec certs.LeafSpec) *x509.Certificate {
	f.t.Helper()
	g := NewWithT(f.t)
	certPEM, keyPEM, err := ca.Issue(spec, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	f.replace(name+".key", keyPEM)
	f.replace(name+".crt", certPEM)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
	return pair.Leaf
}

func newCA(t *testing.T, name string) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(name, time.Now(), time.Hour)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return ca
}

// bundle is the PEM certificates of cas, one after the other.
func bundle(cas ...*certs.CA) []byte {
	var b []byte
	for _, ca := range cas {
		b = append(b, ca.CertPEM...)
	}
	return b
}

// newTLSOptions writes a user-server's certificate files from ca and
// returns the options naming them.
func newTLSOptions(t *testing.T, ca *certs.CA) (*Options, tlsFiles) {
	t.Helper()
	files := tlsFiles{t: t, dir: t.TempDir()}
	o := NewOptions()
	o.ProxyCACert = files.replace("proxy-ca.crt", ca.CertPEM)
	o.ServiceProxyCACert = files.replace("service-proxy-ca.crt", ca.CertPEM)
	files.issue(ca, "proxy-client", certs.LeafSpec{CommonName: "proxy-client", Usage: certs.UsageClient})
	o.ProxyCert, o.ProxyKey = filepath.Join(files.dir, "proxy-client.crt"), filepath.Join(files.dir, "proxy-client.key")
	files.issue(ca, "server", certs.LeafSpec{CommonName: "user-server", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing})
	o.ServerCert, o.ServerKey = filepath.Join(files.dir, "server.crt"), filepath.Join(files.dir, "server.key")
	return o, files
}

// serviceProxyStandIn is an HTTPS server with serving, requiring a client
// certificate of clientCA, answering with the client certificate's serial.
func serviceProxyStandIn(t *testing.T, serving tls.Certificate, clientCA *x509.Certificate) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].SerialNumber.String())
	}))
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(clientCA)
	s.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	// Refused handshakes are what the tests provoke.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func leaf(t *testing.T, ca *certs.CA, spec certs.LeafSpec) tls.Certificate {
	t.Helper()
	g := NewWithT(t)
	certPEM, keyPEM, err := ca.Issue(spec, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
	return pair
}

func TestServiceProxyTLSFollowsItsFiles(t *testing.T) {
	g := NewWithT(t)
	old, next := newCA(t, "old CA"), newCA(t, "new CA")
	o, files := newTLSOptions(t, old)
	material, err := loadTLS(o)
	g.Expect(err).NotTo(HaveOccurred())

	// get sends a request for cluster1's service-proxy, as the user-server
	// routes it, on a new connection to server; it returns the body (the
	// serial of the client certificate the server saw).
	get := func(server *httptest.Server) (string, error) {
		tr := serviceProxyTransport(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, server.Listener.Addr().String())
		}, material.serviceProxyConfig(t.Context()))
		defer tr.CloseIdleConnections()
		host := net.JoinHostPort(proxyv1alpha1.ServiceProxyHost("cluster1"), strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort)))
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+host+"/", nil)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	spec := certs.LeafSpec{CommonName: "cluster-proxy-service-proxy", SANs: serviceProxySANs, Usage: certs.UsageServing}

	oldServer := serviceProxyStandIn(t, leaf(t, old, spec), old.Cert)
	clientSerial, err := get(oldServer)
	g.Expect(err).NotTo(HaveOccurred())

	// A service-proxy certificate for other names is refused, as before.
	otherNames := serviceProxyStandIn(t, leaf(t, old, certs.LeafSpec{CommonName: "x", SANs: []string{"*.example.com"}, Usage: certs.UsageServing}), old.Cert)
	_, err = get(otherNames)
	g.Expect(err).To(MatchError(ContainSubstring("certificate is valid for *.example.com, not " + proxyv1alpha1.ServiceProxyHost("cluster1"))))

	// A service-proxy of the new CA: refused until the bundle holds it.
	newServer := serviceProxyStandIn(t, leaf(t, next, spec), old.Cert)
	_, err = get(newServer)
	g.Expect(err).To(MatchError(ContainSubstring("unknown authority")))
	files.replace("service-proxy-ca.crt", bundle(old, next))
	g.Expect(get(newServer)).To(Equal(clientSerial))
	g.Expect(get(oldServer)).To(Equal(clientSerial))
	files.replace("service-proxy-ca.crt", bundle(next))
	_, err = get(oldServer)
	g.Expect(err).To(MatchError(ContainSubstring("unknown authority")), "the old CA dropped from the bundle")

	// The proxy-client certificate renewed: the next handshake presents it.
	renewed := files.issue(old, "proxy-client", certs.LeafSpec{CommonName: "proxy-client", Usage: certs.UsageClient})
	g.Expect(get(newServer)).To(Equal(renewed.SerialNumber.String()))
}

func TestServingCertificateFollowsItsFiles(t *testing.T) {
	g := NewWithT(t)
	old, next := newCA(t, "old CA"), newCA(t, "new CA")
	o, files := newTLSOptions(t, old)
	material, err := loadTLS(o)
	g.Expect(err).NotTo(HaveOccurred())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	// As Run serves, under a TLS profile of TLS 1.3 only.
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		TLSConfig:         tlsprofile.ServerConfig(material.servingConfig(t.Context()), func() tlsprofile.Profile { return tlsprofile.Profile{MinVersion: tls.VersionTLS13} }),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	roots := x509.NewCertPool()
	roots.AddCert(old.Cert)
	roots.AddCert(next.Cert)
	served := func(maxVersion uint16) (*x509.Certificate, error) {
		conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, MaxVersion: maxVersion, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			return nil, err
		}
		defer func() { _ = conn.Close() }()
		g.Expect(conn.ConnectionState().NegotiatedProtocol).To(Equal("http/1.1"), "HTTP/1.1 only, for the upgrades")
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	first, err := served(tls.VersionTLS13)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(first.Issuer.CommonName).To(Equal("old CA"))

	renewed := files.issue(next, "server", certs.LeafSpec{CommonName: "user-server", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing})
	got, err := served(tls.VersionTLS13)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.SerialNumber).To(Equal(renewed.SerialNumber))

	// The profile still applies.
	_, err = served(tls.VersionTLS12)
	g.Expect(err).To(MatchError(ContainSubstring("protocol version")))

	// A broken renewal keeps the last good certificate.
	files.replace("server.crt", []byte("not a certificate"))
	got, err = served(tls.VersionTLS13)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.SerialNumber).To(Equal(renewed.SerialNumber))
}
