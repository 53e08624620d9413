package proxyconfig

import (
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Names of the hub objects the reconciler creates in the proxy-server
// namespace.
const (
	// ServiceAccountName runs the proxy-server pods.
	ServiceAccountName = "cluster-proxy"
	// PortForwardRoleName lets addon-agents port-forward to proxy-server pods.
	PortForwardRoleName = "cluster-proxy-addon-agent:portforward"
	// HealthReportRoleName lets the proxy-servers write their health
	// reports (internal/healthreport).
	HealthReportRoleName = "cluster-proxy-proxy-server:health-report"
	// ContainerName is the proxy-server container.
	ContainerName = "proxy-server"
)

// agentKeepalive is the proxy-server's --keepalive-time: the least its
// agent port accepts from agents too.
const agentKeepalive = 30 * time.Second

// Mount paths of the proxy-server's certificates.
const (
	serverCAMountPath   = "/etc/server-ca-pki"
	serverCertMountPath = "/etc/server-pki"
	agentCertMountPath  = "/etc/agent-pki"
)

// ManagedByLabel marks every object the addon-manager writes (value
// ManagedByValue); its cache only holds objects with this label.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// ManagedByValue is the app.kubernetes.io/managed-by label of every object
// the addon-manager creates.
const ManagedByValue = "cluster-proxy-addon-manager"

// render holds what the proxy-server objects of one ManagedProxyConfiguration
// are built from.
type render struct {
	mpc             *proxyv1alpha1.ManagedProxyConfiguration
	imagePullPolicy corev1.PullPolicy
	// tlsArgs are the proxy-server flags from the OCM TLS profile.
	tlsArgs []string
	// caBundle is every CA to trust (signer.Authority.BundlePEM): the
	// ca.crt of each Secret.
	caBundle []byte
}

func (r *render) namespace() string { return r.mpc.Spec.ProxyServer.Namespace }

func (r *render) owner() *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(proxyv1alpha1.SchemeGroupVersion.String()).
		WithKind("ManagedProxyConfiguration").
		WithName(r.mpc.Name).
		WithUID(r.mpc.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

func (r *render) labels() map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue}
}

func (r *render) selector() map[string]string {
	return map[string]string{proxyv1alpha1.LabelComponentName: proxyv1alpha1.ComponentProxyServer}
}

func (r *render) ports() proxyv1alpha1.ManagedProxyConfigurationDeployPorts {
	return r.mpc.DeployPorts()
}

func (r *render) serviceAccount() *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(ServiceAccountName, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner())
}

// service is the in-cluster Service in front of the proxy-servers.
func (r *render) service() *corev1ac.ServiceApplyConfiguration {
	ports := r.ports()
	return corev1ac.Service(r.mpc.Spec.ProxyServer.InClusterServiceName, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(r.selector()).
			WithPorts(
				servicePort("proxy-server", proxyv1alpha1.ProxyServerPort, ports.ProxyServer),
				servicePort("agent-server", proxyv1alpha1.AgentServerPort, ports.AgentServer),
			))
}

// loadBalancerService is the LoadBalancer Service agents dial for a
// LoadBalancerService entrypoint: agent-server on the entrypoint port, and
// proxy-server on 8090 unless that is the entrypoint port.
func (r *render) loadBalancerService() *corev1ac.ServiceApplyConfiguration {
	ep := r.mpc.Spec.ProxyServer.Entrypoint
	annotations := map[string]string{}
	if ep.LoadBalancerService != nil {
		for _, a := range ep.LoadBalancerService.Annotations {
			annotations[a.Key] = a.Value
		}
	}
	port := ep.Port
	if port == 0 {
		port = proxyv1alpha1.DefaultEntrypointPort
	}
	ports := r.ports()
	svcPorts := []*corev1ac.ServicePortApplyConfiguration{servicePort("agent-server", port, ports.AgentServer)}
	if port != proxyv1alpha1.ProxyServerPort {
		svcPorts = append([]*corev1ac.ServicePortApplyConfiguration{
			servicePort("proxy-server", proxyv1alpha1.ProxyServerPort, ports.ProxyServer),
		}, svcPorts...)
	}
	svc := corev1ac.Service(r.mpc.LoadBalancerServiceName(), r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeLoadBalancer).
			WithSelector(r.selector()).
			WithPorts(svcPorts...))
	if len(annotations) > 0 {
		svc.WithAnnotations(annotations)
	}
	return svc
}

