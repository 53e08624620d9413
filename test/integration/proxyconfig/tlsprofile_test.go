package proxyconfig_test

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

var _ = Describe("The OCM TLS profile", Label("proxyconfig", "tls-profile"), func() {
	const name, ns = "tls-profile", "proxy-tls"

	// tlsArgs are the proxy-server's TLS flags in the Deployment.
	tlsArgs := func(ctx context.Context) []string {
		var out []string
		for _, arg := range getDeployment(ctx, ns, name).Spec.Template.Spec.Containers[0].Args {
			if strings.HasPrefix(arg, "--tls-min-version=") || strings.HasPrefix(arg, "--cipher-suites=") {
				out = append(out, arg)
			}
		}
		return out
	}
	profile := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: proxyconfig.TLSProfileConfigMapName}}
	setProfile := func(ctx context.Context, data map[string]string) {
		Eventually(func() error {
			cm := &corev1.ConfigMap{}
			if err := get(ctx, managerNamespace, profile.Name, cm); err != nil {
				return err
			}
			cm.Data = data
			return k8sClient.Update(ctx, cm)
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	}

	It("is rendered into the proxy-server's flags as the ConfigMap comes, changes and goes, and a bad value is explained without touching the Deployment", func(ctx SpecContext) {
		createMPC(ctx, newMPC(name, ns))
		DeferCleanup(deleteMPC, name)
		DeferCleanup(func(ctx SpecContext) {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, profile.DeepCopy()))).To(Succeed())
		})

		By("absent: the defaults the existing addon passes (TLS 1.2, no cipher suites flag)")
		Expect(apierrors.IsNotFound(get(ctx, managerNamespace, profile.Name, &corev1.ConfigMap{}))).To(BeTrue(), "no ConfigMap at the start")
		waitObserved(ctx, name)
		Expect(tlsArgs(ctx)).To(Equal([]string{"--tls-min-version=VersionTLS12"}))

		By("created: its values")
		cm := profile.DeepCopy()
		cm.Data = map[string]string{"minTLSVersion": "VersionTLS13"}
		Expect(k8sClient.Create(ctx, cm)).To(Succeed())
		Eventually(tlsArgs).WithContext(ctx).WithTimeout(timeout).Should(Equal([]string{"--tls-min-version=VersionTLS13"}))

		By("changed: the new values; a key left out gets its default")
		setProfile(ctx, map[string]string{"cipherSuites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"})
		Eventually(tlsArgs).WithContext(ctx).WithTimeout(timeout).Should(Equal([]string{
			"--tls-min-version=VersionTLS12",
			"--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		}))
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullyDeployed)
		good := getDeployment(ctx, ns, name)

		By("an invalid minTLSVersion: the condition names the key and the value, the Deployment stays")
		setProfile(ctx, map[string]string{"minTLSVersion": "TLS9000", "cipherSuites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"})
		cond := expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionFalse, proxyconfig.ReasonInvalidTLSProfile)
		Expect(cond.Message).To(And(ContainSubstring(managerNamespace+"/ocm-tls-profile"), ContainSubstring(`invalid minTLSVersion "TLS9000"`)))
		Consistently(func() int64 { return getDeployment(ctx, ns, name).Generation }).
			WithContext(ctx).WithTimeout(2*time.Second).Should(Equal(good.Generation), "a bad profile must not touch the running Deployment")
		Expect(getDeployment(ctx, ns, name).Spec.Template.Spec.Containers[0].Args).To(Equal(good.Spec.Template.Spec.Containers[0].Args))

		By("an insecure cipher suite (the proxy-server would refuse to start): named, the Deployment stays")
		setProfile(ctx, map[string]string{"cipherSuites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_SHA"})
		Eventually(func(g Gomega) {
			cond := meta.FindStatusCondition(getMPC(ctx, name).Status.Conditions, proxyv1alpha1.ConditionTypeProxyServerDeployed)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Reason).To(Equal(proxyconfig.ReasonInvalidTLSProfile))
			g.Expect(cond.Message).To(ContainSubstring(`invalid cipherSuites "TLS_RSA_WITH_RC4_128_SHA": insecure`))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
		Expect(getDeployment(ctx, ns, name).Generation).To(Equal(good.Generation))

		By("fixed (in sdk-go's alias spelling): deployed again, with the flag as the proxy-server spells it")
		setProfile(ctx, map[string]string{"minTLSVersion": "TLSv1.3"})
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullyDeployed)
		Eventually(tlsArgs).WithContext(ctx).WithTimeout(timeout).Should(Equal([]string{"--tls-min-version=VersionTLS13"}))

		By("deleted: the defaults again")
		Expect(k8sClient.Delete(ctx, profile.DeepCopy())).To(Succeed())
		Eventually(tlsArgs).WithContext(ctx).WithTimeout(timeout).Should(Equal([]string{"--tls-min-version=VersionTLS12"}))
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullyDeployed)
	})
})
