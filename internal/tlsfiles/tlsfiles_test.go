package tlsfiles

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

func TestKeyPairAndPoolFollowTheirFiles(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	ca, err := certs.NewCA("test-ca", time.Now(), time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	issue := func(cn string) {
		certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: cn, SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing}, time.Now())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(os.WriteFile(keyFile, keyPEM, 0o600)).To(Succeed())
		g.Expect(os.WriteFile(certFile, certPEM, 0o600)).To(Succeed())
	}
	issue("first")
	g.Expect(os.WriteFile(caFile, ca.CertPEM, 0o600)).To(Succeed())

	kp, err := NewKeyPair(certFile, keyFile)
	g.Expect(err).NotTo(HaveOccurred())
	pool, err := NewPool(caFile)
	g.Expect(err).NotTo(HaveOccurred())
	leafCN := func() string {
		c, err := kp.Get()
		g.Expect(err).NotTo(HaveOccurred())
		return c.Leaf.Subject.CommonName
	}
	g.Expect(leafCN()).To(Equal("first"))

	// A renewal is read on the next Get.
	issue("renewed")
	g.Expect(leafCN()).To(Equal("renewed"))

	// A broken file keeps the last good pair, with the error.
	g.Expect(os.WriteFile(certFile, []byte("not a certificate"), 0o600)).To(Succeed())
	c, err := kp.Get()
	g.Expect(err).To(MatchError(ContainSubstring("failed to load the certificate")))
	g.Expect(c.Leaf.Subject.CommonName).To(Equal("renewed"))

	// The pool too.
	before, err := pool.Get()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(caFile, []byte("garbage, longer than before so the stamp changes for sure......"), 0o600)).To(Succeed())
	after, err := pool.Get()
	g.Expect(err).To(MatchError(ContainSubstring("holds no PEM certificate")))
	g.Expect(after).To(BeIdenticalTo(before))

	_, err = NewPool(filepath.Join(dir, "missing"))
	g.Expect(err).To(MatchError(ContainSubstring("failed to read the CA bundle")))
}

func TestCurrentLogsEachChangeOnce(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	ca, err := certs.NewCA("test-ca", time.Now(), time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	issue := func(cn string) {
		certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: cn, Usage: certs.UsageServing}, time.Now())
		g.Expect(err).NotTo(HaveOccurred())
		replace(t, keyFile, keyPEM)
		replace(t, certFile, certPEM)
	}
	issue("first")
	replace(t, caFile, ca.CertPEM)
	kp, err := NewKeyPair(certFile, keyFile)
	g.Expect(err).NotTo(HaveOccurred())
	pool, err := NewPool(caFile)
	g.Expect(err).NotTo(HaveOccurred())

	var logged []string
	ctx := logr.NewContext(t.Context(), funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{Verbosity: 2}))
	handshakes := func() {
		for range 5 {
			kp.Current(ctx)
			pool.Current(ctx)
		}
	}

	handshakes()
	g.Expect(logged).To(BeEmpty(), "nothing changed since the first read")

	issue("renewed")
	replace(t, caFile, append(append([]byte{}, ca.CertPEM...), ca.CertPEM...))
	handshakes()
	g.Expect(logged).To(ConsistOf(
		And(ContainSubstring(`"msg"="Read a changed certificate"`), ContainSubstring(`"certFile"="`+certFile+`"`)),
		And(ContainSubstring(`"msg"="Read a changed CA bundle"`), ContainSubstring(`"certificates"=2`)),
	))
	g.Expect(kp.Current(ctx).Leaf.Subject.CommonName).To(Equal("renewed"))

	logged = nil
	replace(t, certFile, []byte("not a certificate"))
	replace(t, caFile, []byte("not a bundle"))
	handshakes()
	g.Expect(logged).To(ConsistOf(
		And(ContainSubstring(`"msg"="Failed to read a changed certificate, keeping the last good one"`), ContainSubstring("failed to load the certificate")),
		And(ContainSubstring(`"msg"="Failed to read a changed CA bundle, keeping the last good one"`), ContainSubstring("holds no PEM certificate")),
	), "one error per broken change, not one per handshake")
	g.Expect(kp.Current(ctx).Leaf.Subject.CommonName).To(Equal("renewed"), "the last good pair")
	g.Expect(pool.Current(ctx).Equal(mustPool(t, ca.CertPEM))).To(BeTrue(), "the last good bundle")

	logged = nil
	g.Expect(os.Remove(caFile)).To(Succeed())
	handshakes()
	g.Expect(logged).To(ConsistOf(ContainSubstring("failed to read the CA bundle")), "another change, another error")

	logged = nil
	issue("fixed")
	replace(t, caFile, ca.CertPEM)
	handshakes()
	g.Expect(logged).To(HaveLen(2), "read again once fixed")
	g.Expect(kp.Current(ctx).Leaf.Subject.CommonName).To(Equal("fixed"))
}

func mustPool(t *testing.T, pemData []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	NewWithT(t).Expect(p.AppendCertsFromPEM(pemData)).To(BeTrue())
	return p
}
