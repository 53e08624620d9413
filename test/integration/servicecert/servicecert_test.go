package servicecert_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const timeout = 30 * time.Second

// certSecret returns the certificate Secret of namespace, or an error.
func certSecret(ctx context.Context, namespace string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := k8sClient.Get(ctx, types.NamespacedName{Namespace: namespace, Name: proxyv1alpha1.ServiceProxyCertSecretName}, s)
	return s, err
}

// issued returns the certificate in the Secret of namespace, checked
// against the CA in that namespace's signer Secret.
func issued(ctx context.Context, namespace string) (*x509.Certificate, error) {
	s, err := certSecret(ctx, namespace)
	if err != nil {
		return nil, err
	}
	caSecret := &corev1.Secret{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: namespace, Name: signerSecretName}, caSecret); err != nil {
		return nil, err
	}
	if s.Type != corev1.SecretTypeTLS {
		return nil, fmt.Errorf("type %s", s.Type)
	}
	if string(s.Data[proxyv1alpha1.CASecretKey]) != string(caSecret.Data[signer.CertKey]) {
		return nil, fmt.Errorf("ca.crt is not the signer's CA")
	}
	cert, err := certs.ParseCertificate(s.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, err
	}
	ca, err := certs.ParseCA(caSecret.Data[signer.CertKey], caSecret.Data[signer.KeyKey])
	if err != nil {
		return nil, err
	}
	return cert, cert.CheckSignatureFrom(ca.Cert)
}

var _ = Describe("The service-proxy certificate", Label("servicecert"), Ordered, func() {
	var first *x509.Certificate

	It("is issued at start, signed by the CA, for every name the service-proxy is reached by", func(ctx SpecContext) {
		Eventually(issued).WithContext(ctx).WithArguments(inProcessNamespace).WithTimeout(timeout).Should(Not(BeNil()))
		first, _ = issued(ctx, inProcessNamespace)
		Expect(first.DNSNames).To(ConsistOf("*", "localhost", "*.open-cluster-management.proxy"))
		Expect(first.IPAddresses).To(HaveLen(1))
		Expect(first.IPAddresses[0].String()).To(Equal("127.0.0.1"))
		Expect(first.ExtKeyUsage).To(ConsistOf(x509.ExtKeyUsageServerAuth))
		Expect(first.NotAfter.Sub(first.NotBefore)).To(BeNumerically("~", certs.LeafValidity, 2*time.Minute))
	})

	It("is reissued once past 80% of its lifetime", func(ctx SpecContext) {
		fakeClock.SetTime(first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) * 81 / 100))
		// The reconciler's own requeue runs on real time; a change to the
		// Secret wakes it as a renewal deadline would.
		s, err := certSecret(ctx, inProcessNamespace)
		Expect(err).NotTo(HaveOccurred())
		s.Annotations = map[string]string{"example.com/touched": "1"}
		Expect(k8sClient.Update(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			cert, err := issued(ctx, inProcessNamespace)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cert.SerialNumber).NotTo(Equal(first.SerialNumber))
			g.Expect(cert.NotBefore).To(BeTemporally("~", fakeClock.Now().Add(-time.Minute), time.Second))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		first, _ = issued(ctx, inProcessNamespace)
	})

	It("is reissued at once when the CA changes", func(ctx SpecContext) {
		ca, err := certs.NewCA(certs.CACommonName, fakeClock.Now(), certs.CAValidity)
		Expect(err).NotTo(HaveOccurred())
		caSecret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: inProcessNamespace, Name: signerSecretName}, caSecret)).To(Succeed())
		caSecret.Data = map[string][]byte{signer.CertKey: ca.CertPEM, signer.KeyKey: ca.KeyPEM}
		Expect(k8sClient.Update(ctx, caSecret)).To(Succeed())
		Eventually(func(g Gomega) {
			cert, err := issued(ctx, inProcessNamespace)
			g.Expect(err).NotTo(HaveOccurred(), "signed by the new CA, with the new ca.crt")
			g.Expect(cert.CheckSignatureFrom(ca.Cert)).To(Succeed())
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})

	It("follows a CA rotation: trusts the next CA with the same certificate, is reissued by it once it signs, and drops the old CA at the end", func(ctx SpecContext) {
		store := &signer.Store{Client: k8sClient, Namespace: inProcessNamespace, Name: signerSecretName, Clock: fakeClock}
		before, err := certSecret(ctx, inProcessNamespace)
		Expect(err).NotTo(HaveOccurred())
		oldCA, err := certs.ParseCertificate(before.Data[proxyv1alpha1.CASecretKey])
		Expect(err).NotTo(HaveOccurred())
		bundle := func(cas ...*x509.Certificate) []byte {
			var out []byte
			for _, c := range cas {
				out = append(out, certs.EncodeCertificate(c)...)
			}
			return out
		}

		By("Trusting: the bundle gains the next CA, the certificate stays")
		trusting, err := store.Advance(ctx, signer.PhaseNone)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			s, err := certSecret(ctx, inProcessNamespace)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.Data[proxyv1alpha1.CASecretKey]).To(Equal(bundle(oldCA, trusting.Next.Cert)))
			g.Expect(s.Data[corev1.TLSCertKey]).To(Equal(before.Data[corev1.TLSCertKey]), "not reissued for a bundle change")
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		By("Signing: reissued by the new CA, both still trusted")
		signing, err := store.Advance(ctx, signer.PhaseTrusting)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			s, err := certSecret(ctx, inProcessNamespace)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.Data[proxyv1alpha1.CASecretKey]).To(Equal(bundle(signing.Signing.Cert, oldCA)))
			cert, err := certs.ParseCertificate(s.Data[corev1.TLSCertKey])
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cert.CheckSignatureFrom(signing.Signing.Cert)).To(Succeed())
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		By("done: the old CA leaves the bundle")
		_, err = store.Advance(ctx, signer.PhaseSigning)
		Expect(err).NotTo(HaveOccurred())
		Eventually(issued).WithContext(ctx).WithArguments(inProcessNamespace).WithTimeout(timeout).Should(
			WithTransform(func(c *x509.Certificate) error { return c.CheckSignatureFrom(signing.Signing.Cert) }, Succeed()))

		By("refusing to advance from a phase the Secret is not in")
		_, err = store.Advance(ctx, signer.PhaseTrusting)
		Expect(err).To(MatchError(ContainSubstring(`is in rotation phase "", not "Trusting"`)))
	})

	It("comes back when deleted, and replaces a Secret of the wrong type", func(ctx SpecContext) {
		s, err := certSecret(ctx, inProcessNamespace)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		Eventually(issued).WithContext(ctx).WithArguments(inProcessNamespace).WithTimeout(timeout).Should(Not(BeNil()))

		s, err = certSecret(ctx, inProcessNamespace)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		opaque := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: inProcessNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName},
			Data:       map[string][]byte{"tls.crt": []byte("not a certificate")},
		}
		// The controller may recreate it first; either way it ends up right.
		_ = k8sClient.Create(ctx, opaque)
		Eventually(issued).WithContext(ctx).WithArguments(inProcessNamespace).WithTimeout(timeout).Should(Not(BeNil()))
	})
})