func servicePort(name string, port, target int32) *corev1ac.ServicePortApplyConfiguration {
	return corev1ac.ServicePort().WithName(name).WithProtocol(corev1.ProtocolTCP).
		WithPort(port).WithTargetPort(intstr.FromInt32(target))
}

// caSecret publishes the CA certificate (never its key) for clients and
// agents.
func (r *render) caSecret() *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(proxyv1alpha1.CASecretName, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{proxyv1alpha1.CASecretKey: r.caBundle})
}

// tlsSecret is a certificate Secret of type kubernetes.io/tls.
func (r *render) tlsSecret(name string, certPEM, keyPEM []byte) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(name, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithType(corev1.SecretTypeTLS).
		WithData(map[string][]byte{
			corev1.TLSCertKey:       certPEM,
			corev1.TLSPrivateKeyKey: keyPEM,
			"ca.crt":                r.caBundle,
		})
}

// portForwardRole lets cluster-proxy agents find proxy-server pods and
// port-forward to them (the PortForward entrypoint's relay).
func (r *render) portForwardRole() *rbacv1ac.RoleApplyConfiguration {
	return rbacv1ac.Role(PortForwardRoleName, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithRules(
			rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods").WithVerbs("get", "list", "watch"),
			rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods/portforward").WithVerbs("get", "create"),
		)
}

func (r *render) portForwardRoleBinding() *rbacv1ac.RoleBindingApplyConfiguration {
	return rbacv1ac.RoleBinding(PortForwardRoleName, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(PortForwardRoleName)).
		WithSubjects(rbacv1ac.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.GroupKind).WithName(identity.AgentGroup))
}

