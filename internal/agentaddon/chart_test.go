package agentaddon

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"open-cluster-management.io/cluster-proxy/internal/identity"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/ from the rendered charts")

const (
	chartTestCluster   = "cluster1"
	chartTestNamespace = "open-cluster-management-cluster-proxy"
	chartTestImage     = "quay.io/open-cluster-management/cluster-proxy:v0.1.0"
	// chartTestDigestImage is an image by digest.
	chartTestDigestImage = "registry.local:5000/ocm/cluster-proxy@sha256:0123"
	chartTestCAPEM       = "-----BEGIN CERTIFICATE-----\nY2x1c3Rlci1wcm94eSB0ZXN0IENB\n-----END CERTIFICATE-----\n"
	chartTestProxyCA     = "-----BEGIN CERTIFICATE-----\ncHJveHkgQ0E=\n-----END CERTIFICATE-----"
	chartTestDeployCfg   = "deploy-config"
	chartAgentCertName   = "cluster-proxy-open-cluster-management.io-proxy-agent-signer-client-cert"
)

// chartBaseValues are the values the manager computes for a cluster whose
// ManagedProxyConfiguration has no entrypoint (in-cluster Service).
func chartBaseValues() Values {
	return Values{
		IncludeNamespaceCreation: true,
		Registry:                 "quay.io/open-cluster-management",
		Image:                    "cluster-proxy",
		Tag:                      "v0.1.0",
		ProxyAgentImage:          chartTestImage,
		Replicas:                 3,
		AgentDeploymentAnnotations: map[string]string{
			proxyv1alpha1.AnnotationConfigurationGeneration: "7",
		},
		AddonAgentArgs: []string{
			"--hub-kubeconfig=/etc/kubeconfig/kubeconfig",
			"--cluster-name=" + chartTestCluster,
			"--proxy-server-namespace=" + chartTestNamespace,
		},
		ServiceEntryPoint:     "proxy-entrypoint." + chartTestNamespace,
		ServiceEntryPointPort: 8091,
		Base64EncodedCAData:   base64.StdEncoding.EncodeToString([]byte(chartTestCAPEM)),
		EnableKubeAPIProxy:    true,
		EnableImpersonation:   "true",
	}
}

// chartWithServiceProxy turns the service-proxy on with a serving
// certificate.
func chartWithServiceProxy(v *Values) {
	v.EnableServiceProxy = true
	v.ServiceProxySecretCert = base64.StdEncoding.EncodeToString([]byte("service-proxy-cert"))
	v.ServiceProxySecretKey = base64.StdEncoding.EncodeToString([]byte("service-proxy-key"))
}

// chartMPCReader serves one ManagedProxyConfiguration from memory: the one
// ValuesBuilder.ImageValues reads for the proxy-agent image.
type chartMPCReader struct {
	mpc *proxyv1alpha1.ManagedProxyConfiguration
}

func (r chartMPCReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	mpc, ok := obj.(*proxyv1alpha1.ManagedProxyConfiguration)
	if !ok || key.Name != r.mpc.Name {
		return apierrors.NewNotFound(ManagedProxyConfigurationGVR.GroupResource(), key.Name)
	}
	r.mpc.DeepCopyInto(mpc)
	return nil
}

func (r chartMPCReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("chartMPCReader does not list")
}

// chartConfigGetter serves AddOnDeploymentConfigs from memory.
type chartConfigGetter map[string]*addonapiv1beta1.AddOnDeploymentConfig

func (g chartConfigGetter) Get(_ context.Context, namespace, name string) (*addonapiv1beta1.AddOnDeploymentConfig, error) {
	config, ok := g[namespace+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(utils.AddOnDeploymentConfigGVR.GroupResource(), name)
	}
	return config, nil
}

// chartCase is one rendering of the agent chart through the addon-framework.
type chartCase struct {
	name string
	// values changes the manager's values (chartBaseValues).
	values func(*Values)
	// rawValues are merged into the manager's values: chart values the
	// Values struct has no field for.
	rawValues addonfactory.Values
	// agentImage is the manager's --agent-image-name (and the configuration's
	// proxy-agent image); empty means chartTestImage.
	agentImage string
	// config is the AddOnDeploymentConfig the addon references, if any.
	config *addonapiv1beta1.AddOnDeploymentConfig
	// golden names a file in testdata/ holding the rendered objects.
	golden string
	// wantErr is a substring of the expected rendering error.
	wantErr string
	check   func(g *WithT, r chartRendered)
}

// chartRendered are the objects of one rendering.
type chartRendered struct {
	objects []runtime.Object
}

// ids are "Kind namespace/name" of every object, in the framework's order.
func (r chartRendered) ids() []string {
	var ids []string
	for _, o := range r.objects {
		accessor, err := meta.Accessor(o)
		if err != nil {
			panic(err)
		}
		ids = append(ids, o.GetObjectKind().GroupVersionKind().Kind+" "+accessor.GetNamespace()+"/"+accessor.GetName())
	}
	return ids
}

func chartFind[T runtime.Object](r chartRendered, name string) T {
	var zero T
	for _, o := range r.objects {
		typed, ok := o.(T)
		if !ok {
			continue
		}
		accessor, err := meta.Accessor(typed)
		if err != nil {
			panic(err)
		}
		if accessor.GetName() == name {
			return typed
		}
	}
	return zero
}

func (r chartRendered) deployment() *appsv1.Deployment {
	return chartFind[*appsv1.Deployment](r, "cluster-proxy-proxy-agent")
}