var _ = Describe("cluster-proxy controllers", Label("servicecert"), func() {
	It("creates the CA and the certificate in the namespaces its flags name, and stops on SIGTERM", func(ctx SpecContext) {
		port, err := framework.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		p, err := framework.StartProcess("controllers", binary, []string{
			"controllers", "--kubeconfig=" + kubeConfigPath,
			"--certificates-namespace=" + binaryNamespace, "--signer-secret-namespace=" + binaryNamespace,
			"--metrics-addr=0", fmt.Sprintf("--health-probe-addr=127.0.0.1:%d", port),
			"--enable-leader-election", "--agent-image=ignored",
		}, []string{"POD_NAMESPACE=" + binaryNamespace}, logDir)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		Expect(framework.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), false, p)).To(Succeed())
		Eventually(issued).WithContext(ctx).WithArguments(binaryNamespace).WithTimeout(timeout).Should(Not(BeNil()),
			"log:\n%s", p.LogTail(40))
		Expect(p.LogTail(200)).To(ContainSubstring("Flag --agent-image has been deprecated, it has no effect"))
		Expect(p.Stop()).To(Succeed())
		Expect(p.Done()).To(BeClosed())
	})

	It("refuses leader election without POD_NAMESPACE, naming what is missing", func(ctx SpecContext) {
		p, err := framework.StartProcess("controllers-bad", binary, []string{
			"controllers", "--kubeconfig=" + kubeConfigPath, "--enable-leader-election", "--metrics-addr=0", "--health-probe-addr=0",
		}, []string{"POD_NAMESPACE="}, logDir)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		Eventually(p.Done()).WithTimeout(timeout).Should(BeClosed())
		Expect(p.ExitError()).To(HaveOccurred())
		Expect(p.LogTail(20)).To(ContainSubstring("cluster-proxy controllers: --enable-leader-election needs environment variable POD_NAMESPACE"))
	})

	It("fails without a subcommand, printing the commands", func(ctx SpecContext) {
		p, err := framework.StartProcess("cluster-proxy", binary, nil, nil, logDir)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		Eventually(p.Done()).WithTimeout(timeout).Should(BeClosed())
		Expect(p.ExitError()).To(HaveOccurred())
		Expect(p.LogTail(40)).To(And(ContainSubstring("controllers"), ContainSubstring("a subcommand is required")))
	})
})
