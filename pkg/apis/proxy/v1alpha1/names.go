package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
)

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
)

// Ports of the proxy-server (the defaults of spec.deploy.ports) and of the
// in-cluster Service in front of it, which always publishes the frontend on
// ProxyServerPort and the agent server on AgentServerPort.
const (
	// ProxyServerPort serves konnectivity clients (the frontend).
	ProxyServerPort int32 = 8090
	// AgentServerPort serves proxy-agents; agents dial it through the
	// entrypoint.
	AgentServerPort int32 = 8091
	// HealthServerPort serves the proxy-server's /healthz and /readyz.
	HealthServerPort int32 = 8092
	// AdminServerPort serves the proxy-server's admin endpoints.
	AdminServerPort int32 = 8095
)

// Names of the hub objects the addon-manager creates in the proxy-server
// namespace that clients read.
const (
	// CASecretName is the Secret holding the CA certificate clients and
	// agents trust, under the key CASecretKey.
	CASecretName = "proxy-server-ca"
	// CASecretKey is the key of the CA certificate in CASecretName.
	CASecretKey = "ca.crt"
)

// The hub user-server: clients reach a managed cluster at
// https://<UserServerServiceName>.<proxy-server namespace>:<UserServerPort>/<cluster>.
const (
	// UserServerServiceName is the Service of the hub user-server, in the
	// proxy-server namespace.
	UserServerServiceName = "cluster-proxy-addon-user"
	// UserServerPort is the HTTPS port of that Service.
	UserServerPort int32 = 9092
	// UserServerSecretName is the kubernetes.io/tls Secret, in the
	// proxy-server namespace, holding the user-server's serving certificate
	// (tls.crt, tls.key) and the cluster-proxy CA that signed it (ca.crt);
	// the addon-manager issues it when spec.userServer is set.
	UserServerSecretName = "cluster-proxy-user-serving-cert"
)

// ServiceProxyCertSecretName is the hub Secret, in the signer namespace,
// holding the service-proxy serving certificate that the `cluster-proxy
// controllers` command keeps fresh and the addon-manager copies to every
// managed cluster.
const ServiceProxyCertSecretName = "cluster-proxy-service-proxy-server-cert"

// Headers that name the target of a request to the service-proxy. The
// user-server sets them; the service-proxy accepts them only from callers
// that present a client certificate issued by the cluster-proxy CA.
const (
	// HeaderProto is the target's scheme: http or https.
	HeaderProto = "Cluster-Proxy-Proto"
	// HeaderNamespace is the target Service's namespace.
	HeaderNamespace = "Cluster-Proxy-Namespace"
	// HeaderService is the target Service's name; kubernetes in namespace
	// default means the cluster's kube-apiserver.
	HeaderService = "Cluster-Proxy-Service"
	// HeaderPort is the target Service's port.
	HeaderPort = "Cluster-Proxy-Port"
)

// ServiceProxyPort is the port of the service-proxy on every managed
// cluster: hub clients dial ServiceProxyHost(cluster):ServiceProxyPort
// through the tunnel.
const ServiceProxyPort int32 = 7443

// ServiceProxyHost is the host name hub clients dial, through the tunnel, to
// reach the service-proxy of a managed cluster:
// cluster-<first 48 hex digits of sha256(cluster)>.open-cluster-management.proxy.
// Agents register it as an identifier (host=...).
func ServiceProxyHost(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return "cluster-" + hex.EncodeToString(sum[:])[:48] + ".open-cluster-management.proxy"
}
