package helm_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	"sigs.k8s.io/yaml"

	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	"open-cluster-management.io/cluster-proxy/internal/userserver"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	pkgclient "open-cluster-management.io/cluster-proxy/pkg/client"
)

// Keys of the objects every render has.
const (
	managerSA         = "ServiceAccount/" + releaseNamespace + "/cluster-proxy-addon-manager"
	managerDeployment = "Deployment/" + releaseNamespace + "/cluster-proxy-addon-manager"
	managerCR         = "ClusterRole/open-cluster-management:cluster-proxy:addon-manager"
	managerCRB        = "ClusterRoleBinding/open-cluster-management:cluster-proxy:addon-manager"
	managerRole       = "Role/" + releaseNamespace + "/open-cluster-management:cluster-proxy:addon-manager"
	managerRB         = "RoleBinding/" + releaseNamespace + "/open-cluster-management:cluster-proxy:addon-manager"
	cmaKey            = "ClusterManagementAddOn/cluster-proxy"
	mpcKey            = "ManagedProxyConfiguration/cluster-proxy"
	placementKey      = "Placement/" + releaseNamespace + "/cluster-proxy-placement"
	bindingKey        = "ManagedClusterSetBinding/" + releaseNamespace + "/global"
)

// Keys of the objects a render with enableServiceProxy=true adds: the
// addon-user Deployment (container controllers, `cluster-proxy controllers`)
// and its identity.
const (
	userName       = "cluster-proxy-addon-user"
	userSA         = "ServiceAccount/" + releaseNamespace + "/" + userName
	userDeployment = "Deployment/" + releaseNamespace + "/" + userName
	userRole       = "Role/" + releaseNamespace + "/open-cluster-management:cluster-proxy:addon-user"
	userRB         = "RoleBinding/" + releaseNamespace + "/open-cluster-management:cluster-proxy:addon-user"
)

// defaultKeys are the objects of the default render.
var defaultKeys = []string{
	managerSA, managerCR, managerCRB, managerRole, managerRB, managerDeployment,
	cmaKey, mpcKey, placementKey, bindingKey,
}

// Keys of the objects a render with userServer.enabled=true adds: the
// user-server's Service (the exposed-services ConfigMap's key depends on
// exposedServicesConfigMapName) and, with networkPolicies.enabled, the
// addon-user NetworkPolicy (which comes with enableServiceProxy=true).
const (
	userService = "Service/" + releaseNamespace + "/" + userName
	userPolicy  = "NetworkPolicy/" + releaseNamespace + "/" + userName
)

// exposedServicesKey is the key of the exposed-services ConfigMap called
// name.
func exposedServicesKey(name string) string {
	return "ConfigMap/" + releaseNamespace + "/" + name
}

// The chart's refusals (templates/_helpers.tpl cluster-proxy.validate),
// exactly: values that need another value.
const (
	userServerNeedsServiceProxy   = "userServer.enabled needs enableServiceProxy=true: the user-server reaches every managed cluster through its service-proxy"
	sansNeedUserServer            = "userServer.additionalSANs: only the user-server's serving certificate uses it; set userServer.enabled=true too, or leave it empty"
	exposedServicesNeedUserServer = "exposedServices: only the user-server reads it; set userServer.enabled=true too, or leave it empty"
	clusterProfileNeedsUserServer = "featureGates.clusterProfile: the access provider it publishes in ClusterProfiles is the user-server's URL; set userServer.enabled=true too, or leave it false"
)

// podNamespaceEnv is the POD_NAMESPACE variable of every hub container.
var podNamespaceEnv = corev1.EnvVar{
	Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
}

// hardenedContainer is the security context of every hub container.
func hardenedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		Privileged:               ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
	}
}

// acceptedProfiles are value profiles that render, the defaults first;
// between them they set every value the chart accepts to something other
// than its default (the refused values are in the "refuses bad values"
// table).
// Lint, RBAC and the API server specs run them all.
var acceptedProfiles = [][]string{
	nil,
	{"--set", "proxyServer.entrypointAddress=proxy.hub.example.com,proxyServer.port=443"},
	{"--set", "proxyServer.entrypointLoadBalancer=true,proxyServer.imagePullPolicy=Never"},
	{"--set", "installByPlacement.placementName=mine,installByPlacement.placementNamespace=placements"},
	{
		"--set", "networkPolicies.enabled=true,enableKubeApiProxy=false,replicas=2,spokeAddonNamespace=proxy-agents",
		"--set", "registry=mirror.example.com/ocm,image=proxy,tag=v9.9.9,imagePullPolicy=Always",
		"--set", "proxyServerImage=mirror.example.com/server,proxyAgentImage=mirror.example.com/agent,enableImpersonation=false",
		// exposedServicesConfigMapName is accepted without the user-server
		// (and unused).
		"--set", "enableServiceProxy=true,exposedServicesConfigMapName=unused-services",
		"--set-json", `nodeSelector={"node-role.kubernetes.io/infra":""}`,
		"--set-json", `tolerations=[{"key":"node-role.kubernetes.io/infra","operator":"Exists","effect":"NoSchedule"}]`,
		"--set-json", `resources={"requests":{"cpu":"100m"},"limits":{"memory":"1Gi"}}`,
	},
	append([]string{
		"--set", "networkPolicies.enabled=true,exposedServicesConfigMapName=allowed-services,featureGates.clusterProfile=true",
	}, userServerValues()...),
}

// userServerSANs and exposedServices are the userServer.additionalSANs and
// exposedServices the user-server renders and installs set.
var (
	userServerSANs  = []string{"user.hub.example.com", "203.0.113.7"}
	exposedServices = []userserver.ExposedService{
		{Namespace: "monitoring", Service: "prometheus-k8s", Port: 9091, Protocol: "https"},
		{Namespace: "default", Service: "hello"},
	}
)

// userServerValues turn the user-server on (with the service-proxy it
// needs), with userServerSANs and exposedServices. (Package initialization
// calls it, before Gomega is set up.)
func userServerValues() []string {
	asJSON := func(v any) string {
		data, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return string(data)
	}
	return []string{
		"--set", "enableServiceProxy=true,userServer.enabled=true",
		"--set-json", "userServer.additionalSANs=" + asJSON(userServerSANs),
		"--set-json", "exposedServices=" + asJSON(exposedServices),
	}
}

// shippedBinaries are the binaries of the cluster-proxy image: /<name> for
// each directory cmd/<name> (hack/build.sh).
func shippedBinaries() []string {
	entries, err := os.ReadDir(filepath.Join(repoRoot, "cmd"))
	Expect(err).NotTo(HaveOccurred())
	var binaries []string
	for _, e := range entries {
		if e.IsDir() {
			binaries = append(binaries, "/"+e.Name())
		}
	}
	Expect(binaries).To(ContainElement("/manager"))
	return binaries
}

