package servicecert

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// TestSpecIssues checks that the certificate the service-proxy serves can be
// issued and verified for the names hub clients dial through the tunnel.
func TestSpecIssues(t *testing.T) {
	g := NewWithT(t)
	now := time.Now()
	ca, err := certs.NewCA(certs.CACommonName, now, certs.CAValidity)
	g.Expect(err).NotTo(HaveOccurred())
	certPEM, keyPEM, err := ca.Issue(Spec, now)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(certs.CheckLeaf(ca, Spec, certPEM, keyPEM, now)).To(BeEmpty())
	cert, err := certs.ParseCertificate(certPEM)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cert.DNSNames).To(ConsistOf("*", "localhost", "*.open-cluster-management.proxy"))
	g.Expect(cert.VerifyHostname("cluster-0123.open-cluster-management.proxy")).To(Succeed())
	g.Expect(cert.VerifyHostname("127.0.0.1")).To(Succeed())
	g.Expect(cert.NotAfter.Sub(cert.NotBefore)).To(BeNumerically("~", certs.LeafValidity, 2*time.Minute))
}
