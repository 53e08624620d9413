package proxyconfig_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
)

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// newMPC returns a ManagedProxyConfiguration as the Helm chart writes it,
// with its proxy-servers in namespace ns.
func newMPC(name, ns string) *proxyv1alpha1.ManagedProxyConfiguration {
	return &proxyv1alpha1.ManagedProxyConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
			ProxyServer: proxyv1alpha1.ManagedProxyConfigurationProxyServer{
				Image:     "quay.io/open-cluster-management/cluster-proxy:v1.0.0",
				Namespace: ns,
				Entrypoint: &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
					Type: proxyv1alpha1.EntryPointTypePortForward,
				},
			},
			ProxyAgent: proxyv1alpha1.ManagedProxyConfigurationProxyAgent{
				Image: "quay.io/open-cluster-management/cluster-proxy:v1.0.0",
			},
		},
	}
}

func createMPC(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration) {
	Expect(k8sClient.Create(ctx, mpc)).To(Succeed())
}

func deleteMPC(ctx context.Context, name string) {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, mpc))).To(Succeed())
}

func getMPC(ctx context.Context, name string) *proxyv1alpha1.ManagedProxyConfiguration {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	Expect(k8sClient.Get(ctx, types.NamespacedName{Name: name}, mpc)).To(Succeed())
	return mpc
}

// updateMPC applies change to the latest version of the object.
func updateMPC(ctx context.Context, name string, change func(*proxyv1alpha1.ManagedProxyConfiguration)) {
	Eventually(func() error {
		mpc := getMPC(ctx, name)
		change(mpc)
		return k8sClient.Update(ctx, mpc)
	}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
}

// poke makes the reconciler look at the object again without changing its
// spec (an annotation change is an update event).
func poke(ctx context.Context, name string) {
	updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) {
		if mpc.Annotations == nil {
			mpc.Annotations = map[string]string{}
		}
		mpc.Annotations["test/poke"] = fmt.Sprint(time.Now().UnixNano())
	})
}

// expectCondition waits until the condition has the status and reason.
func expectCondition(ctx context.Context, name, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	var cond *metav1.Condition
	Eventually(func(g Gomega) {
		mpc := getMPC(ctx, name)
		cond = meta.FindStatusCondition(mpc.Status.Conditions, typ)
		g.Expect(cond).NotTo(BeNil(), "condition %s not set; conditions: %v", typ, mpc.Status.Conditions)
		g.Expect(cond.Status).To(Equal(status), "condition %s: %s", typ, cond.Message)
		g.Expect(cond.Reason).To(Equal(reason), "condition %s: %s", typ, cond.Message)
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
	return cond
}

// waitObserved waits until the reconciler has completed the current
// generation.
func waitObserved(ctx context.Context, name string) {
	Eventually(func(g Gomega) {
		mpc := getMPC(ctx, name)
		g.Expect(mpc.Status.LastObservedGeneration).To(Equal(mpc.Generation))
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
}

func get(ctx context.Context, ns, name string, obj client.Object) error {
	return k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj)
}

func getDeployment(ctx context.Context, ns, name string) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	Eventually(get).WithContext(ctx).WithArguments(ns, name, d).WithTimeout(timeout).Should(Succeed())
	return d
}

// leaf is a certificate read from a kubernetes.io/tls Secret.
type leaf struct {
	cert   *x509.Certificate
	secret *corev1.Secret
}

func getLeaf(ctx context.Context, ns, name string) leaf {
	secret := &corev1.Secret{}
	Eventually(get).WithContext(ctx).WithArguments(ns, name, secret).WithTimeout(timeout).Should(Succeed())
	Expect(secret.Type).To(Equal(corev1.SecretTypeTLS))
	cert, err := certs.ParseCertificate(secret.Data[corev1.TLSCertKey])
	Expect(err).NotTo(HaveOccurred())
	return leaf{cert: cert, secret: secret}
}

// caOf returns the CA certificate published in the proxy-server-ca Secret.
func caOf(ctx context.Context, ns string) *x509.Certificate {
	secret := &corev1.Secret{}
	Eventually(get).WithContext(ctx).WithArguments(ns, "proxy-server-ca", secret).WithTimeout(timeout).Should(Succeed())
	Expect(secret.Data).To(HaveKey("ca.crt"))
	Expect(secret.Data).NotTo(HaveKey("ca.key"), "the CA's private key must never leave the signer Secret")
	ca, err := certs.ParseCertificate(secret.Data["ca.crt"])
	Expect(err).NotTo(HaveOccurred())
	return ca
}

// expectVerifies checks that l chains to ca for usage at the fake clock's time.
func expectVerifies(l leaf, ca *x509.Certificate, usage x509.ExtKeyUsage) {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := l.cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: fakeClock.Now()})
	Expect(err).NotTo(HaveOccurred(), "certificate %s does not verify against the CA", l.secret.Name)
}

func sans(c *x509.Certificate) []string {
	out := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func isOwnedBy(obj metav1.Object, mpc *proxyv1alpha1.ManagedProxyConfiguration) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == mpc.UID && ref.Kind == "ManagedProxyConfiguration" &&
		ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion
}

// pemCA is a CA in PEM form.
type pemCA struct {
	cert            *x509.Certificate
	certPEM, keyPEM []byte
}

// rsaCA makes a CA shaped like the existing addon's: RSA-2048, PKCS#8 key.
func rsaCA() pemCA {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "open-cluster-management:cluster-proxy"},
		NotBefore:             fakeClock.Now().Add(-time.Hour),
		NotAfter:              fakeClock.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pemCA{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// canI asks the API server whether user may verb resource (core group) in
// namespace.
func canI(ctx context.Context, user, namespace, verb, resource string) (bool, error) {
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: resource},
	}}
	if err := k8sClient.Create(ctx, review); err != nil {
		return false, err
	}
	return review.Status.Allowed, nil
}