func (r chartRendered) container(name string) *corev1.Container {
	d := r.deployment()
	if d == nil {
		return nil
	}
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == name {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	return nil
}

func (r chartRendered) volume(name string) *corev1.Volume {
	for i, v := range r.deployment().Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &r.deployment().Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

func (r chartRendered) impersonatorRules() []rbacv1.PolicyRule {
	return chartFind[*rbacv1.ClusterRole](r, "cluster-proxy-addon-agent-impersonator").Rules
}

// chartManagedCluster and chartAddon are the cluster and addon rendered for;
// the addon references config (when set) the way the addon-manager records
// it in status.configReferences.
func chartManagedCluster() *clusterv1.ManagedCluster {
	return &clusterv1.ManagedCluster{
		ObjectMeta: metav1.ObjectMeta{Name: chartTestCluster},
		Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		Status:     clusterv1.ManagedClusterStatus{Version: clusterv1.ManagedClusterVersion{Kubernetes: "v1.36.1"}},
	}
}

func chartAddon(config *addonapiv1beta1.AddOnDeploymentConfig) *addonapiv1beta1.ManagedClusterAddOn {
	addon := &addonapiv1beta1.ManagedClusterAddOn{
		ObjectMeta: metav1.ObjectMeta{Name: AddonName, Namespace: chartTestCluster},
	}
	if config != nil {
		addon.Status.ConfigReferences = []addonapiv1beta1.ConfigReference{{
			ConfigGroupResource: addonapiv1beta1.ConfigGroupResource{
				Group:    utils.AddOnDeploymentConfigGVR.Group,
				Resource: utils.AddOnDeploymentConfigGVR.Resource,
			},
			DesiredConfig: &addonapiv1beta1.ConfigSpecHash{
				ConfigReferent: addonapiv1beta1.ConfigReferent{Namespace: config.Namespace, Name: config.Name},
				SpecHash:       "spec-hash",
			},
		}}
	}
	return addon
}

func chartDeploymentConfig(spec addonapiv1beta1.AddOnDeploymentConfigSpec) *addonapiv1beta1.AddOnDeploymentConfig {
	return &addonapiv1beta1.AddOnDeploymentConfig{
		ObjectMeta: metav1.ObjectMeta{Name: chartTestDeployCfg, Namespace: chartTestCluster},
		Spec:       spec,
	}
}

// renderChart renders the agent chart for c with the addon factory
// agentaddon.New builds (newFactory: the same mappers, image values, install
// namespace fallback and options), the manager's core values being c's
// instead of ValuesBuilder.GetValues'. strict turns on Helm's strict mode (a
// missing value is an error instead of an empty string).
func renderChart(t *testing.T, c chartCase, strict bool) ([]runtime.Object, error) {
	t.Helper()
	values := chartBaseValues()
	if c.values != nil {
		c.values(&values)
	}
	getter := chartConfigGetter{}
	if c.config != nil {
		getter[c.config.Namespace+"/"+c.config.Name] = c.config
	}
	agentImage := c.agentImage
	if agentImage == "" {
		agentImage = chartTestImage
	}
	o := Options{
		Values: &ValuesBuilder{
			Ctx: t.Context(),
			Client: chartMPCReader{mpc: &proxyv1alpha1.ManagedProxyConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: proxyv1alpha1.DefaultName},
				Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
					ProxyAgent: proxyv1alpha1.ManagedProxyConfigurationProxyAgent{Image: agentImage},
				},
			}},
			AgentImage:            agentImage,
			EnableKubeAPIProxy:    values.EnableKubeAPIProxy,
			EnableNetworkPolicies: values.NetworkPolicies.Enabled,
			EnableImpersonation:   true,
		},
		Registration:            &Registration{},
		KubeClient:              kubefake.NewClientset(),
		DeploymentConfigs:       getter,
		DefaultInstallNamespace: chartTestNamespace,
	}
	if err := o.validate(); err != nil {
		t.Fatalf("invalid options: %v", err)
	}
	coreValues := func(*clusterv1.ManagedCluster, *addonapiv1beta1.ManagedClusterAddOn) (addonfactory.Values, error) {
		v, err := values.ToValues()
		if err != nil {
			return nil, err
		}
		return addonfactory.MergeValues(v, c.rawValues), nil
	}
	factory := newFactory(o, coreValues)
	if strict {
		factory = factory.WithHelmEngineStrict()
	}
	agentAddon, err := factory.BuildHelmAgentAddon()
	if err != nil {
		t.Fatalf("failed to build the agent addon: %v", err)
	}
	return agentAddon.Manifests(t.Context(), chartManagedCluster(), chartAddon(c.config))
}

// chartYAML serialises rendered objects for golden files. The framework
// orders objects by kind only (same-kind objects come in map order), so
// same-kind objects are sorted by namespace and name.
func chartYAML(t *testing.T, objects []runtime.Object) []byte {
	t.Helper()
	rank := map[string]int{}
	for _, o := range objects {
		kind := o.GetObjectKind().GroupVersionKind().Kind
		if _, ok := rank[kind]; !ok {
			rank[kind] = len(rank)
		}
	}
	key := func(o runtime.Object) (int, string) {
		accessor, err := meta.Accessor(o)
		if err != nil {
			t.Fatalf("failed to access %T: %v", o, err)
		}
		return rank[o.GetObjectKind().GroupVersionKind().Kind], accessor.GetNamespace() + "/" + accessor.GetName()
	}
	sorted := slices.Clone(objects)
	slices.SortStableFunc(sorted, func(a, b runtime.Object) int {
		ra, na := key(a)
		rb, nb := key(b)
		if ra != rb {
			return ra - rb
		}
		return strings.Compare(na, nb)
	})
	var out bytes.Buffer
	for _, o := range sorted {
		data, err := yaml.Marshal(o)
		if err != nil {
			t.Fatalf("failed to marshal %T: %v", o, err)
		}
		out.WriteString("---\n")
		out.Write(data)
	}
	return out.Bytes()
}

// chartCommonObjects are the objects rendered for every cluster in
// namespace ns.
func chartCommonObjects(ns string) []string {
	return []string{
		"Namespace /" + ns,
		"ServiceAccount " + ns + "/cluster-proxy",
		"Secret " + ns + "/cluster-proxy-ca",
		"ClusterRole /cluster-proxy-addon-agent-impersonator",
		"ClusterRoleBinding /cluster-proxy-addon-agent-impersonator:" + ns,
		"Role " + ns + "/cluster-proxy-addon-agent",
		"RoleBinding " + ns + "/cluster-proxy-addon-agent",
		"Deployment " + ns + "/cluster-proxy-proxy-agent",
	}
}

