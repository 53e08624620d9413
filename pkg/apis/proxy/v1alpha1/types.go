package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultName is the name of the ManagedProxyConfiguration that the Helm
// chart installs and the ClusterManagementAddOn references by default.
const DefaultName = "cluster-proxy"

// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:printcolumn:name="Entrypoint",type=string,JSONPath=`.spec.proxyServer.entrypoint.type`,description="How proxy-agents reach the proxy-servers"
// +kubebuilder:printcolumn:name="Server Replicas",type=integer,JSONPath=`.spec.proxyServer.replicas`
// +kubebuilder:printcolumn:name="Agent Replicas",type=integer,JSONPath=`.spec.proxyAgent.replicas`,priority=1
// +kubebuilder:printcolumn:name="Deployed",type=string,JSONPath=`.status.conditions[?(@.type=="ProxyServerDeployed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ManagedProxyConfiguration configures the cluster-proxy addon: the hub
// proxy-servers the addon-manager deploys, how proxy-agents on managed
// clusters reach them, and the certificates that secure both ends.
type ManagedProxyConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired configuration.
	// +required
	Spec ManagedProxyConfigurationSpec `json:"spec"`

	// Status is what the addon-manager last observed and did.
	// +optional
	Status ManagedProxyConfigurationStatus `json:"status,omitempty"`
}

// ManagedProxyConfigurationSpec is the desired configuration of the
// cluster-proxy addon.
type ManagedProxyConfigurationSpec struct {
	// Authentication configures the certificate authority and the Secrets
	// holding the certificates of the proxy-servers and their clients.
	// +required
	Authentication ManagedProxyConfigurationAuthentication `json:"authentication"`

	// ProxyServer configures the konnectivity proxy-servers on the hub.
	// +required
	ProxyServer ManagedProxyConfigurationProxyServer `json:"proxyServer"`

	// ProxyAgent configures the proxy-agents deployed to every managed cluster.
	// +required
	ProxyAgent ManagedProxyConfigurationProxyAgent `json:"proxyAgent"`

	// Deploy holds the ports the proxy-server container listens on.
	// +optional
	Deploy *ManagedProxyConfigurationDeploy `json:"deploy,omitempty"`

	// UserServer, when present, makes the addon-manager issue and rotate the
	// serving certificate of the HTTPS user-server (Secret
	// cluster-proxy-user-serving-cert).
	// +optional
	UserServer *UserServerConfiguration `json:"userServer,omitempty"`
}

// ManagedProxyConfigurationAuthentication configures certificate signing and
// where the issued certificates are stored.
type ManagedProxyConfigurationAuthentication struct {
	// Signer chooses the certificate authority that signs the proxy-server,
	// agent-server and proxy-client certificates.
	// +optional
	// +kubebuilder:default={}
	Signer ManagedProxyConfigurationCertificateSigner `json:"signer"`

	// Dump names the Secrets the issued certificates are written to.
	// +optional
	// +kubebuilder:default={}
	Dump ManagedProxyConfigurationCertificateDump `json:"dump"`
}

// SignerType names a kind of certificate authority.
// +kubebuilder:validation:Enum=SelfSigned;Provided;CertManager
type SignerType string

const (
	// SignerTypeSelfSigned makes the addon-manager create and keep its own CA.
	SignerTypeSelfSigned SignerType = "SelfSigned"
	// SignerTypeProvided is reserved for a CA supplied by the user. It is
	// accepted for compatibility; the addon-manager reports it as unsupported.
	SignerTypeProvided SignerType = "Provided"
	// SignerTypeCertManager is reserved for cert-manager issued certificates.
	// It is accepted for compatibility; the addon-manager reports it as
	// unsupported.
	SignerTypeCertManager SignerType = "CertManager"
)

// ManagedProxyConfigurationCertificateSigner chooses and configures the CA.
type ManagedProxyConfigurationCertificateSigner struct {
	// Type is the kind of CA. Only SelfSigned is implemented.
	// +optional
	// +kubebuilder:default=SelfSigned
	Type SignerType `json:"type,omitempty"`

	// SelfSigned configures the self-signed CA.
	// +optional
	SelfSigned *SelfSignedSigner `json:"selfSigned,omitempty"`
}