// clusterProxyCommands are the subcommands of /cluster-proxy: the names
// cmd/cluster-proxy/main.go registers with command.New.
func clusterProxyCommands() []string {
	data, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "cluster-proxy", "main.go"))
	Expect(err).NotTo(HaveOccurred())
	var commands []string
	for _, m := range regexp.MustCompile(`command\.New\("([^"]+)"`).FindAllStringSubmatch(string(data), -1) {
		commands = append(commands, m[1])
	}
	Expect(commands).To(ContainElement("controllers"), "the subcommands of cmd/cluster-proxy/main.go")
	return commands
}

// sets tells whether a value profile sets value (name=value) with --set.
func sets(profile []string, value string) bool {
	for i, arg := range profile {
		if arg != "--set" || i+1 == len(profile) {
			continue
		}
		if slices.Contains(strings.Split(profile[i+1], ","), value) {
			return true
		}
	}
	return false
}

// setsServiceProxy tells whether a value profile sets enableServiceProxy=true.
func setsServiceProxy(profile []string) bool { return sets(profile, "enableServiceProxy=true") }

// setsUserServer tells whether a value profile sets userServer.enabled=true.
func setsUserServer(profile []string) bool { return sets(profile, "userServer.enabled=true") }

// defaultImage is the main image with the default tag, v<appVersion>.
func defaultImage() string {
	return "quay.io/open-cluster-management/cluster-proxy:v" + strings.TrimPrefix(appVersion, "v")
}

func (r rendered) mpc() *proxyv1alpha1.ManagedProxyConfiguration {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	r.into(mpcKey, mpc)
	return mpc
}

func (r rendered) cma() *addonapiv1beta1.ClusterManagementAddOn {
	cma := &addonapiv1beta1.ClusterManagementAddOn{}
	r.into(cmaKey, cma)
	return cma
}

func (r rendered) managerArgs() []string {
	return containerNamed(r.deployment("cluster-proxy-addon-manager"), "manager").Args
}