func TestAgentChart(t *testing.T) {
	serviceProxyHost := proxyv1alpha1.ServiceProxyHost(chartTestCluster)
	defaultIdentifiers := "host=" + chartTestCluster + "&host=" + chartTestCluster + "." + chartTestNamespace + "&host=" + serviceProxyHost
	infraTolerations := []corev1.Toleration{
		{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "infra", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node-role.kubernetes.io/infra", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
	impersonate := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"users", "groups"}, Verbs: []string{"impersonate"}}
	tokenReviews := rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}

	cases := []chartCase{
		{
			name:   "in-cluster entrypoint, kube-apiserver proxy only",
			golden: "default.yaml",
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.ids()).To(ConsistOf(append(chartCommonObjects(chartTestNamespace),
					"Service "+chartTestNamespace+"/"+chartTestCluster)))

				ns := chartFind[*corev1.Namespace](r, chartTestNamespace)
				g.Expect(ns.Annotations).To(HaveKeyWithValue("addon.open-cluster-management.io/deletion-orphan", ""))

				svc := chartFind[*corev1.Service](r, chartTestCluster)
				g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeExternalName))
				g.Expect(svc.Spec.ExternalName).To(Equal("kubernetes.default.svc.cluster.local"))

				ca := chartFind[*corev1.Secret](r, "cluster-proxy-ca")
				g.Expect(string(ca.Data["ca.crt"])).To(Equal(chartTestCAPEM))

				role := chartFind[*rbacv1.Role](r, "cluster-proxy-addon-agent")
				g.Expect(role.Rules).To(ConsistOf(
					rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"*"}},
					rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}},
				))
				binding := chartFind[*rbacv1.RoleBinding](r, "cluster-proxy-addon-agent")
				g.Expect(binding.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "cluster-proxy", Namespace: chartTestNamespace}))
				// No impersonation grant without the service-proxy.
				g.Expect(r.impersonatorRules()).To(ConsistOf(tokenReviews))

				d := r.deployment()
				labels := map[string]string{
					"open-cluster-management.io/addon":                "cluster-proxy",
					"proxy.open-cluster-management.io/component-name": "proxy-agent",
				}
				g.Expect(d.Spec.Selector.MatchLabels).To(Equal(labels))
				g.Expect(d.Spec.Template.Labels).To(Equal(labels))
				g.Expect(d.Annotations).To(HaveKeyWithValue(proxyv1alpha1.AnnotationConfigurationGeneration, "7"))
				g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(proxyv1alpha1.AnnotationConfigurationGeneration, "7"))
				g.Expect(d.Spec.Template.Annotations).To(HaveKey("target.workload.openshift.io/management"))
				g.Expect(*d.Spec.Replicas).To(Equal(int32(3)))
				pod := d.Spec.Template.Spec
				g.Expect(pod.ServiceAccountName).To(Equal("cluster-proxy"))
				g.Expect(*pod.TerminationGracePeriodSeconds).To(Equal(int64(40)))
				g.Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
				g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
				g.Expect(pod.Tolerations).To(Equal(infraTolerations))
				g.Expect(pod.NodeSelector).To(BeEmpty())
				g.Expect(pod.HostAliases).To(BeEmpty())
				g.Expect(pod.ImagePullSecrets).To(BeEmpty())
				g.Expect(pod.Containers).To(HaveLen(2))
				for _, c := range pod.Containers {
					g.Expect(c.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent), c.Name)
					sc := c.SecurityContext
					g.Expect(sc.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")), c.Name)
					g.Expect(*sc.ReadOnlyRootFilesystem).To(BeTrue(), c.Name)
					g.Expect(*sc.AllowPrivilegeEscalation).To(BeFalse(), c.Name)
					g.Expect(*sc.RunAsNonRoot).To(BeTrue(), c.Name)
					g.Expect(c.Resources).To(Equal(corev1.ResourceRequirements{}), c.Name)
				}

				agent := r.container("proxy-agent")
				g.Expect(agent.Image).To(Equal(chartTestImage))
				g.Expect(agent.Command).To(Equal([]string{"/proxy-agent"}))
				g.Expect(agent.Args).To(Equal([]string{
					"--proxy-server-host=proxy-entrypoint." + chartTestNamespace,
					"--proxy-server-port=8091",
					"--agent-identifiers=" + defaultIdentifiers,
					"--ca-cert=/etc/ca/ca.crt",
					"--agent-cert=/etc/tls/tls.crt",
					"--agent-key=/etc/tls/tls.key",
				}))
				g.Expect(agent.Env).To(Equal([]corev1.EnvVar{{Name: "ROOT_CA_CERT", Value: "/etc/ca/ca.crt"}}))
				g.Expect(agent.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
				g.Expect(agent.LivenessProbe.HTTPGet.Port.IntValue()).To(Equal(8093), "the proxy-agent's own health port: it reloads certificates, no restart")
				g.Expect(agent.VolumeMounts).To(ConsistOf(
					corev1.VolumeMount{Name: "ca", MountPath: "/etc/ca", ReadOnly: true},
					corev1.VolumeMount{Name: "agent-client-cert", MountPath: "/etc/tls", ReadOnly: true},
				))

				addonAgent := r.container("addon-agent")
				g.Expect(addonAgent.Image).To(Equal(chartTestImage))
				g.Expect(addonAgent.Command).To(Equal([]string{"/agent"}))
				g.Expect(addonAgent.Args).To(Equal([]string{
					"--v=2",
					"--hub-kubeconfig=/etc/kubeconfig/kubeconfig",
					"--cluster-name=" + chartTestCluster,
					"--proxy-server-namespace=" + chartTestNamespace,
				}))
				g.Expect(addonAgent.Env).To(ConsistOf(corev1.EnvVar{
					Name:      "POD_NAMESPACE",
					ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
				}))
				g.Expect(addonAgent.VolumeMounts).To(ConsistOf(
					corev1.VolumeMount{Name: "hub-kubeconfig", MountPath: "/etc/kubeconfig", ReadOnly: true},
					corev1.VolumeMount{Name: "agent-client-cert", MountPath: "/etc/tls", ReadOnly: true},
				))

				g.Expect(pod.Volumes).To(HaveLen(3))
				g.Expect(r.volume("ca").Secret.SecretName).To(Equal("cluster-proxy-ca"))
				g.Expect(r.volume("agent-client-cert").Secret.SecretName).To(Equal(chartAgentCertName))
				g.Expect(r.volume("hub-kubeconfig").Secret.SecretName).To(Equal("cluster-proxy-hub-kubeconfig"))
			},
		},
		{
			name: "PortForward entrypoint",
			values: func(v *Values) {
				v.ServiceEntryPoint = "127.0.0.1"
				v.AddonAgentArgs = append(v.AddonAgentArgs, "--enable-port-forward-proxy=true")
			},
			golden: "port-forward.yaml",
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("proxy-agent").Args).To(ContainElements(
					"--proxy-server-host=127.0.0.1", "--proxy-server-port=8091"))
				g.Expect(r.container("addon-agent").Args).To(ContainElement("--enable-port-forward-proxy=true"))
			},
		},
		{
			name: "Hostname entrypoint with pull secrets, replicas and extra proxy-agent args",
			values: func(v *Values) {
				v.ServiceEntryPoint = "proxy.hub.example.com"
				v.ServiceEntryPointPort = 443
				v.Replicas = 2
				v.ProxyAgentImagePullSecrets = []string{"pull-a", "pull-b"}
				v.AdditionalProxyAgentArgs = []string{"--keepalive-time=30s", "--sync-interval=5s"}
			},
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("proxy-agent").Args).To(Equal([]string{
					"--proxy-server-host=proxy.hub.example.com",
					"--proxy-server-port=443",
					"--agent-identifiers=" + defaultIdentifiers,
					"--ca-cert=/etc/ca/ca.crt",
					"--agent-cert=/etc/tls/tls.crt",
					"--agent-key=/etc/tls/tls.key",
					"--keepalive-time=30s",
					"--sync-interval=5s",
				}))
				g.Expect(r.container("addon-agent").Args).NotTo(ContainElement(HavePrefix("--enable-port-forward-proxy")))
				g.Expect(*r.deployment().Spec.Replicas).To(Equal(int32(2)))
				g.Expect(r.deployment().Spec.Template.Spec.ImagePullSecrets).To(Equal(
					[]corev1.LocalObjectReference{{Name: "pull-a"}, {Name: "pull-b"}}))
			},
		},
		{
			name:   "service-proxy host given by the manager",
			values: func(v *Values) { v.ServiceProxyHost = "sp.example" },
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("proxy-agent").Args).To(ContainElement(
					"--agent-identifiers=host=" + chartTestCluster + "&host=" + chartTestCluster + "." + chartTestNamespace + "&host=sp.example"))
				g.Expect(r.deployment().Spec.Template.Spec.HostAliases).To(BeEmpty())
			},
		},
		{
			name:   "agent identifiers given by the manager",
			values: func(v *Values) { v.ServiceProxyHost, v.AgentIdentifiers = "sp.example", "host=only" },
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("proxy-agent").Args).To(ContainElement("--agent-identifiers=host=only"))
			},
		},
		{
			name:   "kube-apiserver proxy off",
			values: func(v *Values) { v.EnableKubeAPIProxy = false },
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.ids()).To(ConsistOf(chartCommonObjects(chartTestNamespace)))
				g.Expect(r.container("proxy-agent").Args).To(ContainElement("--agent-identifiers=host=" + serviceProxyHost))
			},
		},
		{
			name:   "namespace creation off",
			values: func(v *Values) { v.IncludeNamespaceCreation = false },
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.ids()).NotTo(ContainElement(HavePrefix("Namespace ")))
			},
		},
		{
			name:   "network policy",
			values: func(v *Values) { v.NetworkPolicies.Enabled = true; v.ServiceEntryPointPort = 9443 },
			check: func(g *WithT, r chartRendered) {
				np := chartFind[*networkingv1.NetworkPolicy](r, "cluster-proxy-proxy-agent-network-policy")
				g.Expect(np).NotTo(BeNil())
				g.Expect(np.Namespace).To(Equal(chartTestNamespace))
				g.Expect(np.Spec.PodSelector.MatchLabels).To(Equal(r.deployment().Spec.Selector.MatchLabels))
				g.Expect(np.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
				g.Expect(chartPorts(np.Spec.Ingress[0].Ports)).To(ConsistOf("TCP/8000", "TCP/7443", "TCP/8001", "TCP/8093"), "health, HTTPS and metrics")
				var egress []string
				for _, rule := range np.Spec.Egress {
					g.Expect(rule.To).To(BeEmpty())
					g.Expect(rule.Ports).NotTo(BeEmpty())
					egress = append(egress, chartPorts(rule.Ports)...)
				}
				g.Expect(egress).To(ConsistOf("UDP/53", "TCP/53", "UDP/5353", "TCP/5353", "TCP/443", "TCP/6443", "TCP/9443"))
			},
		},
		{
			// The manager always sends global.imageOverrides (ImageValues),
			// so the chart's own registry/image/tag and proxyAgentImage
			// fallbacks never decide the images.
			name:       "images by digest",
			agentImage: chartTestDigestImage,
			values: func(v *Values) {
				v.Registry, v.Image, v.Tag = SplitImage(chartTestDigestImage)
				v.ProxyAgentImage = chartTestDigestImage
			},
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("addon-agent").Image).To(Equal("registry.local:5000/ocm/cluster-proxy@sha256:0123"))
				g.Expect(r.container("proxy-agent").Image).To(Equal("registry.local:5000/ocm/cluster-proxy@sha256:0123"))
			},
		},
		{
			name: "AddOnDeploymentConfig nodePlacement",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				NodePlacement: &addonapiv1beta1.NodePlacement{
					NodeSelector: map[string]string{"node-role.kubernetes.io/infra": ""},
					// Replaces the infra defaults, as in the existing addon.
					Tolerations: []corev1.Toleration{
						{Key: "infra", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
						{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "infra", Effect: corev1.TaintEffectNoSchedule},
					},
				},
			}),
			values: func(v *Values) { v.NodeSelector = map[string]string{"kubernetes.io/os": "linux"} },
			check: func(g *WithT, r chartRendered) {
				pod := r.deployment().Spec.Template.Spec
				g.Expect(pod.NodeSelector).To(Equal(map[string]string{
					"kubernetes.io/os":              "linux",
					"node-role.kubernetes.io/infra": "",
				}))
				g.Expect(pod.Tolerations).To(Equal([]corev1.Toleration{
					{Key: "infra", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
					{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "infra", Effect: corev1.TaintEffectNoSchedule},
				}))
			},
		},
		{
			name: "AddOnDeploymentConfig proxyConfig with an https proxy CA bundle",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				ProxyConfig: addonapiv1beta1.ProxyConfig{
					HTTPProxy:  "http://proxy.example.com:3128",
					HTTPSProxy: "https://proxy.example.com:3129",
					NoProxy:    "10.0.0.0/8,.svc",
					CABundle:   []byte(chartTestProxyCA),
				},
			}),
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("proxy-agent").Env).To(Equal([]corev1.EnvVar{
					{Name: "HTTP_PROXY", Value: "http://proxy.example.com:3128"},
					{Name: "HTTPS_PROXY", Value: "https://proxy.example.com:3129"},
					{Name: "NO_PROXY", Value: "10.0.0.0/8,.svc"},
					{Name: "ROOT_CA_CERT", Value: "/etc/ca/ca.crt"},
				}))
				g.Expect(r.container("addon-agent").Env).To(HaveLen(1))
				ca := chartFind[*corev1.Secret](r, "cluster-proxy-ca")
				g.Expect(string(ca.Data["ca.crt"])).To(Equal(chartTestCAPEM + chartTestProxyCA + "\n"))
			},
		},
		{
			name: "AddOnDeploymentConfig proxyConfig: the manager already merged the CA bundle",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				ProxyConfig: addonapiv1beta1.ProxyConfig{HTTPSProxy: "https://proxy.example.com:3129", CABundle: []byte(chartTestProxyCA)},
			}),
			values: func(v *Values) {
				v.Base64EncodedCAData = base64.StdEncoding.EncodeToString([]byte(chartTestCAPEM + chartTestProxyCA + "\n"))
			},
			check: func(g *WithT, r chartRendered) {
				ca := chartFind[*corev1.Secret](r, "cluster-proxy-ca")
				g.Expect(string(ca.Data["ca.crt"])).To(Equal(chartTestCAPEM + chartTestProxyCA + "\n"))
			},
		},
		{
			name: "AddOnDeploymentConfig proxyConfig: an http proxy's CA bundle is not trusted",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				ProxyConfig: addonapiv1beta1.ProxyConfig{HTTPSProxy: "http://proxy.example.com:3128", CABundle: []byte(chartTestProxyCA)},
			}),
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("proxy-agent").Env).To(ContainElement(
					corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.example.com:3128"}))
				ca := chartFind[*corev1.Secret](r, "cluster-proxy-ca")
				g.Expect(string(ca.Data["ca.crt"])).To(Equal(chartTestCAPEM))
			},
		},
		{
			name: "AddOnDeploymentConfig customizedVariables override chart values (as strings)",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{
					{Name: "serviceDomain", Value: "cluster.example"},
					{Name: "replicas", Value: "5"},
					{Name: "enableImpersonation", Value: "TRUE"},
					{Name: "additionalProxyAgentArgs", Value: "--v=6"},
				},
			}),
			check: func(g *WithT, r chartRendered) {
				g.Expect(chartFind[*corev1.Service](r, chartTestCluster).Spec.ExternalName).To(Equal("kubernetes.default.cluster.example"))
				g.Expect(*r.deployment().Spec.Replicas).To(Equal(int32(5)))
				g.Expect(r.impersonatorRules()).To(ConsistOf(tokenReviews))
				g.Expect(r.container("proxy-agent").Args).To(HaveExactElements(
					"--proxy-server-host=proxy-entrypoint."+chartTestNamespace,
					"--proxy-server-port=8091",
					"--agent-identifiers="+defaultIdentifiers,
					"--ca-cert=/etc/ca/ca.crt",
					"--agent-cert=/etc/tls/tls.crt",
					"--agent-key=/etc/tls/tls.key",
					"--v=6",
				))
			},
		},
		{
			name: "AddOnDeploymentConfig resourceRequirements per container, last match wins",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				ResourceRequirements: []addonapiv1beta1.ContainerResourceRequirements{
					{
						ContainerID: "*:*:*",
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
						},
					},
					{
						ContainerID: "deployments:cluster-proxy-proxy-agent:proxy-agent",
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
					},
					{
						ContainerID: "deployments:other-deployment:*",
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
						},
					},
				},
			}),
			golden: "resource-requirements.yaml",
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("proxy-agent").Resources).To(Equal(corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				}))
				g.Expect(r.container("addon-agent").Resources).To(Equal(corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				}))
			},
		},
		{
			name: "AddOnDeploymentConfig agentInstallNamespace",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				AgentInstallNamespace: "proxy-agents",
			}),
			golden: "install-namespace.yaml",
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.ids()).To(ConsistOf(append(chartCommonObjects("proxy-agents"),
					"Service proxy-agents/"+chartTestCluster)))
				binding := chartFind[*rbacv1.ClusterRoleBinding](r, "cluster-proxy-addon-agent-impersonator:proxy-agents")
				g.Expect(binding.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "cluster-proxy", Namespace: "proxy-agents"}))
				// Identifiers derived by the chart name the actual namespace.
				g.Expect(r.container("proxy-agent").Args).To(ContainElement(
					"--agent-identifiers=host=" + chartTestCluster + "&host=" + chartTestCluster + ".proxy-agents&host=" + serviceProxyHost))
			},
		},
		{
			name: "AddOnDeploymentConfig agentInstallNamespace is the framework default",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				AgentInstallNamespace: addonfactory.AddonDefaultInstallNamespace,
			}),
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.ids()).To(ContainElement("ClusterRoleBinding /cluster-proxy-addon-agent-impersonator"))
				g.Expect(r.deployment().Namespace).To(Equal(addonfactory.AddonDefaultInstallNamespace))
			},
		},
		{
			name: "AddOnDeploymentConfig: customizedVariables, nodePlacement, proxyConfig, resourceRequirements and registries together",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{{Name: "serviceDomain", Value: "cluster.example"}},
				NodePlacement: &addonapiv1beta1.NodePlacement{
					NodeSelector: map[string]string{"zone": "a"},
					Tolerations:  []corev1.Toleration{{Key: "infra", Operator: corev1.TolerationOpExists}},
				},
				ProxyConfig: addonapiv1beta1.ProxyConfig{
					HTTPSProxy: "https://proxy.example.com:3129", NoProxy: ".svc", CABundle: []byte(chartTestProxyCA),
				},
				ResourceRequirements: []addonapiv1beta1.ContainerResourceRequirements{{
					ContainerID: "*:*:addon-agent",
					Resources:   corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}},
				}},
				Registries: []addonapiv1beta1.ImageMirror{{Source: "quay.io/open-cluster-management", Mirror: "mirror.local/ocm"}},
			}),
			check: func(g *WithT, r chartRendered) {
				pod := r.deployment().Spec.Template.Spec
				g.Expect(pod.NodeSelector).To(Equal(map[string]string{"zone": "a"}))
				g.Expect(pod.Tolerations).To(Equal([]corev1.Toleration{{Key: "infra", Operator: corev1.TolerationOpExists}}))
				g.Expect(r.container("proxy-agent").Env).To(Equal([]corev1.EnvVar{
					{Name: "HTTPS_PROXY", Value: "https://proxy.example.com:3129"},
					{Name: "NO_PROXY", Value: ".svc"},
					{Name: "ROOT_CA_CERT", Value: "/etc/ca/ca.crt"},
				}))
				ca := chartFind[*corev1.Secret](r, "cluster-proxy-ca")
				g.Expect(string(ca.Data["ca.crt"])).To(Equal(chartTestCAPEM + chartTestProxyCA + "\n"))
				g.Expect(r.container("addon-agent").Resources.Limits).To(HaveKeyWithValue(corev1.ResourceMemory, resource.MustParse("128Mi")))
				g.Expect(r.container("proxy-agent").Resources).To(Equal(corev1.ResourceRequirements{}))
				g.Expect(chartFind[*corev1.Service](r, chartTestCluster).Spec.ExternalName).To(Equal("kubernetes.default.cluster.example"))
				g.Expect(r.container("proxy-agent").Image).To(Equal("mirror.local/ocm/cluster-proxy:v0.1.0"))
				g.Expect(r.container("addon-agent").Image).To(Equal("mirror.local/ocm/cluster-proxy:v0.1.0"))
			},
		},
		{
			// The chart also reads the spellings of the framework's other
			// mapper, ToAddOnDeploymentConfigValues (NodeSelector,
			// Tolerations, HTTPProxy, ...), which the manager does not use:
			// given both, it renders each setting once.
			name: "AddOnDeploymentConfig with ToAddOnDeploymentConfigValues' spellings too: no duplicates",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				NodePlacement: &addonapiv1beta1.NodePlacement{
					NodeSelector: map[string]string{"zone": "a"},
					Tolerations:  []corev1.Toleration{{Key: "infra", Operator: corev1.TolerationOpExists}},
				},
				ProxyConfig: addonapiv1beta1.ProxyConfig{HTTPProxy: "http://proxy.example.com:3128"},
			}),
			rawValues: addonfactory.Values{
				"NodeSelector": map[string]any{"zone": "a"},
				"Tolerations":  []any{map[string]any{"key": "infra", "operator": "Exists"}},
				"HTTPProxy":    "http://proxy.example.com:3128",
			},
			check: func(g *WithT, r chartRendered) {
				pod := r.deployment().Spec.Template.Spec
				g.Expect(pod.NodeSelector).To(Equal(map[string]string{"zone": "a"}))
				g.Expect(pod.Tolerations).To(Equal([]corev1.Toleration{{Key: "infra", Operator: corev1.TolerationOpExists}}))
				g.Expect(r.container("proxy-agent").Env).To(Equal([]corev1.EnvVar{
					{Name: "HTTP_PROXY", Value: "http://proxy.example.com:3128"},
					{Name: "ROOT_CA_CERT", Value: "/etc/ca/ca.crt"},
				}))
			},
		},
		{
			name:    "missing entrypoint fails",
			values:  func(v *Values) { v.ServiceEntryPoint = "" },
			wantErr: "serviceEntryPoint is required",
		},
		{
			name:    "missing CA fails",
			values:  func(v *Values) { v.Base64EncodedCAData = "" },
			wantErr: "base64EncodedCAData is required",
		},
		{
			name: "invalid resourceRequirements regex fails",
			rawValues: addonfactory.Values{"global": map[string]any{"resourceRequirements": []any{
				map[string]any{"containerIDRegex": "([", "resources": map[string]any{}},
			}}},
			wantErr: "error parsing regexp",
		},
		{
			name: "AddOnDeploymentConfig nodePlacement without tolerations keeps none of its own",
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				NodePlacement: &addonapiv1beta1.NodePlacement{NodeSelector: map[string]string{"zone": "a"}},
			}),
			check: func(g *WithT, r chartRendered) {
				// The framework maps the absent list to tolerations: null,
				// which, as in the existing addon, removes the defaults.
				g.Expect(r.deployment().Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{"zone": "a"}))
				g.Expect(r.deployment().Spec.Template.Spec.Tolerations).To(BeEmpty())
			},
		},
		{
			name: "service proxy with impersonation, OIDC and an additional service CA",
			values: func(v *Values) {
				chartWithServiceProxy(v)
				v.AdditionalServiceCAConfigMap = "service-ca"
				v.AdditionalServiceProxyArgs = []string{"--v=4"}
			},
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{
					{Name: "oidcIssuerURL", Value: "https://issuer.example"},
					{Name: "oidcClientID", Value: "cluster-proxy"},
					{Name: "oidcUsernameClaim", Value: "email"},
					{Name: "oidcGroupsClaim", Value: "groups"},
					{Name: "oidcGroupsPrefix", Value: "oidc:"},
					{Name: "oidcReservedNamePrefixes", Value: "system:,cluster:"},
					{Name: "oidcCAConfigMap", Value: "oidc-ca"},
					{Name: "oidcRequiredClaimsJSON", Value: `{"hd":"example.com","aud2":"x"}`},
				},
			}),
			golden: "service-proxy.yaml",
			check: func(g *WithT, r chartRendered) {
				secret := chartFind[*corev1.Secret](r, "cluster-proxy-service-proxy-server-certificates")
				g.Expect(secret.Type).To(Equal(corev1.SecretTypeTLS))
				g.Expect(string(secret.Data["tls.crt"])).To(Equal("service-proxy-cert"))
				g.Expect(string(secret.Data["tls.key"])).To(Equal("service-proxy-key"))
				// The callers' CA is the manager's own, without any HTTPS
				// proxy bundle.
				g.Expect(string(secret.Data["ca.crt"])).To(Equal(chartTestCAPEM))
				g.Expect(r.impersonatorRules()).To(ConsistOf(tokenReviews, impersonate))

				pod := r.deployment().Spec.Template.Spec
				g.Expect(pod.HostAliases).To(Equal([]corev1.HostAlias{{IP: "127.0.0.1", Hostnames: []string{serviceProxyHost}}}))
				g.Expect(pod.Containers).To(HaveLen(3))

				sp := r.container("service-proxy")
				g.Expect(sp.Image).To(Equal(chartTestImage))
				g.Expect(sp.Command).To(Equal([]string{"/cluster-proxy"}))
				g.Expect(sp.Args).To(Equal([]string{
					"service-proxy",
					"--cert=/server-cert/tls.crt",
					"--key=/server-cert/tls.key",
					"--client-ca=/server-cert/ca.crt",
					"--hub-kubeconfig=/etc/kubeconfig/kubeconfig",
					"--enable-impersonation=true",
					"--oidc-issuer-url=https://issuer.example",
					"--oidc-client-id=cluster-proxy",
					"--oidc-username-claim=email",
					"--oidc-groups-claim=groups",
					"--oidc-groups-prefix=oidc:",
					"--oidc-ca-configmap=oidc-ca",
					"--oidc-reserved-name-prefixes=system:,cluster:",
					"--oidc-required-claim=aud2=x",
					"--oidc-required-claim=hd=example.com",
					"--additional-service-ca=/additional-service-ca/service-ca.crt",
					"--v=4",
				}))
				g.Expect(sp.Env).To(ConsistOf(corev1.EnvVar{
					Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
				}))
				g.Expect(sp.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
				g.Expect(sp.LivenessProbe.HTTPGet.Port.IntValue()).To(Equal(8000))
				g.Expect(sp.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
				g.Expect(sp.ReadinessProbe.HTTPGet.Port.IntValue()).To(Equal(8000))
				g.Expect(*sp.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
				g.Expect(sp.VolumeMounts).To(ConsistOf(
					corev1.VolumeMount{Name: "service-proxy-server-cert", MountPath: "/server-cert", ReadOnly: true},
					corev1.VolumeMount{Name: "hub-kubeconfig", MountPath: "/etc/kubeconfig", ReadOnly: true},
					corev1.VolumeMount{Name: "additional-service-ca", MountPath: "/additional-service-ca", ReadOnly: true},
				))
				g.Expect(r.volume("service-proxy-server-cert").Secret.SecretName).To(Equal("cluster-proxy-service-proxy-server-certificates"))
				serviceCA := r.volume("additional-service-ca").ConfigMap
				g.Expect(serviceCA.Name).To(Equal("service-ca"))
				g.Expect(*serviceCA.Optional).To(BeTrue())
			},
		},
		{
			name: "service proxy without impersonation or OIDC: no impersonate grant",
			values: func(v *Values) {
				chartWithServiceProxy(v)
				v.EnableImpersonation = "false"
			},
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.impersonatorRules()).To(ConsistOf(tokenReviews))
				sp := r.container("service-proxy")
				g.Expect(sp.Args).To(ContainElement("--enable-impersonation=false"))
				g.Expect(sp.Args).NotTo(ContainElement(HavePrefix("--oidc-")))
				g.Expect(sp.Args).NotTo(ContainElement(HavePrefix("--additional-service-ca")))
				g.Expect(r.volume("additional-service-ca")).To(BeNil())
			},
		},
		{
			name: "service proxy without impersonation but with OIDC from additional arguments: impersonate granted",
			values: func(v *Values) {
				chartWithServiceProxy(v)
				v.EnableImpersonation = "false"
				v.AdditionalServiceProxyArgs = []string{"--oidc-issuer-url=https://issuer.example", "--oidc-client-id=x"}
			},
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.impersonatorRules()).To(ConsistOf(tokenReviews, impersonate))
			},
		},
		{
			name: "service proxy switched on and configured from an AddOnDeploymentConfig",
			values: func(v *Values) {
				v.ServiceProxySecretCert = base64.StdEncoding.EncodeToString([]byte("service-proxy-cert"))
				v.ServiceProxySecretKey = base64.StdEncoding.EncodeToString([]byte("service-proxy-key"))
			},
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{
					{Name: "enableServiceProxy", Value: "True"},
					{Name: "enableImpersonation", Value: "false"},
					{Name: "additionalServiceProxyArgs", Value: "--v=6"},
				},
			}),
			check: func(g *WithT, r chartRendered) {
				g.Expect(r.container("service-proxy").Args).To(ContainElements("--enable-impersonation=false", "--v=6"))
				g.Expect(r.impersonatorRules()).To(ConsistOf(tokenReviews))
			},
		},
		{
			name: "network policy with service proxy allows all egress",
			values: func(v *Values) {
				v.NetworkPolicies.Enabled = true
				chartWithServiceProxy(v)
			},
			check: func(g *WithT, r chartRendered) {
				np := chartFind[*networkingv1.NetworkPolicy](r, "cluster-proxy-proxy-agent-network-policy")
				g.Expect(np.Spec.Egress).To(Equal([]networkingv1.NetworkPolicyEgressRule{{}}))
			},
		},
		{
			name: "service proxy without its certificate fails",
			values: func(v *Values) {
				chartWithServiceProxy(v)
				v.ServiceProxySecretCert = ""
			},
			wantErr: "serviceProxySecretCert is required when enableServiceProxy is on",
		},
		{
			name:   "OIDC issuer without client ID fails",
			values: chartWithServiceProxy,
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{{Name: "oidcIssuerURL", Value: "https://issuer.example"}},
			}),
			wantErr: "oidcClientID: required when oidcIssuerURL is set",
		},
		{
			name:   "OIDC client ID without issuer fails",
			values: chartWithServiceProxy,
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{{Name: "oidcClientID", Value: "x"}},
			}),
			wantErr: "oidcIssuerURL: required when oidcClientID is set",
		},
		{
			name: "OIDC issuer in two places fails",
			values: func(v *Values) {
				chartWithServiceProxy(v)
				v.AdditionalServiceProxyArgs = []string{"--oidc-issuer-url=https://other.example"}
			},
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{
					{Name: "oidcIssuerURL", Value: "https://issuer.example"}, {Name: "oidcClientID", Value: "x"},
				},
			}),
			wantErr: `additionalServiceProxyArgs: "--oidc-issuer-url=https://other.example" conflicts with oidcIssuerURL`,
		},
		{
			name:   "malformed required claims fail",
			values: chartWithServiceProxy,
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{
					{Name: "oidcIssuerURL", Value: "https://issuer.example"}, {Name: "oidcClientID", Value: "x"},
					{Name: "oidcRequiredClaimsJSON", Value: `["hd"]`},
				},
			}),
			wantErr: `oidcRequiredClaimsJSON: "[\"hd\"]" is not a JSON object`,
		},
		{
			name:   "a non-string required claim fails",
			values: chartWithServiceProxy,
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{
				CustomizedVariables: []addonapiv1beta1.CustomizedVariable{
					{Name: "oidcIssuerURL", Value: "https://issuer.example"}, {Name: "oidcClientID", Value: "x"},
					{Name: "oidcRequiredClaimsJSON", Value: `{"n":1}`},
				},
			}),
			wantErr: `oidcRequiredClaimsJSON: claim "n" must have a string value`,
		},
		{
			name: "impersonation through additional arguments refused",
			values: func(v *Values) {
				chartWithServiceProxy(v)
				v.AdditionalServiceProxyArgs = []string{"--enable-impersonation=false"}
			},
			wantErr: `additionalServiceProxyArgs: "--enable-impersonation=false" is set by the chart`,
		},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			objects, err := renderChart(t, c, true)
			if c.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(c.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			rendered := chartRendered{objects: objects}
			g.Expect(rendered.deployment()).NotTo(BeNil())
			for _, o := range objects {
				accessor, err := meta.Accessor(o)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(accessor.GetAnnotations()).NotTo(HaveKey("helm.sh/hook"))
			}
			c.check(g, rendered)

			// The addon-manager renders without Helm's strict mode: the
			// result must be the same.
			lenient, err := renderChart(t, c, false)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(chartYAML(t, lenient))).To(Equal(string(chartYAML(t, objects))))

			if c.golden != "" {
				chartCompareGolden(t, filepath.Join("testdata", c.golden), chartYAML(t, objects))
			}
		})
	}
}