// SelfSignedSigner configures certificates issued by the self-signed CA.
type SelfSignedSigner struct {
	// AdditionalSANs are extra subject alternative names (DNS names or IP
	// addresses) added to the proxy-server, agent-server and proxy-client
	// certificates.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	AdditionalSANs []string `json:"additionalSANs,omitempty"`
}

// ManagedProxyConfigurationCertificateDump names where certificates go.
type ManagedProxyConfigurationCertificateDump struct {
	// Secrets names the certificate Secrets in the proxy-server namespace.
	// +optional
	// +kubebuilder:default={}
	Secrets CertificateSigningSecrets `json:"secrets"`
}

// CertificateSigningSecrets names the Secrets (type kubernetes.io/tls) that
// hold the issued certificates.
type CertificateSigningSecrets struct {
	// SigningProxyServerSecretName holds the serving certificate of the
	// proxy-server's client-facing port.
	// +optional
	// +kubebuilder:default=proxy-server
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:MaxLength=253
	SigningProxyServerSecretName string `json:"signingProxyServerSecretName,omitempty"`

	// SigningProxyClientSecretName holds the client certificate that hub
	// callers present to the proxy-server.
	// +optional
	// +kubebuilder:default=proxy-client
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:MaxLength=253
	SigningProxyClientSecretName string `json:"signingProxyClientSecretName,omitempty"`

	// SigningAgentServerSecretName holds the serving certificate of the
	// proxy-server's agent-facing port.
	// +optional
	// +kubebuilder:default=agent-server
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:MaxLength=253
	SigningAgentServerSecretName string `json:"signingAgentServerSecretName,omitempty"`
}

// ManagedProxyConfigurationProxyServer configures the hub proxy-servers.
type ManagedProxyConfigurationProxyServer struct {
	// Image is the container image that runs /proxy-server.
	// +required
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`

	// Replicas is the number of proxy-server pods; it is also passed as
	// --server-count so agents connect to every replica.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	Replicas int32 `json:"replicas,omitempty"`

	// InClusterServiceName is the name of the ClusterIP Service in front of
	// the proxy-servers.
	// +optional
	// +kubebuilder:default=proxy-entrypoint
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	InClusterServiceName string `json:"inClusterServiceName,omitempty"`

	// Namespace is where the proxy-servers, their Services and certificate
	// Secrets live. It is created when missing.
	// +optional
	// +kubebuilder:default=open-cluster-management-cluster-proxy
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// Entrypoint is how proxy-agents reach the proxy-servers. When absent,
	// agents dial the in-cluster Service <inClusterServiceName>.<namespace>.
	// +optional
	Entrypoint *ManagedProxyConfigurationProxyServerEntrypoint `json:"entrypoint,omitempty"`

	// AdditionalArgs are appended to the proxy-server's arguments.
	// +optional
	// +listType=atomic
	AdditionalArgs []string `json:"additionalArgs,omitempty"`

	// NodePlacement places the proxy-server pods.
	// +optional
	NodePlacement NodePlacement `json:"nodePlacement,omitempty"`
}

// EntryPointType names a way for proxy-agents to reach the proxy-servers.
// +kubebuilder:validation:Enum=Hostname;LoadBalancerService;PortForward
type EntryPointType string

const (
	// EntryPointTypeHostname means agents dial a host name (or address) that the
	// user makes reachable, for example through an Ingress or a Route.
	EntryPointTypeHostname EntryPointType = "Hostname"
	// EntryPointTypeLoadBalancerService means the addon-manager creates a Service of
	// type LoadBalancer and agents dial its ingress address.
	EntryPointTypeLoadBalancerService EntryPointType = "LoadBalancerService"
	// EntryPointTypePortForward means agents reach the proxy-servers through the
	// hub kube-apiserver's pod port-forwarding, relayed by the addon-agent.
	EntryPointTypePortForward EntryPointType = "PortForward"
)

// ManagedProxyConfigurationProxyServerEntrypoint is how proxy-agents reach
// the proxy-servers.
// +kubebuilder:validation:XValidation:rule="self.type != 'Hostname' || has(self.hostname)",message="hostname is required when type is Hostname"
type ManagedProxyConfigurationProxyServerEntrypoint struct {
	// Type chooses the entrypoint.
	// +required
	Type EntryPointType `json:"type"`

	// Hostname configures a Hostname entrypoint.
	// +optional
	Hostname *EntryPointHostname `json:"hostname,omitempty"`

	// LoadBalancerService configures a LoadBalancerService entrypoint.
	// +optional
	LoadBalancerService *EntryPointLoadBalancerService `json:"loadBalancerService,omitempty"`

	// Port is the port agents dial on the entrypoint.
	// +optional
	// +kubebuilder:default=8091
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
}

// EntryPointHostname is a host name (or IP address) agents dial.
type EntryPointHostname struct {
	// Value is the host name or IP address; it is added to the agent-server
	// certificate's subject alternative names.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Value string `json:"value"`
}

// EntryPointLoadBalancerService configures the Service of type LoadBalancer
// that the addon-manager creates for agents.
type EntryPointLoadBalancerService struct {
	// Name of the Service.
	// +optional
	// +kubebuilder:default=proxy-agent-entrypoint
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name,omitempty"`

	// Annotations are set on the Service, for example to configure a cloud
	// provider's load balancer.
	// +optional
	// +listType=map
	// +listMapKey=key
	Annotations []AnnotationValue `json:"annotations,omitempty"`
}

