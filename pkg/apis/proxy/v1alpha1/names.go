package v1alpha1

// Well-known labels, annotations and names of the cluster-proxy addon that
// tools and users rely on.
const (
	// LabelComponentName labels the pods of each component; the proxy-server
	// pods carry LabelComponentName=ComponentProxyServer, which the
	// addon-agent's port-forward relay and the proxy-server Services select.
	LabelComponentName = "proxy.open-cluster-management.io/component-name"
	// ComponentProxyServer is the LabelComponentName value of proxy-server pods.
	ComponentProxyServer = "proxy-server"
	// ComponentProxyAgent is the LabelComponentName value of proxy-agent pods.
	ComponentProxyAgent = "proxy-agent"

	// AnnotationConfigurationGeneration records the ManagedProxyConfiguration
	// generation an object was rendered from.
	AnnotationConfigurationGeneration = "proxy.open-cluster-management.io/configuration-generation"
	// AnnotationCertificatesHash on the proxy-server pod template changes
	// when its certificates are reissued, so the pods roll onto them.
	AnnotationCertificatesHash = "proxy.open-cluster-management.io/certificates-hash"

	// AgentGroup is the group of every cluster-proxy agent identity on the hub.
	AgentGroup = "open-cluster-management:cluster-proxy"
)