// chartPorts formats NetworkPolicy ports as "PROTOCOL/port".
func chartPorts(ports []networkingv1.NetworkPolicyPort) []string {
	var out []string
	for _, p := range ports {
		out = append(out, string(*p.Protocol)+"/"+p.Port.String())
	}
	return out
}

// chartCompareGolden compares got with the golden file, or rewrites it
// under -update.
func chartCompareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("failed to create %s: %v", filepath.Dir(path), err)
		}
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatalf("failed to write %s: %v", path, err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("failed to read %s (run the test with -update to create it): %v", path, err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("rendered objects differ from %s (run the test with -update to accept):\n%s", path, chartDiff(string(want), string(got)))
	}
}

// chartDiff lists the lines that differ between want and got, in order.
func chartDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&out, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		}
	}
	return out.String()
}

func TestValuesToValues(t *testing.T) {
	g := NewWithT(t)
	values, err := Values{
		Registry:              "quay.io/open-cluster-management",
		ServiceEntryPointPort: 8091,
		EnableKubeAPIProxy:    true,
	}.ToValues()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(values).To(Equal(addonfactory.Values{
		"includeNamespaceCreation": false,
		"registry":                 "quay.io/open-cluster-management",
		"serviceEntryPointPort":    float64(8091),
		"enableKubeApiProxy":       true,
		"enableServiceProxy":       false,
		"networkPolicies":          map[string]any{"enabled": false},
	}))
}

