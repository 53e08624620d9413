package carotation_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clocktesting "k8s.io/utils/clock/testing"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/carotation"
	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

const (
	signerNamespace = "ca-signer"
	proxyNamespace  = "ca-proxy"
	settle          = 2 * time.Minute
)

// upsert creates obj or updates it to obj's content.
func upsert(ctx context.Context, obj client.Object) {
	GinkgoHelper()
	err := k8sClient.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		current := obj.DeepCopyObject().(client.Object)
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), current)).To(Succeed())
		obj.SetResourceVersion(current.GetResourceVersion())
		err = k8sClient.Update(ctx, obj)
	}
	Expect(err).NotTo(HaveOccurred())
}

// world is what the rotation looks at: one ManagedProxyConfiguration with
// two proxy-servers, an online cluster1 and an offline cluster2.
type world struct {
	// rewrite writes the last reports again, as the proxy-servers do
	// every 30 s.
	rewrite func(ctx context.Context)
	clock   *clocktesting.FakeClock
	store   *signer.Store
	ctrl    *carotation.Controller
	mpc     *proxyv1alpha1.ManagedProxyConfiguration
}

func newWorld(ctx context.Context) *world {
	GinkgoHelper()
	w := &world{clock: clocktesting.NewFakeClock(time.Now())}
	for _, ns := range []string{signerNamespace, proxyNamespace, "cluster1", "cluster2"} {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	w.store = &signer.Store{Client: k8sClient, Namespace: signerNamespace, Name: "cluster-proxy-signer", Clock: w.clock}
	w.ctrl = &carotation.Controller{Store: w.store, Client: k8sClient, APIReader: k8sClient, Clock: w.clock, Settle: settle,
		ServiceProxyCertSecret: client.ObjectKey{Namespace: signerNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName},
		CertificateSecrets: func(mpc *proxyv1alpha1.ManagedProxyConfiguration) []client.ObjectKey {
			var keys []client.ObjectKey
			for _, cs := range proxyconfig.CertificateSecrets(mpc) {
				keys = append(keys, client.ObjectKey{Namespace: cs.Namespace, Name: cs.Name})
			}
			return keys
		}}
	Expect(w.ctrl.Validate()).To(Succeed())

	w.mpc = &proxyv1alpha1.ManagedProxyConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cluster-proxy"}}
	w.mpc.Spec.ProxyServer.Namespace = proxyNamespace
	w.mpc.Spec.ProxyServer.Replicas = 2
	w.mpc.Spec.ProxyServer.Image = "quay.io/open-cluster-management/cluster-proxy:test"
	w.mpc.Spec.ProxyAgent.Image = "quay.io/open-cluster-management/cluster-proxy:test"
	Expect(k8sClient.Create(ctx, w.mpc)).To(Succeed())

	for cluster, available := range map[string]metav1.ConditionStatus{"cluster1": metav1.ConditionTrue, "cluster2": metav1.ConditionFalse} {
		mc := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: cluster}, Spec: clusterv1.ManagedClusterSpec{HubAcceptsClient: true}}
		Expect(k8sClient.Create(ctx, mc)).To(Succeed())
		meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionAvailable,
			Status: available, Reason: "Test", Message: "set by the test"})
		Expect(k8sClient.Status().Update(ctx, mc)).To(Succeed())
		Expect(k8sClient.Create(ctx, &addonapiv1beta1.ManagedClusterAddOn{
			ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: "cluster-proxy"}})).To(Succeed())
	}
	return w
}

// pass lets d pass, the proxy-servers rewriting their reports.
func (w *world) pass(ctx context.Context, d time.Duration) {
	GinkgoHelper()
	w.clock.Step(d)
	w.rewrite(ctx)
}

// authority reads the CA Secret.
func (w *world) authority(ctx context.Context) *signer.Authority {
	GinkgoHelper()
	a, err := w.store.Authority(ctx)
	Expect(err).NotTo(HaveOccurred())
	return a
}

// step runs the controller once and returns the phase it left.
func (w *world) step(ctx context.Context) signer.Phase {
	GinkgoHelper()
	Expect(w.ctrl.Step(ctx)).To(Succeed())
	return w.authority(ctx).Phase
}

