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
	// AnnotationCertificatesHash on the proxy-server pod template changes
	// when its certificates are reissued, so the pods roll onto them.
	AnnotationCertificatesHash = "proxy.open-cluster-management.io/certificates-hash"
)

// ServiceProxyHost is the host name hub clients dial, through the tunnel, to
// reach the service-proxy of a managed cluster:
// cluster-<first 48 hex digits of sha256(cluster)>.open-cluster-management.proxy.
// Agents register it as an identifier (host=...).
func ServiceProxyHost(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return "cluster-" + hex.EncodeToString(sum[:])[:48] + ".open-cluster-management.proxy"
}