// TestServiceProxyValues: with the service-proxy on, the manager needs the
// reader and namespace of the certificate Secret, copies its certificate and
// key into the values, and fails naming the Secret while it is missing or
// empty.
func TestServiceProxyValues(t *testing.T) {
	g := NewWithT(t)
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{ObjectMeta: metav1.ObjectMeta{Name: proxyv1alpha1.DefaultName}}
	o := Options{
		Values:                  &ValuesBuilder{Ctx: t.Context(), Client: chartMPCReader{mpc: mpc}, AgentImage: chartTestImage, EnableServiceProxy: true},
		Registration:            &Registration{},
		KubeClient:              kubefake.NewClientset(),
		DeploymentConfigs:       chartConfigGetter{},
		DefaultInstallNamespace: chartTestNamespace,
	}
	_, err := New(o)
	g.Expect(err).To(MatchError(ContainSubstring("EnableServiceProxy needs Values.SecretReader and Values.SignerNamespace")))

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "signer", Name: proxyv1alpha1.ServiceProxyCertSecretName}}
	o.Values.SecretReader = chartSecretReader{secret: secret}
	o.Values.SignerNamespace = "signer"
	_, err = New(o)
	g.Expect(err).NotTo(HaveOccurred())

	cert, key, err := o.Values.serviceProxyCertificate(t.Context())
	g.Expect(err).To(MatchError(ContainSubstring("the service-proxy certificate Secret signer/cluster-proxy-service-proxy-server-cert has no tls.crt or tls.key yet")))
	g.Expect(cert).To(BeNil())
	g.Expect(key).To(BeNil())

	secret.Data = map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}
	cert, key, err = o.Values.serviceProxyCertificate(t.Context())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(cert)).To(Equal("cert"))
	g.Expect(string(key)).To(Equal("key"))

	o.Values.SignerNamespace = "elsewhere"
	_, _, err = o.Values.serviceProxyCertificate(t.Context())
	g.Expect(err).To(MatchError(ContainSubstring("the service-proxy is enabled but its certificate Secret elsewhere/cluster-proxy-service-proxy-server-cert is not readable (cluster-proxy controllers creates it)")))
	g.Expect(apierrors.IsNotFound(errors.Unwrap(err))).To(BeTrue())
}