// healthReportRole lets the proxy-servers write their health report
// ConfigMaps (server-side apply: create and patch).
func (r *render) healthReportRole() *rbacv1ac.RoleApplyConfiguration {
	return rbacv1ac.Role(HealthReportRoleName, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithRules(rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("configmaps").WithVerbs("get", "create", "patch"))
}

func (r *render) healthReportRoleBinding() *rbacv1ac.RoleBindingApplyConfiguration {
	return rbacv1ac.RoleBinding(HealthReportRoleName, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(HealthReportRoleName)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithNamespace(r.namespace()).WithName(ServiceAccountName))
}

// args are the proxy-server's arguments: ours first, then the TLS profile,
// then the user's additionalArgs (so they can override any of ours).
func (r *render) args() []string {
	server := r.mpc.Spec.ProxyServer
	ports := r.ports()
	args := []string{
		"--server-count=" + strconv.Itoa(int(server.Replicas)),
		"--proxy-strategies=destHost",
		"--server-ca-cert=" + serverCAMountPath + "/ca.crt",
		"--server-cert=" + serverCertMountPath + "/" + corev1.TLSCertKey,
		"--server-key=" + serverCertMountPath + "/" + corev1.TLSPrivateKeyKey,
		"--cluster-ca-cert=" + serverCAMountPath + "/ca.crt",
		"--cluster-cert=" + agentCertMountPath + "/" + corev1.TLSCertKey,
		"--cluster-key=" + agentCertMountPath + "/" + corev1.TLSPrivateKeyKey,
		fmt.Sprintf("--server-port=%d", ports.ProxyServer),
		fmt.Sprintf("--agent-port=%d", ports.AgentServer),
		fmt.Sprintf("--health-port=%d", ports.HealthServer),
		fmt.Sprintf("--admin-port=%d", ports.AdminServer),
		// An agent gone without a word (a cut network, a frozen node)
		// leaves the server's lists, and its addon's Available, within a
		// minute instead of ANP's default hour: the server pings an agent
		// idle for this long and drops it after 20 s without an answer.
		"--keepalive-time=" + agentKeepalive.String(),
		// The addon health controller reads the reports (healthReportRole).
		"--health-report",
	}
	args = append(args, r.tlsArgs...)
	return append(args, server.AdditionalArgs...)
}

// deployment runs the proxy-servers.
func (r *render) deployment() *appsv1ac.DeploymentApplyConfiguration {
	server := r.mpc.Spec.ProxyServer
	secrets := r.mpc.Spec.Authentication.Dump.Secrets
	ports := r.ports()
	podLabels := r.labels()
	for k, v := range r.selector() {
		podLabels[k] = v
	}

	container := corev1ac.Container().
		WithName(ContainerName).
		WithImage(server.Image).
		WithImagePullPolicy(r.imagePullPolicy).
		WithCommand("/proxy-server").
		WithArgs(r.args()...).
		// The health report's ConfigMap is named after the pod, lives in its
		// namespace and is owned by it.
		WithEnv(
			fieldEnv(command.PodNameEnv, "metadata.name"),
			fieldEnv(command.PodNamespaceEnv, "metadata.namespace"),
			fieldEnv(command.PodUIDEnv, "metadata.uid"),
		).
		WithPorts(
			corev1ac.ContainerPort().WithName("proxy-server").WithContainerPort(ports.ProxyServer).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("agent-server").WithContainerPort(ports.AgentServer).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("health").WithContainerPort(ports.HealthServer).WithProtocol(corev1.ProtocolTCP),
		).
		// ANP's /readyz turns ready only once an agent is connected, and agents
		// connect through the Services, so readiness is "accepting agents".
		WithLivenessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/healthz").WithPort(intstr.FromInt32(ports.HealthServer))).
			WithInitialDelaySeconds(10).WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithReadinessProbe(corev1ac.Probe().
			WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromInt32(ports.AgentServer))).
			WithPeriodSeconds(5)).
		WithResources(corev1ac.ResourceRequirements().WithRequests(corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		})).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithPrivileged(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))).
		WithVolumeMounts(
			corev1ac.VolumeMount().WithName("proxy-server-ca").WithMountPath(serverCAMountPath).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("proxy-server-cert").WithMountPath(serverCertMountPath).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("agent-server-cert").WithMountPath(agentCertMountPath).WithReadOnly(true),
		)

	pod := corev1ac.PodSpec().
		WithServiceAccountName(ServiceAccountName).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container).
		WithVolumes(
			secretVolume("proxy-server-ca", proxyv1alpha1.CASecretName),
			secretVolume("proxy-server-cert", secrets.SigningProxyServerSecretName),
			secretVolume("agent-server-cert", secrets.SigningAgentServerSecretName),
		)
	if len(server.NodePlacement.NodeSelector) > 0 {
		pod.WithNodeSelector(server.NodePlacement.NodeSelector)
	}
	for i := range server.NodePlacement.Tolerations {
		pod.WithTolerations(toleration(&server.NodePlacement.Tolerations[i]))
	}

	return appsv1ac.Deployment(r.mpc.Name, r.namespace()).
		WithLabels(r.labels()).WithOwnerReferences(r.owner()).
		WithAnnotations(map[string]string{
			proxyv1alpha1.AnnotationConfigurationGeneration: strconv.FormatInt(r.mpc.Generation, 10),
		}).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(server.Replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(r.selector())).
			WithStrategy(appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType)).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(podLabels).
				WithSpec(pod)))
}

// fieldEnv is an environment variable from the downward API.
func fieldEnv(name, fieldPath string) *corev1ac.EnvVarApplyConfiguration {
	return corev1ac.EnvVar().WithName(name).
		WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath(fieldPath)))
}

func secretVolume(name, secret string) *corev1ac.VolumeApplyConfiguration {
	return corev1ac.Volume().WithName(name).
		WithSecret(corev1ac.SecretVolumeSource().WithSecretName(secret))
}

func toleration(t *corev1.Toleration) *corev1ac.TolerationApplyConfiguration {
	ac := corev1ac.Toleration()
	if t.Key != "" {
		ac.WithKey(t.Key)
	}
	if t.Operator != "" {
		ac.WithOperator(t.Operator)
	}
	if t.Value != "" {
		ac.WithValue(t.Value)
	}
	if t.Effect != "" {
		ac.WithEffect(t.Effect)
	}
	if t.TolerationSeconds != nil {
		ac.WithTolerationSeconds(*t.TolerationSeconds)
	}
	return ac
}