// expectWaiting runs a step and expects the phase kept, waiting for what.
func (w *world) expectWaiting(ctx context.Context, phase signer.Phase, what string) {
	GinkgoHelper()
	Expect(w.step(ctx)).To(Equal(phase))
	Expect(w.ctrl.Waiting()).To(ContainSubstring(what))
}

// writeHubSecrets writes the proxy-server CA Secret and the certificate
// Secrets as the ManagedProxyConfiguration reconciler would: leaves issued
// by issuer, ca.crt the bundle.
func (w *world) writeHubSecrets(ctx context.Context, issuer *certs.CA, bundle []byte) {
	GinkgoHelper()
	upsert(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: proxyNamespace, Name: proxyv1alpha1.CASecretName},
		Data: map[string][]byte{proxyv1alpha1.CASecretKey: bundle}})
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(w.mpc), mpc)).To(Succeed())
	for _, cs := range proxyconfig.CertificateSecrets(mpc) {
		certPEM, keyPEM, err := issuer.Issue(certs.LeafSpec{CommonName: cs.Name, SANs: []string{"localhost"}, Usage: certs.UsageServing}, w.clock.Now())
		Expect(err).NotTo(HaveOccurred())
		upsert(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: cs.Namespace, Name: cs.Name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, proxyv1alpha1.CASecretKey: bundle}})
	}
	certPEM, keyPEM, err := issuer.Issue(certs.LeafSpec{CommonName: "service-proxy", SANs: []string{"localhost"}, Usage: certs.UsageServing}, w.clock.Now())
	Expect(err).NotTo(HaveOccurred())
	upsert(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: signerNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, proxyv1alpha1.CASecretKey: bundle}})
}

// writeReports writes the reports of both proxy-servers, dated now: they
// trust the CAs trusted, serve certificates of serving, and see
// cluster1's agent with a certificate of agentCA.
func (w *world) writeReports(ctx context.Context, trusted []*x509.Certificate, serving, agentCA *x509.Certificate) {
	GinkgoHelper()
	w.rewrite = func(ctx context.Context) { w.writeReports(ctx, trusted, serving, agentCA) }
	for _, pod := range []string{"cluster-proxy-a", "cluster-proxy-b"} {
		r := healthreport.Report{Version: healthreport.Version, ServerID: pod, ServerCount: 2, UpdateTime: w.clock.Now(),
			ServingSigners: []string{identity.SignerOU(serving)},
			Clusters: []healthreport.Cluster{{Name: "cluster1", Agents: 1, Certificate: &healthreport.Certificate{
				NotBefore: w.clock.Now().Add(-time.Hour), NotAfter: w.clock.Now().Add(time.Hour), Serial: "1a", Signer: identity.SignerOU(agentCA),
			}}}}
		for _, c := range trusted {
			r.TrustedSigners = append(r.TrustedSigners, identity.SignerOU(c))
		}
		data, err := healthreport.Encode(r)
		Expect(err).NotTo(HaveOccurred())
		upsert(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: proxyNamespace, Name: healthreport.ConfigMapName(pod),
			Labels: healthreport.Labels()}, Data: map[string]string{healthreport.DataKey: string(data)}})
	}
}

