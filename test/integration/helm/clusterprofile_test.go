package helm_test

import (
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

var _ = Describe("featureGates.clusterProfile=true on a hub kube-apiserver with the ClusterProfile CRD", Ordered, Label("helm", "apiserver"), func() {
	var hub *hubEnv
	var objs rendered

	BeforeAll(func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		ocmCRDs, err := framework.OCMHubCRDs(dir)
		Expect(err).NotTo(HaveOccurred())
		profileCRD, err := framework.ClusterProfileCRDDir(dir)
		Expect(err).NotTo(HaveOccurred())
		server, err := framework.StartAPIServer(ocmCRDs, profileCRD)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(server.Stop)
		scheme, err := addonmanager.NewScheme()
		Expect(err).NotTo(HaveOccurred())
		c, err := client.New(server.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		hub = &hubEnv{server: server, cfg: server.Config, client: c, scheme: scheme}

		Expect(hub.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace}})).To(Succeed())
		objs = mustRender(ctx, append([]string{"--set", "featureGates.clusterProfile=true"}, userServerValues()...)...)
		hub.apply(ctx, objs)
	})

	It("lets the manager's ServiceAccount read ClusterProfiles and patch their status, and nothing more of them", func(ctx SpecContext) {
		for _, verb := range []string{"get", "list", "watch"} {
			Expect(hub.can(ctx, "open-cluster-management", verb, clusterProfileGroup, "clusterprofiles", "")).To(BeTrue(), verb)
		}
		Expect(hub.can(ctx, "open-cluster-management", "patch", clusterProfileGroup, "clusterprofiles/status", "")).To(BeTrue())
		for _, denied := range []struct{ verb, resource string }{
			{"create", "clusterprofiles"}, {"update", "clusterprofiles"}, {"patch", "clusterprofiles"},
			{"delete", "clusterprofiles"}, {"update", "clusterprofiles/status"},
		} {
			Expect(hub.can(ctx, "open-cluster-management", denied.verb, clusterProfileGroup, denied.resource, "")).To(BeFalse(),
				"%s %s must be denied", denied.verb, denied.resource)
		}
	})

	It("runs the addon-manager binary with the chart's flags under the chart's RBAC: the ClusterProfiles OCM manages get the user-server access provider", func(ctx SpecContext) {
		binary, err := framework.BuildBinary("./cmd/manager", "manager")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, filepath.Dir(binary))
		deployment := objs.deployment("cluster-proxy-addon-manager")
		container := containerNamed(deployment, "manager")
		Expect(container.Args).To(ContainElement("--feature-gates=ClusterProfile=true"))

		By("a token of the manager's ServiceAccount from the TokenRequest API")
		clientset, err := kubernetes.NewForConfig(hub.cfg)
		Expect(err).NotTo(HaveOccurred())
		tr, err := clientset.CoreV1().ServiceAccounts(releaseNamespace).CreateToken(ctx, deployment.Spec.Template.Spec.ServiceAccountName,
			&authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		data, err := framework.KubeconfigFor(&rest.Config{
			Host: hub.cfg.Host, TLSClientConfig: rest.TLSClientConfig{CAData: hub.cfg.CAData}, BearerToken: tr.Status.Token,
		})
		Expect(err).NotTo(HaveOccurred())
		logDir := GinkgoT().TempDir()
		kubeconfig := filepath.Join(logDir, "addon-manager.kubeconfig")
		Expect(os.WriteFile(kubeconfig, data, 0o600)).To(Succeed())

		By("starting it as the chart's container does, with that kubeconfig")
		healthPort, err := framework.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		args := append(append([]string{}, container.Args...),
			"--kubeconfig="+kubeconfig, "--metrics-bind-address=0",
			fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", healthPort))
		p, err := framework.StartProcess("manager-cluster-profile", binary, args, containerEnv(deployment, container), logDir)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		Expect(framework.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort), false, p)).To(Succeed(), "log:\n%s", p.LogTail(40))

		By("a ClusterProfile of OCM's getting the provider, with the CA of the user-server's certificate")
		c := hub.client
		Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "open-cluster-management"}})).To(Succeed())
		Expect(c.Create(ctx, &cpv1alpha1.ClusterProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: "open-cluster-management", Name: clusterName, Labels: map[string]string{
				cpv1alpha1.LabelClusterManagerKey:         "open-cluster-management",
				"open-cluster-management.io/cluster-name": clusterName,
			}},
			Spec: cpv1alpha1.ClusterProfileSpec{ClusterManager: cpv1alpha1.ClusterManager{Name: "open-cluster-management"}},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			secret := &corev1.Secret{}
			g.Expect(c.Get(ctx, types.NamespacedName{Namespace: releaseNamespace, Name: proxyv1alpha1.UserServerSecretName}, secret)).To(Succeed())
			profile := &cpv1alpha1.ClusterProfile{}
			g.Expect(c.Get(ctx, types.NamespacedName{Namespace: "open-cluster-management", Name: clusterName}, profile)).To(Succeed())
			g.Expect(profile.Status.AccessProviders).To(HaveLen(1))
			pr := profile.Status.AccessProviders[0]
			g.Expect(pr.Name).To(Equal("open-cluster-management"))
			g.Expect(pr.Cluster.Server).To(Equal("https://cluster-proxy-addon-user." + releaseNamespace + ":9092/" + clusterName))
			g.Expect(pr.Cluster.CertificateAuthorityData).To(Equal(secret.Data[proxyv1alpha1.CASecretKey]))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed(), "log:\n%s", p.LogTail(40))
		Expect(os.ReadFile(p.LogPath)).NotTo(ContainSubstring("forbidden"), "nothing the manager does is forbidden")
		Expect(p.Stop()).To(Succeed())
		Expect(p.ExitError()).NotTo(HaveOccurred())
	})
})