var _ = Describe("Rendering the chart", Label("helm", "static"), func() {
	It("lints cleanly with --strict, with the default values and every profile", func(ctx SpecContext) {
		for _, profile := range acceptedProfiles {
			out, err := runHelm(ctx, append([]string{"lint", "--strict", chartDir, "--namespace", releaseNamespace, "--kube-version", kubeVersion}, profile...)...)
			Expect(err).NotTo(HaveOccurred(), "profile %v", profile)
			Expect(out).To(ContainSubstring("0 chart(s) failed"), "profile %v", profile)
			Expect(out).NotTo(Or(ContainSubstring("[WARNING]"), ContainSubstring("[ERROR]")), "profile %v", profile)
		}
	})

	It("runs only binaries and commands the image ships, the user-server only with userServer.enabled, under every profile", func(ctx SpecContext) {
		shipped := shippedBinaries()
		commands := clusterProxyCommands()
		Expect(commands).To(ContainElement("user-server"), "cmd/cluster-proxy/main.go registers the user-server command")
		Expect(slices.ContainsFunc(acceptedProfiles, setsServiceProxy)).To(BeTrue(), "a profile runs the addon-user Deployment")
		Expect(slices.ContainsFunc(acceptedProfiles, setsUserServer)).To(BeTrue(), "a profile runs the user-server")
		for _, profile := range acceptedProfiles {
			objs := mustRender(ctx, profile...)
			serviceProxy, userServer := setsServiceProxy(profile), setsUserServer(profile)
			var deployments, userServers []string
			for _, u := range objs {
				if u.GetKind() != "Deployment" {
					continue
				}
				deployments = append(deployments, u.GetName())
				d := objs.deployment(u.GetName())
				for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
					Expect(c.Command).NotTo(BeEmpty(), "profile %v: container %s", profile, c.Name)
					Expect(shipped).To(ContainElement(c.Command[0]), "profile %v: container %s", profile, c.Name)
					runsUserServer := strings.Contains(c.Name, "user-server")
					if c.Command[0] == "/cluster-proxy" {
						Expect(c.Command).To(HaveLen(1), "profile %v: container %s: the subcommand is the first argument", profile, c.Name)
						Expect(c.Args).NotTo(BeEmpty(), "profile %v: container %s runs /cluster-proxy without a subcommand", profile, c.Name)
						Expect(commands).To(ContainElement(c.Args[0]), "profile %v: container %s", profile, c.Name)
						runsUserServer = runsUserServer || c.Args[0] == "user-server"
					}
					if runsUserServer {
						userServers = append(userServers, d.Name+"/"+c.Name)
					}
				}
			}
			if serviceProxy {
				Expect(deployments).To(ConsistOf("cluster-proxy-addon-manager", userName), "profile %v", profile)
				Expect(containerNamed(objs.deployment(userName), "controllers").Command).To(Equal([]string{"/cluster-proxy"}), "profile %v", profile)
			} else {
				Expect(deployments).To(ConsistOf("cluster-proxy-addon-manager"), "profile %v", profile)
			}
			var services, configMaps []string
			for _, k := range objs.keys() {
				switch {
				case strings.HasPrefix(k, "Service/"):
					services = append(services, k)
				case strings.HasPrefix(k, "ConfigMap/"):
					configMaps = append(configMaps, k)
				}
			}
			if userServer {
				Expect(serviceProxy).To(BeTrue(), "profile %v: the user-server needs the service-proxy", profile)
				Expect(userServers).To(Equal([]string{userName + "/user-server"}), "profile %v", profile)
				c := containerNamed(objs.deployment(userName), "user-server")
				Expect(c.Command).To(Equal([]string{"/cluster-proxy"}), "profile %v", profile)
				Expect(c.Args[0]).To(Equal("user-server"), "profile %v", profile)
				Expect(services).To(Equal([]string{userService}), "profile %v", profile)
				Expect(configMaps).To(HaveLen(1), "profile %v: the exposed-services ConfigMap", profile)
				Expect(objs.mpc().Spec.UserServer).NotTo(BeNil(), "profile %v", profile)
			} else {
				Expect(userServers).To(BeEmpty(), "profile %v", profile)
				Expect(services).To(BeEmpty(), "profile %v: no user-server Service", profile)
				Expect(configMaps).To(BeEmpty(), "profile %v: no exposed-services ConfigMap", profile)
				Expect(objs.mpc().Spec.UserServer).To(BeNil(), "profile %v", profile)
			}
			Expect(objs.managerArgs()).To(ContainElements(fmt.Sprintf("--enable-service-proxy=%t", serviceProxy),
				fmt.Sprintf("--feature-gates=ClusterProfile=%t", clusterProfileGateOn(profile))), "profile %v", profile)
			impersonation := !slices.ContainsFunc(profile, func(arg string) bool { return strings.Contains(arg, "enableImpersonation=false") })
			Expect(objs.managerArgs()).To(ContainElement(fmt.Sprintf("--enable-impersonation=%t", impersonation)), "profile %v", profile)
		}
	})

	Context("with the default values", func() {
		var objs rendered
		BeforeEach(func(ctx SpecContext) { objs = mustRender(ctx) })

		It("renders exactly the manager, its RBAC, the addon, the default configuration and the placement", func() {
			Expect(objs.keys()).To(ConsistOf(defaultKeys))
			Expect(objs.keys()).NotTo(ContainElement(ContainSubstring("addon-user")), "the addon-user objects come with enableServiceProxy=true only")
			for _, u := range objs {
				Expect(u.GetLabels()).To(And(
					HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"),
					HaveKeyWithValue("app.kubernetes.io/name", "cluster-proxy"),
					HaveKeyWithValue("app.kubernetes.io/instance", releaseName),
				), key(u))
			}
		})

		It("runs the addon-manager with the chart's flags, hardened", func() {
			d := objs.deployment("cluster-proxy-addon-manager")
			Expect(d.Labels).To(HaveKeyWithValue("component", "cluster-proxy-manager"))
			Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("component", "cluster-proxy-manager"))
			Expect(d.Spec.Selector.MatchLabels).To(Equal(map[string]string{"component": "cluster-proxy-manager"}))
			Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
			pod := d.Spec.Template.Spec
			Expect(pod.ServiceAccountName).To(Equal("cluster-proxy-addon-manager"))
			Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
			Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
			Expect(pod.NodeSelector).To(BeEmpty())
			Expect(pod.Tolerations).To(BeEmpty())

			c := containerNamed(d, "manager")
			Expect(c.Image).To(Equal(defaultImage()))
			Expect(c.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
			Expect(c.Command).To(Equal([]string{"/manager"}))
			Expect(c.Args).To(Equal([]string{
				"--leader-elect=true",
				"--signer-secret-namespace=" + releaseNamespace,
				"--agent-image-name=" + defaultImage(),
				"--enable-kube-api-proxy=true",
				"--enable-service-proxy=false",
				"--enable-impersonation=true",
				"--enable-network-policies=false",
				"--agent-install-namespace=open-cluster-management-cluster-proxy",
				"--image-pull-policy=IfNotPresent",
				"--feature-gates=ClusterProfile=false",
			}))
			Expect(c.Env).To(ConsistOf(corev1.EnvVar{
				Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			}))
			Expect(c.Ports).To(ConsistOf(
				HaveField("ContainerPort", BeEquivalentTo(58080)),
				HaveField("ContainerPort", BeEquivalentTo(58081)),
			))
			Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
			Expect(c.LivenessProbe.HTTPGet.Port.String()).To(Equal("healthz"))
			Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
			Expect(c.ReadinessProbe.HTTPGet.Port.String()).To(Equal("healthz"))
			Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU))
			Expect(c.SecurityContext).To(Equal(hardenedContainer()))
		})

		It("registers the addon with OCM: default configuration and Placements install strategy", func() {
			cma := objs.cma()
			Expect(cma.Annotations).To(HaveKeyWithValue("addon.open-cluster-management.io/lifecycle", "addon-manager"))
			Expect(cma.Spec.DefaultConfigs).To(ConsistOf(addonapiv1beta1.AddOnConfig{
				ConfigGroupResource: addonapiv1beta1.ConfigGroupResource{Group: proxyv1alpha1.GroupName, Resource: "managedproxyconfigurations"},
				ConfigReferent:      addonapiv1beta1.ConfigReferent{Name: proxyv1alpha1.DefaultName},
			}))
			Expect(cma.Spec.InstallStrategy.Type).To(Equal(addonapiv1beta1.AddonInstallStrategyPlacements))
			Expect(cma.Spec.InstallStrategy.Placements).To(ConsistOf(HaveField("PlacementRef", addonapiv1beta1.PlacementRef{
				Name: "cluster-proxy-placement", Namespace: releaseNamespace,
			})))
		})

		It("configures proxy-servers in the release namespace reached by port-forwarding", func() {
			mpc := objs.mpc()
			Expect(mpc.Spec.Authentication.Signer.Type).To(Equal(proxyv1alpha1.SignerTypeSelfSigned))
			Expect(mpc.Spec.ProxyServer.Namespace).To(Equal(releaseNamespace))
			Expect(mpc.Spec.ProxyServer.Image).To(Equal(defaultImage()))
			Expect(mpc.Spec.ProxyServer.Replicas).To(BeEquivalentTo(1))
			Expect(mpc.Spec.ProxyServer.Entrypoint).To(Equal(&proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
				Type: proxyv1alpha1.EntryPointTypePortForward, Port: 8091,
			}))
			Expect(mpc.Spec.ProxyServer.NodePlacement).To(BeZero())
			Expect(mpc.Spec.ProxyAgent.Image).To(Equal(defaultImage()))
			Expect(mpc.Spec.ProxyAgent.Replicas).To(BeEquivalentTo(1))
			Expect(mpc.Spec.UserServer).To(BeNil())
		})

		It("selects every cluster of the global cluster set", func() {
			placement := &clusterv1beta1.Placement{}
			objs.into(placementKey, placement)
			Expect(placement.Spec.ClusterSets).To(Equal([]string{"global"}))
			Expect(placement.Spec.Tolerations).To(ConsistOf(
				HaveField("Key", "cluster.open-cluster-management.io/unreachable"),
				HaveField("Key", "cluster.open-cluster-management.io/unavailable"),
			))
			binding := &clusterv1beta2.ManagedClusterSetBinding{}
			objs.into(bindingKey, binding)
			Expect(binding.Spec.ClusterSet).To(Equal("global"))
		})
	})

	Context("with enableServiceProxy=true", func() {
		var objs rendered
		BeforeEach(func(ctx SpecContext) { objs = mustRender(ctx, "--set", "enableServiceProxy=true") })

		It("adds exactly the addon-user Deployment, its ServiceAccount, Role and RoleBinding, and turns the addon-manager's service-proxy on", func(ctx SpecContext) {
			Expect(objs.keys()).To(ConsistOf(append([]string{userSA, userRole, userRB, userDeployment}, defaultKeys...)))
			for _, u := range objs {
				Expect(u.GetLabels()).To(And(
					HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"),
					HaveKeyWithValue("app.kubernetes.io/name", "cluster-proxy"),
					HaveKeyWithValue("app.kubernetes.io/instance", releaseName),
				), key(u))
			}
			By("the addon-manager's arguments differ from the default render's in --enable-service-proxy only")
			want := slices.Clone(mustRender(ctx).managerArgs())
			i := slices.Index(want, "--enable-service-proxy=false")
			Expect(i).NotTo(Equal(-1))
			want[i] = "--enable-service-proxy=true"
			Expect(objs.managerArgs()).To(Equal(want))
			manager := parseManagerArgs(objs.managerArgs())
			Expect(manager.EnableServiceProxy).To(BeTrue())
		})

		It("runs cluster-proxy controllers as the addon-user ServiceAccount with the chart's flags, hardened", func() {
			d := objs.deployment(userName)
			Expect(d.Labels).To(HaveKeyWithValue("component", userName))
			Expect(d.Spec.Selector.MatchLabels).To(Equal(map[string]string{"component": userName}))
			Expect(d.Spec.Template.Labels).To(Equal(map[string]string{
				"app.kubernetes.io/name": "cluster-proxy", "app.kubernetes.io/instance": releaseName, "component": userName,
			}))
			Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
			pod := d.Spec.Template.Spec
			Expect(pod.ServiceAccountName).To(Equal(userName))
			sa := &corev1.ServiceAccount{}
			objs.into(userSA, sa)
			Expect(ptr.Deref(pod.AutomountServiceAccountToken, ptr.Deref(sa.AutomountServiceAccountToken, true))).To(BeTrue(),
				"the command authenticates with the pod's ServiceAccount token")
			Expect(pod.SecurityContext).To(Equal(&corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}))
			Expect(pod.NodeSelector).To(BeEmpty())
			Expect(pod.Tolerations).To(BeEmpty())
			Expect(pod.InitContainers).To(BeEmpty())
			Expect(pod.Containers).To(HaveLen(1))

			c := containerNamed(d, "controllers")
			Expect(c.Image).To(Equal(defaultImage()))
			Expect(c.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
			Expect(c.Command).To(Equal([]string{"/cluster-proxy"}))
			Expect(c.Args).To(Equal([]string{
				"controllers",
				"--enable-leader-election=true",
				"--certificates-namespace=" + releaseNamespace,
				"--signer-secret-namespace=" + releaseNamespace,
				"--signer-secret-name=cluster-proxy-signer",
			}))
			Expect(c.Env).To(Equal([]corev1.EnvVar{podNamespaceEnv}))
			Expect(c.Ports).To(Equal([]corev1.ContainerPort{
				{Name: "ctrl-metrics", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "ctrl-healthz", ContainerPort: 8081, Protocol: corev1.ProtocolTCP},
			}))
			Expect(c.LivenessProbe).To(Equal(&corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("ctrl-healthz")}},
				InitialDelaySeconds: 5, PeriodSeconds: 10,
			}))
			Expect(c.ReadinessProbe).To(Equal(&corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("ctrl-healthz")}},
				InitialDelaySeconds: 2, PeriodSeconds: 10,
			}))
			Expect(c.Resources).To(Equal(containerNamed(objs.deployment("cluster-proxy-addon-manager"), "manager").Resources))
			Expect(c.SecurityContext).To(Equal(hardenedContainer()))
		})

		It("passes flags the command parses and accepts, keeping the certificate where the addon-manager reads it, with the probes' and metrics' ports served", func() {
			c := containerNamed(objs.deployment(userName), "controllers")
			opts := parseControllersArgs(c.Args)
			Expect(opts.EnableLeaderElection).To(BeTrue())
			manager := parseManagerArgs(objs.managerArgs())
			Expect(opts.SignerSecretNamespace).To(Equal(manager.SignerSecretNamespace), "the CA the addon-manager signs with")
			Expect(opts.SignerSecretName).To(Equal(manager.SignerSecretName), "the CA the addon-manager signs with")
			Expect(opts.CertificatesNamespace).To(Equal(manager.SignerSecretNamespace),
				"the addon-manager reads Secret %s from its --signer-secret-namespace", proxyv1alpha1.ServiceProxyCertSecretName)

			port := func(name string) string {
				for _, p := range c.Ports {
					if p.Name == name {
						return strconv.Itoa(int(p.ContainerPort))
					}
				}
				Fail("no container port " + name)
				return ""
			}
			_, health, err := net.SplitHostPort(opts.HealthProbeAddr)
			Expect(err).NotTo(HaveOccurred())
			Expect(health).To(Equal(port(c.LivenessProbe.HTTPGet.Port.StrVal)), "the probes' port is where --health-probe-addr serves")
			Expect(health).To(Equal(port(c.ReadinessProbe.HTTPGet.Port.StrVal)), "the probes' port is where --health-probe-addr serves")
			_, metrics, err := net.SplitHostPort(opts.MetricsAddr)
			Expect(err).NotTo(HaveOccurred())
			Expect(metrics).To(Equal(port("ctrl-metrics")), "--metrics-addr serves on the metrics port")
		})

		It("grants the addon-user its Secrets, leases and Events in the release namespace only", func() {
			role := &rbacv1.Role{}
			objs.into(userRole, role)
			Expect(grants(role.Rules)).To(ConsistOf(
				grant{"", "secrets", "", "get"}, grant{"", "secrets", "", "list"}, grant{"", "secrets", "", "watch"},
				grant{"", "secrets", "", "create"}, grant{"", "secrets", "", "update"}, grant{"", "secrets", "", "patch"},
				grant{"coordination.k8s.io", "leases", "", "get"}, grant{"coordination.k8s.io", "leases", "", "list"},
				grant{"coordination.k8s.io", "leases", "", "watch"}, grant{"coordination.k8s.io", "leases", "", "create"},
				grant{"coordination.k8s.io", "leases", "", "update"}, grant{"coordination.k8s.io", "leases", "", "patch"},
				grant{"", "events", "", "create"}, grant{"", "events", "", "patch"},
				grant{"events.k8s.io", "events", "", "create"}, grant{"events.k8s.io", "events", "", "patch"},
			))
			binding := &rbacv1.RoleBinding{}
			objs.into(userRB, binding)
			Expect(binding.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}))
			Expect(binding.Subjects).To(Equal([]rbacv1.Subject{userSubject}))

			By("nothing else is bound to it")
			for _, u := range objs {
				var subjects []rbacv1.Subject
				switch u.GetKind() {
				case "ClusterRoleBinding":
					b := &rbacv1.ClusterRoleBinding{}
					objs.into(key(u), b)
					subjects = b.Subjects
				case "RoleBinding":
					if key(u) == userRB {
						continue
					}
					b := &rbacv1.RoleBinding{}
					objs.into(key(u), b)
					subjects = b.Subjects
				default:
					continue
				}
				for _, s := range subjects {
					Expect(s.Name).NotTo(Equal(userName), key(u))
				}
			}
		})
	})

	Context("with userServer.enabled=true, exposed services and additional SANs", func() {
		// objs turns the user-server on with network policies; base is the
		// same without the user-server.
		var objs, base rendered
		BeforeEach(func(ctx SpecContext) {
			objs = mustRender(ctx, append([]string{"--set", "networkPolicies.enabled=true"}, userServerValues()...)...)
			base = mustRender(ctx, "--set", "enableServiceProxy=true,networkPolicies.enabled=true")
		})
		cmKey := exposedServicesKey(userserver.DefaultExposedServicesConfigMap)

		It("adds exactly the user-server's Service and exposed-services ConfigMap, and changes only the addon-user Deployment, Role and NetworkPolicy and the configuration's spec.userServer", func() {
			Expect(objs.keys()).To(ConsistOf(append(base.keys(), userService, cmKey)))
			Expect(base.keys()).To(ContainElements(userDeployment, userRole, userPolicy, mpcKey))
			for _, k := range base.keys() {
				switch k {
				case userDeployment, userRole, userPolicy, mpcKey:
				default:
					Expect(objs.get(k).Object).To(Equal(base.get(k).Object), "%s is the same without the user-server", k)
				}
			}
			for _, k := range []string{userService, cmKey} {
				Expect(objs.get(k).GetLabels()).To(And(
					HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"),
					HaveKeyWithValue("app.kubernetes.io/name", "cluster-proxy"),
					HaveKeyWithValue("app.kubernetes.io/instance", releaseName),
				), k)
			}

			By("the Deployment: the user-server container and its volumes, nothing else")
			d := objs.deployment(userName)
			Expect(d.Spec.Template.Spec.Containers).To(HaveLen(2))
			Expect(d.Spec.Template.Spec.Containers[0].Name).To(Equal("controllers"))
			Expect(d.Spec.Template.Spec.Containers[1].Name).To(Equal("user-server"))
			without := d.DeepCopy()
			without.Spec.Template.Spec.Containers = without.Spec.Template.Spec.Containers[:1]
			without.Spec.Template.Spec.Volumes = nil
			Expect(without).To(Equal(base.deployment(userName)))

			By("the Role: reading ConfigMaps (the exposed services and the TLS profile), nothing else")
			role, baseRole := &rbacv1.Role{}, &rbacv1.Role{}
			objs.into(userRole, role)
			base.into(userRole, baseRole)
			Expect(grants(role.Rules)).To(ConsistOf(append(grants(baseRole.Rules),
				grant{"", "configmaps", "", "get"}, grant{"", "configmaps", "", "list"}, grant{"", "configmaps", "", "watch"})))

			By("the NetworkPolicy: the user-server's ports, nothing else")
			policy, basePolicy := &networkingv1.NetworkPolicy{}, &networkingv1.NetworkPolicy{}
			objs.into(userPolicy, policy)
			base.into(userPolicy, basePolicy)
			tcp := func(port int32) networkingv1.NetworkPolicyPort {
				return networkingv1.NetworkPolicyPort{Port: ptr.To(intstr.FromInt32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}
			}
			Expect(basePolicy.Spec).To(Equal(networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"component": userName}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(8080), tcp(8081)}}},
			}))
			Expect(policy.Spec).To(Equal(networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"component": userName}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(8080), tcp(8081), tcp(9092), tcp(8000), tcp(8002)}}},
			}))
			By("the policies admit exactly the pod's container ports, and select its pods")
			for _, c := range []struct {
				objs   rendered
				policy *networkingv1.NetworkPolicy
			}{{objs, policy}, {base, basePolicy}} {
				var served, admitted []int32
				pod := c.objs.deployment(userName).Spec.Template
				for _, container := range pod.Spec.Containers {
					for _, p := range container.Ports {
						served = append(served, p.ContainerPort)
					}
				}
				for _, p := range c.policy.Spec.Ingress[0].Ports {
					admitted = append(admitted, p.Port.IntVal)
				}
				Expect(admitted).To(ConsistOf(served))
				sel, err := metav1.LabelSelectorAsSelector(&c.policy.Spec.PodSelector)
				Expect(err).NotTo(HaveOccurred())
				Expect(sel.Matches(labels.Set(pod.Labels))).To(BeTrue())
			}

			By("the configuration: spec.userServer, nothing else")
			mpc := objs.mpc()
			Expect(mpc.Spec.UserServer).NotTo(BeNil())
			mpc.Spec.UserServer = nil
			Expect(mpc).To(Equal(base.mpc()))

			By("the addon-manager's flags do not change")
			Expect(objs.managerArgs()).To(Equal(base.managerArgs()))
		})

		It("runs cluster-proxy user-server beside the controllers with the chart's flags, the addon-manager's Secrets mounted read-only, hardened", func() {
			d := objs.deployment(userName)
			Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal(userName))
			c := containerNamed(d, "user-server")
			Expect(c.Image).To(Equal(defaultImage()))
			Expect(c.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
			Expect(c.Command).To(Equal([]string{"/cluster-proxy"}))
			Expect(c.Args).To(Equal([]string{
				"user-server",
				"--host=proxy-entrypoint." + releaseNamespace + ".svc",
				"--port=8090",
				"--proxy-ca-cert=/etc/proxy-server-ca/ca.crt",
				"--proxy-cert=/etc/proxy-client/tls.crt",
				"--proxy-key=/etc/proxy-client/tls.key",
				"--server-cert=/etc/user-server/tls.crt",
				"--server-key=/etc/user-server/tls.key",
				"--server-port=9092",
				"--service-proxy-ca-cert=/etc/proxy-server-ca/ca.crt",
				"--exposed-services-configmap=" + userserver.DefaultExposedServicesConfigMap,
			}))
			Expect(c.Env).To(Equal([]corev1.EnvVar{podNamespaceEnv}))
			Expect(c.Ports).To(Equal([]corev1.ContainerPort{
				{Name: "user-server", ContainerPort: 9092, Protocol: corev1.ProtocolTCP},
				{Name: "user-healthz", ContainerPort: 8000, Protocol: corev1.ProtocolTCP},
				{Name: "user-metrics", ContainerPort: 8002, Protocol: corev1.ProtocolTCP},
			}))
			Expect(c.LivenessProbe).To(Equal(&corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("user-healthz")}},
				InitialDelaySeconds: 5, PeriodSeconds: 10,
			}))
			Expect(c.ReadinessProbe).To(Equal(&corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("user-healthz")}},
				InitialDelaySeconds: 2, PeriodSeconds: 2,
			}))
			Expect(c.Resources).To(Equal(containerNamed(objs.deployment("cluster-proxy-addon-manager"), "manager").Resources))
			Expect(c.SecurityContext).To(Equal(hardenedContainer()))
			Expect(c.VolumeMounts).To(Equal([]corev1.VolumeMount{
				{Name: "proxy-server-ca", MountPath: "/etc/proxy-server-ca", ReadOnly: true},
				{Name: "proxy-client", MountPath: "/etc/proxy-client", ReadOnly: true},
				{Name: "user-server", MountPath: "/etc/user-server", ReadOnly: true},
			}))
			Expect(d.Spec.Template.Spec.Volumes).To(Equal([]corev1.Volume{
				{Name: "proxy-server-ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "proxy-server-ca"}}},
				{Name: "proxy-client", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "proxy-client"}}},
				{Name: "user-server", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cluster-proxy-user-serving-cert"}}},
			}))
			Expect(containerNamed(d, "controllers").VolumeMounts).To(BeEmpty(), "the controllers read the Secrets through the API")
		})

		It("passes flags the user-server parses and accepts, naming the proxy-servers' Service, the Secrets the addon-manager writes and the chart's ConfigMap, with the probes' and Service's ports served", func() {
			d := objs.deployment(userName)
			c := containerNamed(d, "user-server")
			opts := parseUserServerArgs(c.Args)
			mpc := objs.mpc()
			mpc.Default()

			By("--host and --port: the in-cluster Service of the configuration's proxy-servers, in their namespace, and its frontend port")
			Expect(mpc.Spec.ProxyServer.Namespace).To(Equal(d.Namespace), "the proxy-servers and their Secrets are in the release namespace")
			Expect(opts.Host).To(Equal(mpc.Spec.ProxyServer.InClusterServiceName + "." + mpc.Spec.ProxyServer.Namespace + ".svc"))
			Expect(opts.Host).To(Equal(pkgclient.ProxyServerName(mpc)+".svc"), "a name the proxy-server certificate carries")
			Expect(opts.Port).To(BeEquivalentTo(proxyv1alpha1.ProxyServerPort))

			By("the certificate files: keys of the Secrets the addon-manager writes in its namespace, mounted read-only")
			pod := d.Spec.Template.Spec
			type file struct{ secret, key string }
			at := func(path string) file {
				secret, key := mountedSecretFile(pod, c, path)
				return file{secret, key}
			}
			caFile := file{proxyv1alpha1.CASecretName, proxyv1alpha1.CASecretKey}
			Expect(at(opts.ProxyCACert)).To(Equal(caFile))
			Expect(at(opts.ServiceProxyCACert)).To(Equal(caFile), "the CA that signs the service-proxy certificate (the addon-manager's signer)")
			clientSecret := mpc.Spec.Authentication.Dump.Secrets.SigningProxyClientSecretName
			Expect(clientSecret).To(Equal(proxyv1alpha1.DefaultProxyClientSecretName))
			Expect(at(opts.ProxyCert)).To(Equal(file{clientSecret, corev1.TLSCertKey}))
			Expect(at(opts.ProxyKey)).To(Equal(file{clientSecret, corev1.TLSPrivateKeyKey}))
			Expect(at(opts.ServerCert)).To(Equal(file{proxyconfig.UserServerSecretName, corev1.TLSCertKey}))
			Expect(at(opts.ServerKey)).To(Equal(file{proxyconfig.UserServerSecretName, corev1.TLSPrivateKeyKey}))

			By("the ConfigMap: the chart's, in POD_NAMESPACE")
			Expect(objs.keys()).To(ContainElement(exposedServicesKey(opts.ExposedServicesConfigMap)))
			Expect(c.Env).To(ContainElement(corev1.EnvVar{
				Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			}))

			By("the ports: the probes where --health-bind-address serves, the Service's target where --server-port serves")
			port := func(name string) int {
				for _, p := range c.Ports {
					if p.Name == name {
						return int(p.ContainerPort)
					}
				}
				Fail("no container port " + name)
				return 0
			}
			_, health, err := net.SplitHostPort(opts.HealthBindAddress)
			Expect(err).NotTo(HaveOccurred())
			Expect(health).To(Equal(strconv.Itoa(port(c.LivenessProbe.HTTPGet.Port.StrVal))))
			Expect(health).To(Equal(strconv.Itoa(port(c.ReadinessProbe.HTTPGet.Port.StrVal))))
			svc := &corev1.Service{}
			objs.into(userService, svc)
			Expect(svc.Spec.Ports).To(HaveLen(1))
			Expect(opts.ServerPort).To(Equal(port(svc.Spec.Ports[0].TargetPort.StrVal)))

			Expect(opts.ExposedServicesConfigMap).To(Equal(userserver.DefaultExposedServicesConfigMap), "the chart's default name is the command's")
		})

		It("serves through Service cluster-proxy-addon-user, selecting the Deployment's pods, on the user-server's port", func() {
			svc := &corev1.Service{}
			objs.into(userService, svc)
			Expect(svc.Name).To(Equal(proxyconfig.UserServerServiceName), "the name the addon-manager's serving certificate carries")
			Expect(svc.Labels).To(HaveKeyWithValue("component", userName))
			Expect(svc.Spec).To(Equal(corev1.ServiceSpec{
				Type:     corev1.ServiceTypeClusterIP,
				Selector: map[string]string{"component": userName},
				Ports: []corev1.ServicePort{{
					Name: "user-server", Port: 9092, TargetPort: intstr.FromString("user-server"), Protocol: corev1.ProtocolTCP,
				}},
			}))
			pod := objs.deployment(userName).Spec.Template
			Expect(labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))).To(BeTrue(), "the Service selects the addon-user pods")
			for _, u := range objs {
				if u.GetKind() == "Deployment" && u.GetName() != userName {
					Expect(labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(objs.deployment(u.GetName()).Spec.Template.Labels))).To(BeFalse(), key(u))
				}
			}
			var named []string
			for _, c := range pod.Spec.Containers {
				for _, p := range c.Ports {
					if p.Name == svc.Spec.Ports[0].TargetPort.StrVal {
						named = append(named, c.Name)
						Expect(p.Protocol).To(Equal(svc.Spec.Ports[0].Protocol))
					}
				}
			}
			Expect(named).To(Equal([]string{"user-server"}), "the targetPort names the user-server's port, once")
		})

		It("lists the exposed services in the ConfigMap the user-server reads, as the user-server parses them", func(ctx SpecContext) {
			cm := &corev1.ConfigMap{}
			objs.into(cmKey, cm)
			Expect(cm.Data).To(HaveLen(1))
			Expect(cm.Data).To(HaveKey("services"))
			Expect(cm.BinaryData).To(BeEmpty())
			var entries []userserver.ExposedService
			Expect(yaml.UnmarshalStrict([]byte(cm.Data["services"]), &entries)).To(Succeed())
			Expect(entries).To(Equal(exposedServices))
			list, err := userserver.ParseAllowlist(cm.Data)
			Expect(err).NotTo(HaveOccurred())
			Expect(list.Len()).To(Equal(len(exposedServices)))
			Expect(list.Allows(userserver.Target{Proto: "https", Namespace: "monitoring", Name: "prometheus-k8s", Port: 9091})).To(BeTrue())
			Expect(list.Allows(userserver.Target{Proto: "http", Namespace: "monitoring", Name: "prometheus-k8s", Port: 9091})).To(BeFalse(), "the protocol is listed")
			Expect(list.Allows(userserver.Target{Proto: "https", Namespace: "monitoring", Name: "prometheus-k8s", Port: 9090})).To(BeFalse(), "the port is listed")
			Expect(list.Allows(userserver.Target{Proto: "http", Namespace: "default", Name: "hello", Port: 8000})).To(BeTrue(), "no port or protocol: any")
			Expect(list.Allows(userserver.Target{Proto: "http", Namespace: "default", Name: "not-listed", Port: 80})).To(BeFalse())

			By("no exposedServices: a list that admits nothing")
			none := mustRender(ctx, "--set", "enableServiceProxy=true,userServer.enabled=true")
			cm = &corev1.ConfigMap{}
			none.into(cmKey, cm)
			Expect(cm.Data).To(HaveKey("services"))
			list, err = userserver.ParseAllowlist(cm.Data)
			Expect(err).NotTo(HaveOccurred())
			Expect(list.Len()).To(BeZero())

			By("another exposedServicesConfigMapName: that ConfigMap, named to the user-server")
			named := mustRender(ctx, append([]string{"--set", "exposedServicesConfigMapName=allowed-services"}, userServerValues()...)...)
			Expect(named.keys()).NotTo(ContainElement(cmKey))
			cm = &corev1.ConfigMap{}
			named.into(exposedServicesKey("allowed-services"), cm)
			list, err = userserver.ParseAllowlist(cm.Data)
			Expect(err).NotTo(HaveOccurred())
			Expect(list.Len()).To(Equal(len(exposedServices)))
			Expect(parseUserServerArgs(containerNamed(named.deployment(userName), "user-server").Args).ExposedServicesConfigMap).To(Equal("allowed-services"))
		})

		It("asks the addon-manager for the user-server's serving certificate with the additional SANs, and only with userServer.enabled", func(ctx SpecContext) {
			Expect(objs.mpc().Spec.UserServer).To(Equal(&proxyv1alpha1.UserServerConfiguration{AdditionalSANs: userServerSANs}))

			By("without additional SANs: spec.userServer is {}")
			plain := mustRender(ctx, "--set", "enableServiceProxy=true,userServer.enabled=true")
			userServer, found, err := unstructured.NestedMap(plain.get(mpcKey).Object, "spec", "userServer")
			Expect(err).NotTo(HaveOccurred())
			Expect(found).To(BeTrue())
			Expect(userServer).To(BeEmpty())

			By("without the user-server: no spec.userServer, whatever else is on")
			for _, set := range []string{"enableServiceProxy=true", "enableServiceProxy=true,networkPolicies.enabled=true,exposedServicesConfigMapName=allowed-services"} {
				_, found, err := unstructured.NestedFieldNoCopy(mustRender(ctx, "--set", set).get(mpcKey).Object, "spec", "userServer")
				Expect(err).NotTo(HaveOccurred())
				Expect(found).To(BeFalse(), set)
			}
		})
	})

	It("uses a Hostname entrypoint when entrypointAddress is set, even with the load balancer flag", func(ctx SpecContext) {
		for _, set := range []string{
			"proxyServer.entrypointAddress=proxy.hub.example.com,proxyServer.port=443",
			"proxyServer.entrypointAddress=proxy.hub.example.com,proxyServer.port=443,proxyServer.entrypointLoadBalancer=true",
		} {
			mpc := mustRender(ctx, "--set", set).mpc()
			Expect(mpc.Spec.ProxyServer.Entrypoint).To(Equal(&proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
				Type:     proxyv1alpha1.EntryPointTypeHostname,
				Hostname: &proxyv1alpha1.EntryPointHostname{Value: "proxy.hub.example.com"},
				Port:     443,
			}), set)
		}
	})

	It("uses a LoadBalancerService entrypoint with the load balancer flag", func(ctx SpecContext) {
		mpc := mustRender(ctx, "--set", "proxyServer.entrypointLoadBalancer=true").mpc()
		Expect(mpc.Spec.ProxyServer.Entrypoint).To(Equal(&proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
			Type:                proxyv1alpha1.EntryPointTypeLoadBalancerService,
			LoadBalancerService: &proxyv1alpha1.EntryPointLoadBalancerService{Name: "proxy-agent-entrypoint"},
			Port:                8091,
		}))
	})

	It("installs by a given Placement without creating one", func(ctx SpecContext) {
		for _, c := range []struct {
			set, namespace string
		}{
			{"installByPlacement.placementName=with-proxy,installByPlacement.placementNamespace=placements", "placements"},
			{"installByPlacement.placementName=with-proxy", releaseNamespace},
		} {
			objs := mustRender(ctx, "--set", c.set)
			Expect(objs.keys()).NotTo(ContainElement(HavePrefix("Placement/")), c.set)
			Expect(objs.keys()).NotTo(ContainElement(HavePrefix("ManagedClusterSetBinding/")), c.set)
			Expect(objs.cma().Spec.InstallStrategy.Placements).To(ConsistOf(HaveField("PlacementRef", addonapiv1beta1.PlacementRef{
				Name: "with-proxy", Namespace: c.namespace,
			})), c.set)
		}
	})

	It("admits only the served ports with network policies, and passes them on to the agents", func(ctx SpecContext) {
		objs := mustRender(ctx, "--set", "networkPolicies.enabled=true")
		Expect(objs.managerArgs()).To(ContainElement("--enable-network-policies=true"))
		Expect(objs.keys()).To(ContainElements(
			"NetworkPolicy/"+releaseNamespace+"/cluster-proxy-addon-manager",
			"NetworkPolicy/"+releaseNamespace+"/cluster-proxy-proxy-server",
		))
		var policies []string
		for _, k := range objs.keys() {
			if strings.HasPrefix(k, "NetworkPolicy/") {
				policies = append(policies, k)
			}
		}
		Expect(policies).To(HaveLen(2), "the addon-manager's and the proxy-servers'")

		policy := func(name string) *networkingv1.NetworkPolicy {
			np := &networkingv1.NetworkPolicy{}
			objs.into("NetworkPolicy/"+releaseNamespace+"/"+name, np)
			Expect(np.Spec.PolicyTypes).To(Equal([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}))
			return np
		}
		ports := func(np *networkingv1.NetworkPolicy) []int32 {
			var out []int32
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					out = append(out, p.Port.IntVal)
				}
			}
			return out
		}
		selects := func(np *networkingv1.NetworkPolicy, podLabels map[string]string) bool {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			Expect(err).NotTo(HaveOccurred())
			return sel.Matches(labels.Set(podLabels))
		}

		manager := policy("cluster-proxy-addon-manager")
		Expect(ports(manager)).To(ConsistOf(int32(58080), int32(58081)))
		Expect(selects(manager, objs.deployment("cluster-proxy-addon-manager").Spec.Template.Labels)).To(BeTrue())

		server := policy("cluster-proxy-proxy-server")
		Expect(ports(server)).To(ConsistOf(int32(8090), int32(8091), int32(8092)))
		Expect(selects(server, map[string]string{proxyv1alpha1.LabelComponentName: proxyv1alpha1.ComponentProxyServer})).To(BeTrue(),
			"the policy selects the proxy-server pods the addon-manager deploys")
		Expect(selects(server, objs.deployment("cluster-proxy-addon-manager").Spec.Template.Labels)).To(BeFalse())
	})

	It("passes images, replicas, namespaces, pull policies and node placement where they belong", func(ctx SpecContext) {
		objs := mustRender(ctx,
			"--set", "registry=mirror.example.com:5000/ocm/,image=proxy,tag=v9.9.9,replicas=3",
			"--set", "proxyServerImage=mirror.example.com/server,proxyAgentImage=mirror.example.com/agent",
			"--set", "spokeAddonNamespace=proxy-agents,enableKubeApiProxy=false,enableServiceProxy=true,userServer.enabled=true",
			"--set", "imagePullPolicy=Always,proxyServer.imagePullPolicy=Never",
			"--set-json", `nodeSelector={"node-role.kubernetes.io/infra":""}`,
			"--set-json", `tolerations=[{"key":"node-role.kubernetes.io/infra","operator":"Exists","effect":"NoSchedule"}]`,
			"--set-json", `resources={"limits":{"memory":"1Gi"}}`,
		)
		image := "mirror.example.com:5000/ocm/proxy:v9.9.9"
		Expect(objs.managerArgs()).To(ContainElements(
			"--agent-image-name="+image, "--agent-install-namespace=proxy-agents", "--enable-kube-api-proxy=false",
			"--image-pull-policy=Never",
		))
		toleration := corev1.Toleration{Key: "node-role.kubernetes.io/infra", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
		d := objs.deployment("cluster-proxy-addon-manager")
		Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
		Expect(d.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{"node-role.kubernetes.io/infra": ""}))
		Expect(d.Spec.Template.Spec.Tolerations).To(Equal([]corev1.Toleration{toleration}))
		Expect(d.Spec.Template.Spec.Containers).To(HaveLen(1))
		c := containerNamed(d, "manager")
		Expect(c.Image).To(Equal(image))
		Expect(c.ImagePullPolicy).To(Equal(corev1.PullAlways))
		Expect(c.Resources.Limits.Memory().String()).To(Equal("1Gi"))
		Expect(c.Resources.Requests.Cpu().String()).To(Equal("50m"))
		By("the addon-user Deployment (controllers and user-server): the same image, replicas, hub pull policy, node placement and resources")
		u := objs.deployment(userName)
		Expect(u.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
		Expect(u.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{"node-role.kubernetes.io/infra": ""}))
		Expect(u.Spec.Template.Spec.Tolerations).To(Equal([]corev1.Toleration{toleration}))
		Expect(u.Spec.Template.Spec.Containers).To(HaveLen(2))
		for _, name := range []string{"controllers", "user-server"} {
			uc := containerNamed(u, name)
			Expect(uc.Image).To(Equal(image), name)
			Expect(uc.ImagePullPolicy).To(Equal(corev1.PullAlways), name)
			Expect(uc.Resources).To(Equal(c.Resources), name)
		}
		mpc := objs.mpc()
		Expect(mpc.Spec.ProxyServer.Image).To(Equal("mirror.example.com/server:v9.9.9"))
		Expect(mpc.Spec.ProxyAgent.Image).To(Equal("mirror.example.com/agent:v9.9.9"))
		Expect(mpc.Spec.ProxyServer.Replicas).To(BeEquivalentTo(3))
		Expect(mpc.Spec.ProxyAgent.Replicas).To(BeEquivalentTo(3))
		Expect(mpc.Spec.ProxyServer.NodePlacement.NodeSelector).To(Equal(map[string]string{"node-role.kubernetes.io/infra": ""}))
		Expect(mpc.Spec.ProxyServer.NodePlacement.Tolerations).To(Equal([]corev1.Toleration{toleration}))
	})

	It("renders a digest tag and an image without registry", func(ctx SpecContext) {
		digest := "sha256:" + strings.Repeat("ab", 32)
		objs := mustRender(ctx, "--set", "registry=,tag="+digest)
		Expect(objs.managerArgs()).To(ContainElement("--agent-image-name=cluster-proxy@" + digest))
		Expect(objs.mpc().Spec.ProxyServer.Image).To(Equal("quay.io/open-cluster-management/cluster-proxy@" + digest))
	})

	DescribeTable("refuses bad values with a message naming the field",
		func(ctx SpecContext, want string, args ...string) {
			_, err := render(ctx, args...)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("a pull policy outside the enum", "at '/proxyServer/imagePullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
			"--set", "proxyServer.imagePullPolicy=Sometimes"),
		Entry("the hub pull policy outside the enum", "at '/imagePullPolicy'", "--set", "imagePullPolicy=sometimes"),
		Entry("replicas as a string", "at '/replicas': got string, want integer", "--set-string", "replicas=three"),
		Entry("no replicas", "at '/replicas': minimum", "--set", "replicas=0"),
		Entry("a misspelt value", "additional properties 'replica' not allowed", "--set", "replica=3"),
		Entry("a misspelt nested value", "at '/userServer': additional properties 'enable' not allowed", "--set", "userServer.enable=true"),
		Entry("a boolean as a string", "at '/enableServiceProxy': got string, want boolean", "--set-string", "enableServiceProxy=yes"),
		Entry("a port out of range", "at '/proxyServer/port': maximum", "--set", "proxyServer.port=70000"),
		Entry("an entrypoint address with a scheme", "at '/proxyServer/entrypointAddress'", "--set", "proxyServer.entrypointAddress=https://proxy.example.com"),
		Entry("an invalid agent namespace", "at '/spokeAddonNamespace'", "--set", "spokeAddonNamespace=Proxy_Agents"),
		Entry("an exposed service without its name", "at '/exposedServices/0': missing property 'service'",
			"--set-json", `exposedServices=[{"namespace":"monitoring"}]`),
		Entry("an exposed service with an unknown protocol", "at '/exposedServices/0/protocol'",
			"--set-json", `exposedServices=[{"namespace":"monitoring","service":"p","protocol":"ftp"}]`),
		Entry("an unknown resources key", "at '/resources': additional properties 'request' not allowed", "--set", "resources.request.cpu=1"),
		// Values that need another: refused, naming both, rather than
		// installed doing nothing.
		Entry("the user-server without the service-proxy", userServerNeedsServiceProxy,
			"--set", "userServer.enabled=true"),
		Entry("the user-server with the service-proxy switched off", userServerNeedsServiceProxy,
			"--set", "userServer.enabled=true,enableServiceProxy=false,networkPolicies.enabled=true"),
		Entry("the user-server's extra SANs without the user-server", sansNeedUserServer,
			"--set", "userServer.additionalSANs={cluster-proxy.apps.example.com}"),
		Entry("the user-server's extra SANs with the service-proxy only", sansNeedUserServer,
			"--set", "enableServiceProxy=true,userServer.additionalSANs={cluster-proxy.apps.example.com}"),
		Entry("exposed services without the user-server", exposedServicesNeedUserServer,
			"--set-json", `exposedServices=[{"namespace":"monitoring","service":"prometheus-k8s","port":9091,"protocol":"https"}]`),
		Entry("exposed services with the service-proxy only", exposedServicesNeedUserServer,
			"--set", "enableServiceProxy=true", "--set-json", `exposedServices=[{"namespace":"monitoring","service":"prometheus-k8s"}]`),
		Entry("an exposed-services ConfigMap name that is no object name", "at '/exposedServicesConfigMapName'",
			"--set", "userServer.enabled=true,enableServiceProxy=true,exposedServicesConfigMapName=Allowed_Services"),
		Entry("a user-server SAN with a path", "at '/userServer/additionalSANs/0'",
			"--set", "userServer.enabled=true,enableServiceProxy=true", "--set-json", `userServer.additionalSANs=["user.example.com/x"]`),
		Entry("the ClusterProfile feature gate without the user-server", clusterProfileNeedsUserServer,
			"--set", "featureGates.clusterProfile=true"),
		Entry("the ClusterProfile feature gate with the service-proxy but not the user-server", clusterProfileNeedsUserServer,
			"--set", "enableServiceProxy=true,featureGates.clusterProfile=true"),
		Entry("a placement namespace without a placement", "installByPlacement.placementNamespace is set without installByPlacement.placementName",
			"--set", "installByPlacement.placementNamespace=placements"),
	)
})