// AnnotationValue is one annotation of the load balancer Service.
type AnnotationValue struct {
	// Key is the annotation key: an optional DNS subdomain prefix and a name,
	// as Kubernetes accepts for annotations.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`
	Key string `json:"key"`

	// Value is the annotation value.
	// +optional
	Value string `json:"value,omitempty"`
}

// NodePlacement places pods on nodes.
type NodePlacement struct {
	// NodeSelector must match a node's labels for the pod to run there.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let the pods run on nodes with matching taints.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
}

// ManagedProxyConfigurationProxyAgent configures the proxy-agents on the
// managed clusters.
type ManagedProxyConfigurationProxyAgent struct {
	// Image is the container image that runs /proxy-agent.
	// +required
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`

	// Replicas is the number of proxy-agent pods on each managed cluster.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	Replicas int32 `json:"replicas,omitempty"`

	// AdditionalArgs are appended to the proxy-agent's arguments.
	// +optional
	// +listType=atomic
	AdditionalArgs []string `json:"additionalArgs,omitempty"`

	// AdditionalServiceProxyArgs are appended to the service-proxy's arguments.
	// +optional
	// +listType=atomic
	AdditionalServiceProxyArgs []string `json:"additionalServiceProxyArgs,omitempty"`

	// ImagePullSecrets are names of Secrets, in the agent namespace of each
	// managed cluster, used to pull the agent images.
	// +optional
	// +listType=atomic
	ImagePullSecrets []string `json:"imagePullSecrets,omitempty"`

	// AdditionalServiceCAConfigMap names a ConfigMap in the agent namespace
	// whose key service-ca.crt the service-proxy trusts in addition to the
	// cluster's own CA when it calls Services.
	// +optional
	AdditionalServiceCAConfigMap string `json:"additionalServiceCAConfigMap,omitempty"`
}

// ManagedProxyConfigurationDeploy holds deployment details of the
// proxy-servers.
type ManagedProxyConfigurationDeploy struct {
	// Ports are the container ports of the proxy-server.
	// +optional
	// +kubebuilder:default={}
	Ports ManagedProxyConfigurationDeployPorts `json:"ports"`
}

// ManagedProxyConfigurationDeployPorts are the container ports of the
// proxy-server. The Services in front of it keep their well-known ports
// (8090, 8091) and target these.
type ManagedProxyConfigurationDeployPorts struct {
	// ProxyServer is the port for proxy clients (gRPC ProxyService).
	// +optional
	// +kubebuilder:default=8090
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	ProxyServer int32 `json:"proxyServer,omitempty"`

	// AgentServer is the port proxy-agents connect to.
	// +optional
	// +kubebuilder:default=8091
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	AgentServer int32 `json:"agentServer,omitempty"`

	// HealthServer is the port of the health endpoints.
	// +optional
	// +kubebuilder:default=8092
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	HealthServer int32 `json:"healthServer,omitempty"`

	// AdminServer is the port of the admin (debug) endpoints.
	// +optional
	// +kubebuilder:default=8095
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	AdminServer int32 `json:"adminServer,omitempty"`
}

// UserServerConfiguration configures the user-server's serving certificate.
type UserServerConfiguration struct {
	// AdditionalSANs are extra subject alternative names for the user-server
	// serving certificate.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	AdditionalSANs []string `json:"additionalSANs,omitempty"`
}

// ManagedProxyConfigurationStatus is what the addon-manager observed.
type ManagedProxyConfigurationStatus struct {
	// LastObservedGeneration is the generation of the spec the addon-manager
	// last reconciled successfully.
	// +optional
	LastObservedGeneration int64 `json:"lastObservedGeneration,omitempty"`

	// Conditions report the proxy-server rollout and certificate signing.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Condition types of a ManagedProxyConfiguration.
const (
	// ConditionTypeProxyServerDeployed is True when the proxy-server
	// Deployment has rolled out.
	ConditionTypeProxyServerDeployed = "ProxyServerDeployed"
	// ConditionTypeProxyServerSecretSigned is True when the proxy-server
	// serving certificate is issued and current.
	ConditionTypeProxyServerSecretSigned = "ProxyServerSecretSigned"
	// ConditionTypeAgentServerSecretSigned is True when the agent-server
	// serving certificate is issued and current.
	ConditionTypeAgentServerSecretSigned = "AgentServerSecretSigned"
	// ConditionTypeProxyClientSecretSigned is True when the proxy-client
	// certificate is issued and current.
	ConditionTypeProxyClientSecretSigned = "ProxyClientSecretSigned"
	// ConditionTypeUserServerSecretSigned is True when the user-server serving
	// certificate is issued and current (only with spec.userServer).
	ConditionTypeUserServerSecretSigned = "UserServerSecretSigned"
	// ConditionTypeProxyServerAvailable is True when at least one
	// proxy-server replica is ready, so proxy-agents can connect; its message
	// says how many of the desired replicas are.
	ConditionTypeProxyServerAvailable = "ProxyServerAvailable"
	// ConditionTypeDegraded is True when the hub side works less well than
	// it should: fewer proxy-server replicas are ready than desired, or a
	// certificate the addon-manager issues (or its CA) is in the last tenth
	// of its lifetime or expired, which means its renewal keeps failing.
	// False (ReasonAsExpected) is healthy.
	ConditionTypeDegraded = "Degraded"
)

// Condition reasons of a ManagedProxyConfiguration.
const (
	// ReasonSuccessfullyDeployed: the proxy-server Deployment is rolled out.
	ReasonSuccessfullyDeployed = "SuccessfullyDeployed"
	// ReasonNotYetDeployed: the proxy-server Deployment is not rolled out yet.
	ReasonNotYetDeployed = "NotYetDeployed"
	// ReasonSuccessfullySigned: the certificate is issued and current.
	ReasonSuccessfullySigned = "SuccessfullySigned"
	// ReasonNotYetSigned: the certificate is not issued yet.
	ReasonNotYetSigned = "NotYetSigned"
	// ReasonReplicasReady: at least one proxy-server replica is ready
	// (ProxyServerAvailable True).
	ReasonReplicasReady = "ReplicasReady"
	// ReasonNoReplicaReady: no proxy-server replica is ready
	// (ProxyServerAvailable False).
	ReasonNoReplicaReady = "NoReplicaReady"
	// ReasonProxyServerReplicasNotReady: fewer proxy-server replicas are
	// ready than desired, or the Deployment's latest generation is not
	// rolled out yet (Degraded True).
	ReasonProxyServerReplicasNotReady = "ProxyServerReplicasNotReady"
	// ReasonCertificateExpiring: a certificate the addon-manager issues, or
	// its CA, is in the last tenth of its lifetime or expired (Degraded
	// True; when replicas are not ready too, the reason is
	// ReasonProxyServerReplicasNotReady and the message names both).
	ReasonCertificateExpiring = "CertificateExpiring"
	// ReasonAsExpected: every desired proxy-server replica is ready and no
	// certificate is near its expiry (Degraded False).
	ReasonAsExpected = "AsExpected"
)

// +kubebuilder:object:root=true

// ManagedProxyConfigurationList is a list of ManagedProxyConfigurations.
type ManagedProxyConfigurationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the ManagedProxyConfigurations.
	Items []ManagedProxyConfiguration `json:"items"`
}
