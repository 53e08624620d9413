package proxyconfig_test

import (
	"context"
	"crypto/x509"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// bundleOf is the PEM bundle of cas, in order.
func bundleOf(cas ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range cas {
		out = append(out, certs.EncodeCertificate(c)...)
	}
	return out
}

var _ = Describe("A CA rotation", Label("proxyconfig", "carotation"), func() {
	const name, ns = "rotation", "proxy-rotation"

	// advance moves the rotation on from phase and tells the reconciler.
	advance := func(ctx context.Context, from signer.Phase) *signer.Authority {
		GinkgoHelper()
		a, err := caStore.Advance(ctx, from)
		Expect(err).NotTo(HaveOccurred())
		caChanged <- event.GenericEvent{Object: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: signerSecretName}}}
		return a
	}
	// expectSecrets waits until the CA Secret and every certificate Secret
	// hold bundle as ca.crt and certificates issued by issuer; it returns
	// the certificates by Secret.
	expectSecrets := func(ctx context.Context, bundle []byte, issuer *x509.Certificate) map[string]*x509.Certificate {
		GinkgoHelper()
		leaves := map[string]*x509.Certificate{}
		Eventually(func(g Gomega) {
			caSecret := &corev1.Secret{}
			g.Expect(get(ctx, ns, proxyv1alpha1.CASecretName, caSecret)).To(Succeed())
			g.Expect(caSecret.Data[proxyv1alpha1.CASecretKey]).To(Equal(bundle), "the CA Secret's bundle")
			for _, secret := range []string{"proxy-server", "agent-server", "proxy-client"} {
				s := &corev1.Secret{}
				g.Expect(get(ctx, ns, secret, s)).To(Succeed())
				g.Expect(s.Data[proxyv1alpha1.CASecretKey]).To(Equal(bundle), "the bundle of %s", secret)
				cert, err := certs.ParseCertificate(s.Data[corev1.TLSCertKey])
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(cert.CheckSignatureFrom(issuer)).To(Succeed(), "the issuer of %s", secret)
				leaves[secret] = cert
			}
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		return leaves
	}

	It("trusts the next CA beside the old one with the certificates kept, reissues every certificate once the new CA signs, and drops the old CA at the end", func(ctx SpecContext) {
		createMPC(ctx, newMPC(name, ns))
		DeferCleanup(deleteMPC, name)
		before, err := caStore.Authority(ctx)
		Expect(err).NotTo(HaveOccurred())
		old := before.Signing.Cert
		first := expectSecrets(ctx, bundleOf(old), old)

		By("Trusting: the bundles gain the next CA; no certificate is reissued")
		trusting := advance(ctx, signer.PhaseNone)
		kept := expectSecrets(ctx, bundleOf(old, trusting.Next.Cert), old)
		for secret, cert := range kept {
			Expect(cert.SerialNumber).To(Equal(first[secret].SerialNumber), "%s kept its certificate", secret)
		}

		By("Signing: every certificate is reissued by the new CA; both are still trusted")
		signing := advance(ctx, signer.PhaseTrusting)
		expectSecrets(ctx, bundleOf(signing.Signing.Cert, old), signing.Signing.Cert)

		By("done: the old CA leaves every bundle")
		done := advance(ctx, signer.PhaseSigning)
		expectSecrets(ctx, bundleOf(done.Signing.Cert), done.Signing.Cert)
	})
})
