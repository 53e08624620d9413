package helm_test

import (
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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
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

// Why the chart refuses the values of the parts this version does not ship.
const userServerNotBuilt = "the user-server is not available in this version of cluster-proxy (the cluster-proxy binary has no user-server command yet)"

// impersonationOffRefused is why the chart refuses enableImpersonation=false.
const impersonationOffRefused = `enableImpersonation: false is not supported: the addon-manager always lets the agents review hub tokens; ` +
	`turn impersonation off per cluster with the AddOnDeploymentConfig customizedVariable enableImpersonation="false" (remove the value or set it to true)`

// acceptedProfiles are value profiles that render, the defaults first;
// between them they set every value the chart accepts to something other
// than its default, enableImpersonation aside (only its default is
// accepted; the refused values are in the "refuses bad values" table).
// Lint, RBAC and the API server specs run them all.
var acceptedProfiles = [][]string{
	nil,
	{"--set", "proxyServer.entrypointAddress=proxy.hub.example.com,proxyServer.port=443"},
	{"--set", "proxyServer.entrypointLoadBalancer=true,proxyServer.imagePullPolicy=Never"},
	{"--set", "installByPlacement.placementName=mine,installByPlacement.placementNamespace=placements"},
	{
		"--set", "networkPolicies.enabled=true,enableKubeApiProxy=false,replicas=2,spokeAddonNamespace=proxy-agents",
		"--set", "registry=mirror.example.com/ocm,image=proxy,tag=v9.9.9,imagePullPolicy=Always",
		"--set", "proxyServerImage=mirror.example.com/server,proxyAgentImage=mirror.example.com/agent,enableImpersonation=true",
		"--set", "enableServiceProxy=true",
		"--set-json", `nodeSelector={"node-role.kubernetes.io/infra":""}`,
		"--set-json", `tolerations=[{"key":"node-role.kubernetes.io/infra","operator":"Exists","effect":"NoSchedule"}]`,
		"--set-json", `resources={"requests":{"cpu":"100m"},"limits":{"memory":"1Gi"}}`,
	},
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

// setsServiceProxy tells whether a value profile sets enableServiceProxy=true.
func setsServiceProxy(profile []string) bool {
	for i, arg := range profile {
		if arg != "--set" || i+1 == len(profile) {
			continue
		}
		if slices.Contains(strings.Split(profile[i+1], ","), "enableServiceProxy=true") {
			return true
		}
	}
	return false
}

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

	It("runs only binaries and commands the image ships, and no user-server, under every profile", func(ctx SpecContext) {
		shipped := shippedBinaries()
		commands := clusterProxyCommands()
		Expect(slices.ContainsFunc(acceptedProfiles, setsServiceProxy)).To(BeTrue(), "a profile runs the addon-user Deployment")
		for _, profile := range acceptedProfiles {
			objs := mustRender(ctx, profile...)
			serviceProxy := setsServiceProxy(profile)
			var deployments []string
			for _, u := range objs {
				if u.GetKind() != "Deployment" {
					continue
				}
				deployments = append(deployments, u.GetName())
				d := objs.deployment(u.GetName())
				for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
					Expect(c.Name).NotTo(ContainSubstring("user-server"), "profile %v: Deployment %s", profile, d.Name)
					Expect(c.Command).NotTo(BeEmpty(), "profile %v: container %s", profile, c.Name)
					Expect(shipped).To(ContainElement(c.Command[0]), "profile %v: container %s", profile, c.Name)
					if c.Command[0] == "/cluster-proxy" {
						Expect(c.Command).To(HaveLen(1), "profile %v: container %s: the subcommand is the first argument", profile, c.Name)
						Expect(c.Args).NotTo(BeEmpty(), "profile %v: container %s runs /cluster-proxy without a subcommand", profile, c.Name)
						Expect(commands).To(ContainElement(c.Args[0]), "profile %v: container %s", profile, c.Name)
						Expect(c.Args[0]).NotTo(Equal("user-server"), "profile %v: container %s", profile, c.Name)
					}
				}
			}
			if serviceProxy {
				Expect(deployments).To(ConsistOf("cluster-proxy-addon-manager", userName), "profile %v", profile)
				Expect(containerNamed(objs.deployment(userName), "controllers").Command).To(Equal([]string{"/cluster-proxy"}), "profile %v", profile)
			} else {
				Expect(deployments).To(ConsistOf("cluster-proxy-addon-manager"), "profile %v", profile)
			}
			Expect(objs.keys()).NotTo(ContainElement(HavePrefix("Service/")), "profile %v: no user-server Service", profile)
			Expect(objs.mpc().Spec.UserServer).To(BeNil(), "profile %v", profile)
			Expect(objs.managerArgs()).To(ContainElements(fmt.Sprintf("--enable-service-proxy=%t", serviceProxy), "--feature-gates=ClusterProfile=false"), "profile %v", profile)
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
			Expect(c.SecurityContext).To(Equal(&corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				Privileged:               ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				RunAsNonRoot:             ptr.To(true),
			}))
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
			Expect(c.Env).To(Equal([]corev1.EnvVar{{
				Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			}}))
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
			Expect(c.SecurityContext).To(Equal(&corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				Privileged:               ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				RunAsNonRoot:             ptr.To(true),
			}))
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
			"--set", "spokeAddonNamespace=proxy-agents,enableKubeApiProxy=false,enableServiceProxy=true",
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
		By("the addon-user Deployment: the same image, replicas, hub pull policy, node placement and resources")
		u := objs.deployment(userName)
		Expect(u.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
		Expect(u.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{"node-role.kubernetes.io/infra": ""}))
		Expect(u.Spec.Template.Spec.Tolerations).To(Equal([]corev1.Toleration{toleration}))
		Expect(u.Spec.Template.Spec.Containers).To(HaveLen(1))
		uc := containerNamed(u, "controllers")
		Expect(uc.Image).To(Equal(image))
		Expect(uc.ImagePullPolicy).To(Equal(corev1.PullAlways))
		Expect(uc.Resources).To(Equal(c.Resources))
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
		Entry("impersonation off", impersonationOffRefused, "--set", "enableImpersonation=false"),
		Entry("impersonation off with the service-proxy", impersonationOffRefused, "--set", "enableServiceProxy=true,enableImpersonation=false"),
		// Parts this version does not ship: refused, naming the value,
		// rather than installed doing nothing or running a missing binary.
		Entry("the user-server", "userServer.enabled: "+userServerNotBuilt+"; leave it false",
			"--set", "userServer.enabled=true"),
		Entry("the user-server's extra SANs", "userServer.additionalSANs: only the user-server's serving certificate uses it, and "+userServerNotBuilt+"; leave it empty",
			"--set", "userServer.additionalSANs={cluster-proxy.apps.example.com}"),
		Entry("exposed services", "exposedServices: only the user-server reads it, and "+userServerNotBuilt+"; leave it empty",
			"--set-json", `exposedServices=[{"namespace":"monitoring","service":"prometheus-k8s","port":9091,"protocol":"https"}]`),
		Entry("another exposed-services ConfigMap", "exposedServicesConfigMapName: only the user-server reads it, and "+userServerNotBuilt+"; leave it at cluster-proxy-exposed-services",
			"--set", "exposedServicesConfigMapName=allowed-services"),
		Entry("the ClusterProfile feature gate", "featureGates.clusterProfile: the ClusterProfile feature is not available in this version of cluster-proxy (the addon-manager refuses the gate); leave it false",
			"--set", "featureGates.clusterProfile=true"),
		Entry("the user-server with the service-proxy", "userServer.enabled: "+userServerNotBuilt,
			"--set", "userServer.enabled=true,enableServiceProxy=true,networkPolicies.enabled=true"),
		Entry("exposed services with the service-proxy", "exposedServices: only the user-server reads it, and "+userServerNotBuilt,
			"--set", "enableServiceProxy=true", "--set-json", `exposedServices=[{"namespace":"monitoring","service":"prometheus-k8s"}]`),
		Entry("the ClusterProfile feature gate with the service-proxy", "featureGates.clusterProfile: the ClusterProfile feature is not available",
			"--set", "enableServiceProxy=true,featureGates.clusterProfile=true"),
		Entry("a placement namespace without a placement", "installByPlacement.placementNamespace is set without installByPlacement.placementName",
			"--set", "installByPlacement.placementNamespace=placements"),
	)
})
