package helm_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// releaseStatus is what `helm status -o json` says of a release.
type releaseStatus struct {
	Version int `json:"version"`
	Info    struct {
		Status string `json:"status"`
	} `json:"info"`
}

var _ = Describe("Installing the chart with the Helm CLI", Ordered, Label("helm", "install"), func() {
	var (
		c          client.Client
		kubeconfig string
	)

	// helmAt runs helm against the test API server, in the release namespace.
	helmAt := func(ctx context.Context, args ...string) (string, error) {
		return runHelm(ctx, append(args, "--kubeconfig", kubeconfig, "--namespace", releaseNamespace)...)
	}
	status := func(ctx context.Context) releaseStatus {
		out, err := helmAt(ctx, "status", releaseName, "--output", "json")
		Expect(err).NotTo(HaveOccurred())
		var s releaseStatus
		Expect(json.Unmarshal([]byte(out), &s)).To(Succeed())
		return s
	}
	exists := func(ctx context.Context, namespace, name string, obj client.Object) error {
		return c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj)
	}

	BeforeAll(func() {
		ocmCRDs, err := framework.OCMHubCRDs(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		hub, err := framework.StartAPIServer(ocmCRDs)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(hub.Stop)
		kubeconfig = filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kubeconfig, hub.KubeConfig, 0o600)).To(Succeed())

		scheme := runtime.NewScheme()
		for _, add := range []func(*runtime.Scheme) error{
			clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, proxyv1alpha1.AddToScheme,
			addonapiv1beta1.Install, clusterv1beta1.Install, clusterv1beta2.Install,
		} {
			Expect(add(scheme)).To(Succeed())
		}
		c, err = client.New(hub.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
	})

	It("installs: helm install -n open-cluster-management-addon --create-namespace cluster-proxy charts/cluster-proxy", func(ctx SpecContext) {
		_, err := helmAt(ctx, "install", releaseName, chartDir, "--create-namespace")
		Expect(err).NotTo(HaveOccurred())
		s := status(ctx)
		Expect(s.Info.Status).To(Equal("deployed"))
		Expect(s.Version).To(Equal(1))

		Expect(exists(ctx, "", "managedproxyconfigurations.proxy.open-cluster-management.io", &apiextensionsv1.CustomResourceDefinition{})).To(Succeed())
		Expect(exists(ctx, releaseNamespace, "cluster-proxy-addon-manager", &appsv1.Deployment{})).To(Succeed())
		Expect(exists(ctx, releaseNamespace, "cluster-proxy-addon-manager", &corev1.ServiceAccount{})).To(Succeed())
		Expect(exists(ctx, "", "open-cluster-management:cluster-proxy:addon-manager", &rbacv1.ClusterRoleBinding{})).To(Succeed())
		Expect(exists(ctx, releaseNamespace, "open-cluster-management:cluster-proxy:addon-manager", &rbacv1.RoleBinding{})).To(Succeed())
		Expect(exists(ctx, "", "cluster-proxy", &addonapiv1beta1.ClusterManagementAddOn{})).To(Succeed())
		Expect(exists(ctx, releaseNamespace, "cluster-proxy-placement", &clusterv1beta1.Placement{})).To(Succeed())
		Expect(exists(ctx, releaseNamespace, "global", &clusterv1beta2.ManagedClusterSetBinding{})).To(Succeed())
		mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(exists(ctx, "", proxyv1alpha1.DefaultName, mpc)).To(Succeed())
		Expect(mpc.Spec.ProxyServer.Namespace).To(Equal(releaseNamespace))
		Expect(mpc.Spec.ProxyServer.Entrypoint.Type).To(Equal(proxyv1alpha1.EntryPointTypePortForward))
		Expect(mpc.Spec.Authentication.Dump.Secrets.SigningProxyServerSecretName).To(Equal("proxy-server"), "the CRD's defaults apply")
	})

	It("upgrades to other values", func(ctx SpecContext) {
		_, err := helmAt(ctx, "upgrade", releaseName, chartDir,
			"--set", "networkPolicies.enabled=true,proxyServer.entrypointAddress=proxy.hub.example.com,installByPlacement.placementName=mine")
		Expect(err).NotTo(HaveOccurred())
		s := status(ctx)
		Expect(s.Info.Status).To(Equal("deployed"))
		Expect(s.Version).To(Equal(2))

		Expect(exists(ctx, releaseNamespace, "cluster-proxy-addon-manager", &networkingv1.NetworkPolicy{})).To(Succeed())
		Expect(exists(ctx, releaseNamespace, "cluster-proxy-proxy-server", &networkingv1.NetworkPolicy{})).To(Succeed())
		mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(exists(ctx, "", proxyv1alpha1.DefaultName, mpc)).To(Succeed())
		Expect(mpc.Spec.ProxyServer.Entrypoint.Type).To(Equal(proxyv1alpha1.EntryPointTypeHostname))
		Expect(mpc.Spec.UserServer).To(BeNil())
		Expect(apierrors.IsNotFound(exists(ctx, releaseNamespace, "cluster-proxy-placement", &clusterv1beta1.Placement{}))).To(BeTrue(),
			"the chart's own Placement goes when a Placement is given")
	})

	It("refuses an upgrade with bad values, leaving the release as it was", func(ctx SpecContext) {
		_, err := helmAt(ctx, "upgrade", releaseName, chartDir, "--set-string", "replicas=three")
		Expect(err).To(MatchError(ContainSubstring("at '/replicas': got string, want integer")))
		s := status(ctx)
		Expect(s.Info.Status).To(Equal("deployed"))
		Expect(s.Version).To(Equal(2))
	})

	It("refuses an upgrade to a value that needs another, naming the value, leaving the release as it was", func(ctx SpecContext) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--set", "userServer.enabled=true"}, userServerNeedsServiceProxy},
			{[]string{"--set-json", `exposedServices=[{"namespace":"monitoring","service":"prometheus-k8s"}]`}, exposedServicesNeedUserServer},
			{[]string{"--set", "enableServiceProxy=true,userServer.additionalSANs={user.hub.example.com}"}, sansNeedUserServer},
			{[]string{"--set", "featureGates.clusterProfile=true"}, clusterProfileNeedsUserServer},
		} {
			_, err := helmAt(ctx, append([]string{"upgrade", releaseName, chartDir, "--reuse-values"}, c.args...)...)
			Expect(err).To(MatchError(ContainSubstring(c.want)), "%v", c.args)
			s := status(ctx)
			Expect(s.Info.Status).To(Equal("deployed"), "%v", c.args)
			Expect(s.Version).To(Equal(2), "%v", c.args)
		}
		Expect(exists(ctx, releaseNamespace, "cluster-proxy-addon-user", &appsv1.Deployment{})).To(Satisfy(apierrors.IsNotFound),
			"a refused upgrade switching the service-proxy on too adds nothing")
		Expect(exists(ctx, releaseNamespace, "cluster-proxy-addon-user", &corev1.Service{})).To(Satisfy(apierrors.IsNotFound),
			"a refused upgrade switching the user-server on too adds nothing")
	})

	It("uninstalls, keeping the CRD", func(ctx SpecContext) {
		_, err := helmAt(ctx, "uninstall", releaseName)
		Expect(err).NotTo(HaveOccurred())
		for _, o := range []struct {
			namespace, name string
			obj             client.Object
		}{
			{releaseNamespace, "cluster-proxy-addon-manager", &appsv1.Deployment{}},
			{releaseNamespace, "cluster-proxy-addon-manager", &networkingv1.NetworkPolicy{}},
			{"", "open-cluster-management:cluster-proxy:addon-manager", &rbacv1.ClusterRole{}},
			{"", "cluster-proxy", &addonapiv1beta1.ClusterManagementAddOn{}},
			{"", proxyv1alpha1.DefaultName, &proxyv1alpha1.ManagedProxyConfiguration{}},
		} {
			Eventually(func() bool {
				return apierrors.IsNotFound(exists(ctx, o.namespace, o.name, o.obj))
			}).WithContext(ctx).WithTimeout(timeout).Should(BeTrue(), "%T %s/%s", o.obj, o.namespace, o.name)
		}
		Expect(exists(ctx, "", "managedproxyconfigurations.proxy.open-cluster-management.io", &apiextensionsv1.CustomResourceDefinition{})).To(Succeed(),
			"helm never deletes CRDs from crds/")
	})
})