// writeWork writes cluster's agent ManifestWork with the CA bundle and a
// service-proxy certificate issued by issuer, and marks it applied (or
// not).
func (w *world) writeWork(ctx context.Context, cluster string, bundle []byte, issuer *certs.CA, applied bool) {
	GinkgoHelper()
	certPEM, _, err := issuer.Issue(certs.LeafSpec{CommonName: "service-proxy", SANs: []string{"localhost"}, Usage: certs.UsageServing}, w.clock.Now())
	Expect(err).NotTo(HaveOccurred())
	b64 := base64.StdEncoding.EncodeToString
	work := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "work.open-cluster-management.io/v1", "kind": "ManifestWork",
		"metadata": map[string]any{"namespace": cluster, "name": "addon-cluster-proxy-deploy-0",
			"labels": map[string]any{addonapiv1beta1.AddonLabelKey: "cluster-proxy"}},
		"spec": map[string]any{"workload": map[string]any{"manifests": []any{
			map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "cluster-proxy-ca"},
				"data": map[string]any{"ca.crt": b64(bundle)}},
			map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "cluster-proxy-service-proxy-server-certificates"},
				"data": map[string]any{"tls.crt": b64(certPEM), "ca.crt": b64(bundle)}},
		}}},
	}}
	upsert(ctx, work)
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(work), work)).To(Succeed())
	status := metav1.ConditionFalse
	if applied {
		status = metav1.ConditionTrue
	}
	Expect(unstructured.SetNestedSlice(work.Object, []any{map[string]any{
		"type": "Applied", "status": string(status), "reason": "Test", "message": "set by the test",
		"observedGeneration": work.GetGeneration(), "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}}, "status", "conditions")).To(Succeed())
	Expect(k8sClient.Status().Update(ctx, work)).To(Succeed())
}

var _ = Describe("The CA rotation controller", Label("carotation"), Ordered, func() {
	var w *world
	var old *signer.Authority

	BeforeAll(func(ctx SpecContext) {
		w = newWorld(ctx)
		old = w.authority(ctx)
		w.writeHubSecrets(ctx, old.Signing, old.BundlePEM())
		w.writeReports(ctx, []*x509.Certificate{old.Signing.Cert}, old.Signing.Cert, old.Signing.Cert)
		w.writeWork(ctx, "cluster1", old.BundlePEM(), old.Signing, true)
	})

	It("does nothing while the CA is young and no rotation is asked for", func(ctx SpecContext) {
		Expect(w.step(ctx)).To(Equal(signer.PhaseNone))
		Expect(w.ctrl.Waiting()).To(BeEmpty())
	})

	var trusting *signer.Authority
	It("starts a rotation when the signer Secret asks for one, and marks the request handled", func(ctx SpecContext) {
		secret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: signerNamespace, Name: "cluster-proxy-signer"}, secret)).To(Succeed())
		secret.Annotations = map[string]string{signer.AnnotationRotate: "ticket-42"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		w.clock.Step(time.Minute)
		Expect(w.step(ctx)).To(Equal(signer.PhaseTrusting))
		trusting = w.authority(ctx)
		Expect(trusting.Signing.Cert.Equal(old.Signing.Cert)).To(BeTrue(), "the old CA still signs")
		Expect(w.store.Trusted()).To(HaveLen(2), "the store says both CAs are trusted (the addon health controller asks it)")
		Expect(trusting.RotateRequested).To(BeEmpty(), "the request is handled")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		Expect(secret.Annotations).To(HaveKeyWithValue(signer.AnnotationRotateHandled, "ticket-42"))
	})

	It("lets the new CA sign only once every hub bundle, every proxy-server and every online cluster's applied ManifestWork trusts it, and the kubelets had time", func(ctx SpecContext) {
		bundle := trusting.BundlePEM()
		w.clock.Step(time.Minute)
		w.expectWaiting(ctx, signer.PhaseTrusting, "Secret ca-proxy/proxy-server-ca: its ca.crt is not the CA bundle yet")

		w.writeHubSecrets(ctx, old.Signing, bundle)
		By("reports from before the phase do not count")
		w.expectWaiting(ctx, signer.PhaseTrusting, "0 of the 2 proxy-servers of ManagedProxyConfiguration cluster-proxy reported since the phase began")

		w.clock.Step(time.Second)
		w.writeReports(ctx, []*x509.Certificate{old.Signing.Cert}, old.Signing.Cert, old.Signing.Cert)
		w.expectWaiting(ctx, signer.PhaseTrusting, "it does not trust the new CA yet")
		w.writeReports(ctx, trusting.Trusted(), old.Signing.Cert, old.Signing.Cert)
		w.expectWaiting(ctx, signer.PhaseTrusting, "the agents of cluster cluster1: its cluster-proxy-ca Secret does not hold the CA bundle yet")

		w.writeWork(ctx, "cluster1", bundle, old.Signing, false)
		w.expectWaiting(ctx, signer.PhaseTrusting, "ManifestWork cluster1/addon-cluster-proxy-deploy-0: generation")
		w.writeWork(ctx, "cluster1", bundle, old.Signing, true)
		w.expectWaiting(ctx, signer.PhaseTrusting, "giving the kubelets")

		By("cluster2 is offline: its missing ManifestWork holds nothing up; the kubelets get their time")
		w.pass(ctx, settle-time.Second)
		w.expectWaiting(ctx, signer.PhaseTrusting, "giving the kubelets 1s")
		w.pass(ctx, time.Second)
		Expect(w.step(ctx)).To(Equal(signer.PhaseSigning))
		signing := w.authority(ctx)
		Expect(signing.Signing.Cert.Equal(trusting.Next.Cert)).To(BeTrue(), "the new CA signs")
		Expect(signing.BundlePEM()).To(Equal(append(certs.EncodeCertificate(trusting.Next.Cert), certs.EncodeCertificate(old.Signing.Cert)...)))
	})

	It("drops the old CA only once every hub certificate, every proxy-server's serving certificate, every connected agent's and every online cluster's service-proxy certificate are the new CA's", func(ctx SpecContext) {
		signing := w.authority(ctx)
		bundle := signing.BundlePEM()
		w.clock.Step(time.Minute)
		w.expectWaiting(ctx, signer.PhaseSigning, "Secret ca-signer/cluster-proxy-service-proxy-server-cert: its certificate (serial")

		w.writeHubSecrets(ctx, signing.Signing, bundle)
		w.expectWaiting(ctx, signer.PhaseSigning, "proxy-servers of ManagedProxyConfiguration cluster-proxy reported since the phase began")

		w.clock.Step(time.Second)
		w.writeReports(ctx, signing.Trusted(), signing.Previous, signing.Previous)
		w.expectWaiting(ctx, signer.PhaseSigning, "not only of the new CA")
		w.writeReports(ctx, signing.Trusted(), signing.Signing.Cert, signing.Previous)
		w.expectWaiting(ctx, signer.PhaseSigning, "the proxy-agent of cluster1 holds a certificate of another CA")
		w.writeReports(ctx, signing.Trusted(), signing.Signing.Cert, signing.Signing.Cert)
		w.expectWaiting(ctx, signer.PhaseSigning, "the agents of cluster cluster1: its service-proxy certificate: its certificate (serial")

		w.writeWork(ctx, "cluster1", bundle, signing.Signing, true)
		w.expectWaiting(ctx, signer.PhaseSigning, "giving the kubelets")
		w.pass(ctx, settle)
		Expect(w.step(ctx)).To(Equal(signer.PhaseNone))
		done := w.authority(ctx)
		Expect(done.Trusted()).To(HaveLen(1))
		Expect(w.store.Trusted()).To(HaveLen(1))
		Expect(done.Signing.Cert.Equal(signing.Signing.Cert)).To(BeTrue())
		Expect(done.BundlePEM()).To(Equal(certs.EncodeCertificate(signing.Signing.Cert)), "the old CA is no longer trusted")
	})

	It("does not rotate again for a request it handled, and rotates by itself once the CA is past 80% of its lifetime", func(ctx SpecContext) {
		Expect(w.step(ctx)).To(Equal(signer.PhaseNone))
		ca := w.authority(ctx).Signing.Cert
		w.clock.SetTime(certs.RenewAt(ca).Add(-time.Minute))
		Expect(w.step(ctx)).To(Equal(signer.PhaseNone))
		w.clock.SetTime(certs.RenewAt(ca))
		Expect(w.step(ctx)).To(Equal(signer.PhaseTrusting))
	})
})

var _ = Describe("Advancing a CA rotation", Label("carotation"), func() {
	It("moves one phase once when several managers advance at the same time; the others get a conflict", func(ctx SpecContext) {
		const racers = 6
		clock := clocktesting.NewFakeClock(time.Now())
		stores := make([]*signer.Store, racers)
		for i := range stores {
			c, err := client.New(apiServer.Config, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
			stores[i] = &signer.Store{Client: c, Namespace: "default", Name: "raced-rotation", Clock: clock}
		}
		before, err := stores[0].Authority(ctx)
		Expect(err).NotTo(HaveOccurred())
		results := make(chan error, racers)
		start := make(chan struct{})
		for _, s := range stores {
			go func() {
				<-start
				_, err := s.Advance(ctx, signer.PhaseNone)
				results <- err
			}()
		}
		close(start)
		won := 0
		for range racers {
			if err := <-results; err == nil {
				won++
			} else {
				Expect(err).To(Or(
					MatchError(ContainSubstring("the object has been modified")),
					MatchError(ContainSubstring(`is in rotation phase "Trusting", not ""`)),
				))
			}
		}
		Expect(won).To(Equal(1))
		after, err := stores[0].Authority(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(after.Phase).To(Equal(signer.PhaseTrusting))
		Expect(after.Signing.Cert.Equal(before.Signing.Cert)).To(BeTrue())
	})
})