// chartSecretReader serves one Secret from memory.
type chartSecretReader struct {
	secret *corev1.Secret
}

func (r chartSecretReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	secret, ok := obj.(*corev1.Secret)
	if !ok || key.Namespace != r.secret.Namespace || key.Name != r.secret.Name {
		return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
	}
	r.secret.DeepCopyInto(secret)
	return nil
}

func (r chartSecretReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("chartSecretReader does not list")
}

// TestChartIdentifiersBelongToTheCluster holds the chart's derivation of the
// proxy-agent's --agent-identifiers to the identity package, which the
// proxy-server enforces: whatever namespace the agent is installed in, and
// with or without the kube-apiserver proxy, the chart registers exactly what
// identity.AgentIdentifiers lists, and every identifier belongs to the
// cluster.
func TestChartIdentifiersBelongToTheCluster(t *testing.T) {
	for _, c := range []struct {
		name         string
		namespace    string
		kubeAPIProxy bool
		config       *addonapiv1beta1.AddOnDeploymentConfig
	}{
		{name: "default namespace", namespace: chartTestNamespace, kubeAPIProxy: true},
		{name: "kube-apiserver proxy off", namespace: chartTestNamespace, kubeAPIProxy: false},
		{
			name: "namespace from an AddOnDeploymentConfig", namespace: "proxy-agents", kubeAPIProxy: true,
			config: chartDeploymentConfig(addonapiv1beta1.AddOnDeploymentConfigSpec{AgentInstallNamespace: "proxy-agents"}),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			objects, err := renderChart(t, chartCase{
				config: c.config,
				values: func(v *Values) { v.EnableKubeAPIProxy = c.kubeAPIProxy },
			}, true)
			g.Expect(err).NotTo(HaveOccurred())
			var ids string
			for _, arg := range (chartRendered{objects: objects}).container("proxy-agent").Args {
				if v, ok := strings.CutPrefix(arg, "--agent-identifiers="); ok {
					ids = v
				}
			}
			g.Expect(ids).To(Equal(strings.Join(identity.AgentIdentifiers(chartTestCluster, c.namespace, c.kubeAPIProxy), "&")))
			g.Expect(identity.CheckIdentifiers(chartTestCluster, ids)).To(Succeed())
			g.Expect(identity.CheckIdentifiers("cluster2", ids)).To(MatchError(ContainSubstring("an agent of cluster cluster2 may not register")),
				"the same identifiers are refused for another cluster")
		})
	}
}
