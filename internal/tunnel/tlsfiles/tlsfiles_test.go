package tlsfiles

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
