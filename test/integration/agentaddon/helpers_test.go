package agentaddon_test

import (
	"context"
	"errors"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

const (
	timeout  = 30 * time.Second
	interval = 200 * time.Millisecond
	// workName is the ManifestWork the addon-framework renders the agent into.
	workName = "addon-cluster-proxy-deploy-0"
)

func clusterManagementAddOn() *addonapiv1beta1.ClusterManagementAddOn {
	return &addonapiv1beta1.ClusterManagementAddOn{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "cluster-proxy",
			Annotations: map[string]string{"addon.open-cluster-management.io/lifecycle": "addon-manager"},
		},
		Spec: addonapiv1beta1.ClusterManagementAddOnSpec{
			AddOnMeta: addonapiv1beta1.AddOnMeta{DisplayName: "cluster-proxy", Description: "cluster-proxy"},
			DefaultConfigs: []addonapiv1beta1.AddOnConfig{{
				ConfigGroupResource: addonapiv1beta1.ConfigGroupResource{Group: proxyv1alpha1.GroupName, Resource: "managedproxyconfigurations"},
				ConfigReferent:      addonapiv1beta1.ConfigReferent{Name: "cluster-proxy"},
			}},
			// The test creates the ManagedClusterAddOns itself.
			InstallStrategy: addonapiv1beta1.InstallStrategy{Type: addonapiv1beta1.AddonInstallStrategyManual},
		},
	}
}

// createCluster creates a ManagedCluster and its namespace.
func createCluster(ctx context.Context, name string, accepted bool) {
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	Expect(k8sClient.Create(ctx, &clusterv1.ManagedCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: accepted},
	})).To(Succeed())
}

func newMPC(name string, entrypoint *proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint) *proxyv1alpha1.ManagedProxyConfiguration {
	return &proxyv1alpha1.ManagedProxyConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
			ProxyServer: proxyv1alpha1.ManagedProxyConfigurationProxyServer{
				Image: "quay.io/open-cluster-management/cluster-proxy:v1.0.0", Namespace: hubNamespace, Entrypoint: entrypoint,
			},
			ProxyAgent: proxyv1alpha1.ManagedProxyConfigurationProxyAgent{
				Image: "quay.io/open-cluster-management/cluster-proxy:v1.0.0", Replicas: 1,
			},
		},
	}
}

// config is a configuration an addon references.
type config struct {
	group, resource, namespace, name string
}

func mpcConfig(name string) config {
	return config{group: proxyv1alpha1.GroupName, resource: "managedproxyconfigurations", name: name}
}

func adcConfig(namespace, name string) config {
	return config{group: "addon.open-cluster-management.io", resource: "addondeploymentconfigs", namespace: namespace, name: name}
}

// specHash computes the hash OCM's addon-manager records for a config.
func specHash(ctx context.Context, c config) string {
	u := &unstructured.Unstructured{}
	gvk := map[string]string{
		"managedproxyconfigurations": "ManagedProxyConfiguration",
		"addondeploymentconfigs":     "AddOnDeploymentConfig",
	}[c.resource]
	version := map[string]string{proxyv1alpha1.GroupName: "v1alpha1"}[c.group]
	if version == "" {
		version = "v1beta1"
	}
	u.SetAPIVersion(c.group + "/" + version)
	u.SetKind(gvk)
	Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: c.name}, u)).To(Succeed())
	hash, err := utils.GetSpecHash(u)
	Expect(err).NotTo(HaveOccurred())
	return hash
}

// createAddon creates the ManagedClusterAddOn of cluster, owned by the
// ClusterManagementAddOn as OCM's hub addon-manager makes it (the
// addon-framework waits for that owner).
func createAddon(ctx context.Context, cluster string) {
	cma := &addonapiv1beta1.ClusterManagementAddOn{}
	Expect(k8sClient.Get(ctx, types.NamespacedName{Name: "cluster-proxy"}, cma)).To(Succeed())
	Expect(k8sClient.Create(ctx, &addonapiv1beta1.ManagedClusterAddOn{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: cluster, Name: "cluster-proxy",
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cma, schema.GroupVersionKind{Group: addonapiv1beta1.GroupName, Version: "v1beta1", Kind: "ClusterManagementAddOn"})},
		},
	})).To(Succeed())
}

// configure does what OCM's hub addon-manager does for an addon: it records
// the configurations the addon uses, with their spec hashes, and marks it
// Configured. It re-applies until the status holds, since the addon-framework
// writes the same status concurrently.
func configure(ctx context.Context, cluster string, configs ...config) {
	Eventually(func(g Gomega) {
		addon := &addonapiv1beta1.ManagedClusterAddOn{}
		g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: cluster, Name: "cluster-proxy"}, addon)).To(Succeed())
		var refs []addonapiv1beta1.ConfigReference
		for _, c := range configs {
			refs = append(refs, addonapiv1beta1.ConfigReference{
				ConfigGroupResource: addonapiv1beta1.ConfigGroupResource{Group: c.group, Resource: c.resource},
				DesiredConfig: &addonapiv1beta1.ConfigSpecHash{
					ConfigReferent: addonapiv1beta1.ConfigReferent{Namespace: c.namespace, Name: c.name},
					SpecHash:       specHash(ctx, c),
				},
			})
		}
		before := addon.DeepCopy()
		addon.Status.ConfigReferences = refs
		meta.SetStatusCondition(&addon.Status.Conditions, metav1.Condition{
			Type: addonapiv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue,
			Reason: "ConfigurationsConfigured", Message: "Configurations configured",
		})
		g.Expect(k8sClient.Status().Patch(ctx, addon, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))).To(Succeed())
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
}

// manifests returns the objects of the agent ManifestWork of cluster, by
// kind and name.
func manifests(ctx context.Context, cluster string) (map[string]*unstructured.Unstructured, error) {
	work := &workv1.ManifestWork{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: cluster, Name: workName}, work); err != nil {
		return nil, err
	}
	out := map[string]*unstructured.Unstructured{}
	for _, m := range work.Spec.Workload.Manifests {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(m.Raw); err != nil {
			return nil, err
		}
		out[u.GetKind()+"/"+u.GetName()] = u
	}
	return out, nil
}

// agentDeployment decodes the agent Deployment of cluster's ManifestWork.
func agentDeployment(ctx context.Context, cluster string) (*appsv1.Deployment, error) {
	objs, err := manifests(ctx, cluster)
	if err != nil {
		return nil, err
	}
	u, ok := objs["Deployment/cluster-proxy-proxy-agent"]
	if !ok {
		return nil, errNoDeployment
	}
	d := &appsv1.Deployment{}
	return d, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d)
}

var errNoDeployment = errors.New("the ManifestWork holds no Deployment cluster-proxy-proxy-agent")

func container(d *appsv1.Deployment, name string) corev1.Container {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	Expect(name).To(BeEmpty(), "container %s not found", name)
	return corev1.Container{}
}

// unstructuredString reads a string field of an unstructured object.
func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	return unstructured.NestedString(obj, fields...)
}
