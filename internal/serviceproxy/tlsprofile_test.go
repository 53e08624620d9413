package serviceproxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/tlsfiles"
	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
)

// tlsFixture is a serving certificate and a caller certificate from one CA;
// the serving certificate and the CA are files too, as Run reads them.
type tlsFixture struct {
	caller tls.Certificate
	roots  *x509.CertPool
	// serving and clientCAs are read from files in a temporary directory.
	serving   *tlsfiles.KeyPair
	clientCAs *tlsfiles.Pool
}

func newTLSFixture(t *testing.T) tlsFixture {
	t.Helper()
	g := NewWithT(t)
	now := time.Now()
	ca, err := certs.NewCA("test CA", now, time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		g.Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
		return path
	}
	certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: "localhost", SANs: []string{"localhost"}, Usage: certs.UsageServing}, now)
	g.Expect(err).NotTo(HaveOccurred())
	serving, err := tlsfiles.NewKeyPair(write("tls.crt", certPEM), write("tls.key", keyPEM))
	g.Expect(err).NotTo(HaveOccurred())
	clientCAs, err := tlsfiles.NewPool(write("ca.crt", ca.CertPEM))
	g.Expect(err).NotTo(HaveOccurred())
	certPEM, keyPEM, err = ca.Issue(certs.LeafSpec{CommonName: "caller", Usage: certs.UsageClient}, now)
	g.Expect(err).NotTo(HaveOccurred())
	caller, err := tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return tlsFixture{caller: caller, roots: roots, serving: serving, clientCAs: clientCAs}
}

// serve runs an http.Server as Run builds it (servingTLSConfig, ServeTLS)
// answering with the number of verified caller chains, and returns its
// address.
func serve(t *testing.T, f tlsFixture, profile func() tlsprofile.Profile) string {
	t.Helper()
	g := NewWithT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TLS.VerifiedChains) == 0 {
				http.Error(w, "no caller certificate", http.StatusForbidden)
			}
		}),
		TLSConfig:         servingTLSConfig(t.Context(), f.serving, f.clientCAs, profile),
		ReadHeaderTimeout: 5 * time.Second,
		// Refused handshakes are what the tests provoke.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// handshake is a client limited to maxVersion and, when given, suites: it
// connects, sends one request presenting the caller certificate, and
// returns the connection state.
func handshake(f tlsFixture, address string, maxVersion uint16, suites ...uint16) (tls.ConnectionState, error) {
	var state tls.ConnectionState
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs: f.roots, ServerName: "localhost", Certificates: []tls.Certificate{f.caller},
			MinVersion: tls.VersionTLS12, MaxVersion: maxVersion, CipherSuites: suites,
		},
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + address + "/")
	if err != nil {
		return state, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return state, errors.New(resp.Status)
	}
	return *resp.TLS, nil
}

func TestServingFollowsTheTLSProfileConfigMapWithoutRestart(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	const ns = "open-cluster-management-agent-addon"
	f := newTLSFixture(t)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tlsprofile.ConfigMapName},
		Data:       map[string]string{tlsprofile.KeyMinVersion: "VersionTLS13"},
	}
	client := fake.NewClientset(cm)
	address := serve(t, f, tlsprofile.Start(ctx, ctx, client, ns, 10*time.Second))

	// From the first connection on (the watch was read before serving):
	// a TLS 1.2 client is refused, TLS 1.3 works, with the caller verified.
	_, err := handshake(f, address, tls.VersionTLS12)
	g.Expect(err).To(MatchError(ContainSubstring("protocol version")))
	state, err := handshake(f, address, tls.VersionTLS13)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.Version).To(BeEquivalentTo(tls.VersionTLS13))

	// Cipher suites only: TLS 1.2 again, restricted to them (and HTTP/1.1,
	// since the list has no suite HTTP/2 requires).
	cm.Data = map[string]string{tlsprofile.KeyCipherSuites: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}
	_, err = client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() (uint16, error) {
		state, err := handshake(f, address, tls.VersionTLS12,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
		return state.CipherSuite, err
	}).WithTimeout(10 * time.Second).Should(Equal(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384))
	_, err = handshake(f, address, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
	g.Expect(err).To(MatchError(ContainSubstring("handshake failure")))
	state, err = handshake(f, address, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.NegotiatedProtocol).NotTo(Equal("h2"))

	// An invalid value: the last good profile stays.
	cm.Data = map[string]string{tlsprofile.KeyMinVersion: "TLS1.2"}
	_, err = client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Consistently(func() error {
		_, err := handshake(f, address, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		return err
	}).WithTimeout(time.Second).Should(MatchError(ContainSubstring("handshake failure")))

	// Deleted: the default, Go's suites and HTTP/2 again.
	g.Expect(client.CoreV1().ConfigMaps(ns).Delete(ctx, tlsprofile.ConfigMapName, metav1.DeleteOptions{})).To(Succeed())
	g.Eventually(func() error {
		_, err := handshake(f, address, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		return err
	}).WithTimeout(10 * time.Second).Should(Succeed())
	state, err = handshake(f, address, tls.VersionTLS12)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.NegotiatedProtocol).To(Equal("h2"))
}

func TestServingStartsWithTheDefaultWhenTheProfileCannotBeRead(t *testing.T) {
	g := NewWithT(t)
	client := fake.NewClientset()
	client.PrependReactor("list", "configmaps", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "", errors.New("no RBAC"))
	})
	start := time.Now()
	profile := tlsprofile.Start(t.Context(), t.Context(), client, "agent", time.Minute)
	g.Expect(time.Since(start)).To(BeNumerically("<", 30*time.Second), "the first failure ends the wait")
	g.Expect(profile()).To(Equal(tlsprofile.Default()))

	f := newTLSFixture(t)
	address := serve(t, f, profile)
	state, err := handshake(f, address, tls.VersionTLS12)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.Version).To(BeEquivalentTo(tls.VersionTLS12))
}

func TestWatchTLSProfileWithoutPodNamespaceServesTheDefault(t *testing.T) {
	g := NewWithT(t)
	o := NewOptions()
	o.Kubeconfig = "/does/not/exist" // never read
	profile, err := o.watchTLSProfile(t.Context(), t.Context())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(profile()).To(Equal(tlsprofile.Default()))
}
