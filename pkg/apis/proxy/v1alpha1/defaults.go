package v1alpha1

// Defaults of the ManagedProxyConfiguration fields. The CRD's
// +kubebuilder:default markers (types.go) apply the same values at
// admission; TestDefaultMatchesTheCRD holds the two together, and the API
// suite checks Default against a real kube-apiserver's defaulting.
const (
	// DefaultSignerType is spec.authentication.signer.type when unset.
	DefaultSignerType = SignerTypeSelfSigned
	// DefaultProxyServerSecretName is
	// spec.authentication.dump.secrets.signingProxyServerSecretName when
	// unset.
	DefaultProxyServerSecretName = "proxy-server"
	// DefaultProxyClientSecretName is
	// spec.authentication.dump.secrets.signingProxyClientSecretName when
	// unset.
	DefaultProxyClientSecretName = "proxy-client"
	// DefaultAgentServerSecretName is
	// spec.authentication.dump.secrets.signingAgentServerSecretName when
	// unset.
	DefaultAgentServerSecretName = "agent-server"
	// DefaultReplicas is spec.proxyServer.replicas and
	// spec.proxyAgent.replicas when unset.
	DefaultReplicas int32 = 3
	// DefaultInClusterServiceName is spec.proxyServer.inClusterServiceName
	// when unset.
	DefaultInClusterServiceName = "proxy-entrypoint"
	// DefaultProxyServerNamespace is spec.proxyServer.namespace when unset.
	DefaultProxyServerNamespace = "open-cluster-management-cluster-proxy"
	// DefaultLoadBalancerServiceName is
	// spec.proxyServer.entrypoint.loadBalancerService.name when unset.
	DefaultLoadBalancerServiceName = "proxy-agent-entrypoint"
	// DefaultEntrypointPort is spec.proxyServer.entrypoint.port when unset:
	// the proxy-server's agent port.
	DefaultEntrypointPort = AgentServerPort
)

// DefaultDeployPorts are spec.deploy.ports when unset.
func DefaultDeployPorts() ManagedProxyConfigurationDeployPorts {
	return ManagedProxyConfigurationDeployPorts{
		ProxyServer:  ProxyServerPort,
		AgentServer:  AgentServerPort,
		HealthServer: HealthServerPort,
		AdminServer:  AdminServerPort,
	}
}

// Default fills every unset field that the CRD defaults with the same value,
// so code reading a ManagedProxyConfiguration that did not pass through a
// kube-apiserver (a unit test, a file) sees what the API would store.
// spec.deploy stays nil when unset, as in the CRD; read the ports with
// DeployPorts.
func (m *ManagedProxyConfiguration) Default() {
	s := &m.Spec
	setString(&s.Authentication.Signer.Type, DefaultSignerType)
	secrets := &s.Authentication.Dump.Secrets
	setString(&secrets.SigningProxyServerSecretName, DefaultProxyServerSecretName)
	setString(&secrets.SigningProxyClientSecretName, DefaultProxyClientSecretName)
	setString(&secrets.SigningAgentServerSecretName, DefaultAgentServerSecretName)
	setInt(&s.ProxyServer.Replicas, DefaultReplicas)
	setString(&s.ProxyServer.InClusterServiceName, DefaultInClusterServiceName)
	setString(&s.ProxyServer.Namespace, DefaultProxyServerNamespace)
	if ep := s.ProxyServer.Entrypoint; ep != nil {
		setInt(&ep.Port, DefaultEntrypointPort)
		if lb := ep.LoadBalancerService; lb != nil {
			setString(&lb.Name, DefaultLoadBalancerServiceName)
		}
	}
	setInt(&s.ProxyAgent.Replicas, DefaultReplicas)
	if d := s.Deploy; d != nil {
		def := DefaultDeployPorts()
		setInt(&d.Ports.ProxyServer, def.ProxyServer)
		setInt(&d.Ports.AgentServer, def.AgentServer)
		setInt(&d.Ports.HealthServer, def.HealthServer)
		setInt(&d.Ports.AdminServer, def.AdminServer)
	}
}

// DeployPorts returns spec.deploy.ports with the defaults of unset ports.
func (m *ManagedProxyConfiguration) DeployPorts() ManagedProxyConfigurationDeployPorts {
	c := m.DeepCopy()
	if c.Spec.Deploy == nil {
		c.Spec.Deploy = &ManagedProxyConfigurationDeploy{}
	}
	c.Default()
	return c.Spec.Deploy.Ports
}

// LoadBalancerServiceName is the name of the LoadBalancer Service of a
// LoadBalancerService entrypoint, defaulted.
func (m *ManagedProxyConfiguration) LoadBalancerServiceName() string {
	if ep := m.Spec.ProxyServer.Entrypoint; ep != nil && ep.LoadBalancerService != nil && ep.LoadBalancerService.Name != "" {
		return ep.LoadBalancerService.Name
	}
	return DefaultLoadBalancerServiceName
}

func setString[T ~string](dst *T, def T) {
	if *dst == "" {
		*dst = def
	}
}

func setInt(dst *int32, def int32) {
	if *dst == 0 {
		*dst = def
	}
}
