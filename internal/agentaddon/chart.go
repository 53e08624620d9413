// Package agentaddon is the cluster-proxy agent addon on the OCM
// addon-framework: registration, CSR approval and signing, and the
// per-cluster agent manifests rendered from an embedded Helm chart.
package agentaddon

import (
	"embed"
	"fmt"

	"open-cluster-management.io/addon-framework/pkg/addonfactory"
)

// ChartFS holds the embedded agent chart. Files starting with "_" are only
// embedded when named explicitly, hence the second directive.
//
//go:embed manifests
//go:embed manifests/charts/cluster-proxy-agent/templates/_helpers.tpl
var ChartFS embed.FS

// ChartDir is the directory of the agent chart inside ChartFS.
const ChartDir = "manifests/charts/cluster-proxy-agent"

// Values are the agent chart values the addon-manager computes for one
// managed cluster. The JSON names are the chart's value names (documented in
// the chart's values.yaml). Scalars left at their zero value are omitted so
// the chart's default applies; booleans are always sent. The framework
// built-ins clusterName and addonInstallNamespace are not part of it.
type Values struct {
	// IncludeNamespaceCreation renders the install Namespace (orphaned when
	// the addon is removed).
	IncludeNamespaceCreation bool `json:"includeNamespaceCreation"`
	// Registry is the registry part of the cluster-proxy image run by the
	// addon-agent container, e.g.
	// "quay.io/open-cluster-management".
	Registry string `json:"registry,omitempty"`
	// Image is the repository name of the cluster-proxy image, e.g.
	// "cluster-proxy".
	Image string `json:"image,omitempty"`
	// Tag is the tag of the cluster-proxy image; a value starting with "@"
	// is a digest.
	Tag string `json:"tag,omitempty"`
	// ProxyAgentImage is the full image reference of the proxy-agent
	// container; empty means the cluster-proxy image.
	ProxyAgentImage string `json:"proxyAgentImage,omitempty"`
	// ProxyAgentImagePullSecrets names the image pull Secrets of the agent
	// pod.
	ProxyAgentImagePullSecrets []string `json:"proxyAgentImagePullSecrets,omitempty"`
	// Replicas is the number of agent pods; zero means the chart default.
	Replicas int32 `json:"replicas,omitempty"`
	// AdditionalProxyAgentArgs are appended to the proxy-agent's arguments.
	AdditionalProxyAgentArgs []string `json:"additionalProxyAgentArgs,omitempty"`
	// AdditionalServiceProxyArgs are appended to the service-proxy's
	// arguments (the chart refuses the flags it sets itself).
	AdditionalServiceProxyArgs []string `json:"additionalServiceProxyArgs,omitempty"`
	// AdditionalServiceCAConfigMap names a ConfigMap in the install
	// namespace whose service-ca.crt the service-proxy also trusts for
	// Service targets.
	AdditionalServiceCAConfigMap string `json:"additionalServiceCAConfigMap,omitempty"`
	// AgentDeploymentAnnotations annotate the agent Deployment and its pod
	// template (the configuration generation, so changes roll the agents).
	AgentDeploymentAnnotations map[string]string `json:"agentDeploymentAnnotations,omitempty"`
	// AddonAgentArgs are the addon-agent's arguments after --v=2.
	AddonAgentArgs []string `json:"addonAgentArgs,omitempty"`
	// ServiceEntryPoint is the host the proxy-agent dials to reach the
	// proxy-servers (required).
	ServiceEntryPoint string `json:"serviceEntryPoint,omitempty"`
	// ServiceEntryPointPort is the port the proxy-agent dials; zero means
	// the chart default 8091.
	ServiceEntryPointPort int32 `json:"serviceEntryPointPort,omitempty"`
	// AgentIdentifiers are the proxy-agent's identifiers (host=... joined
	// with &); empty means the chart derives them from the cluster name and
	// the actual install namespace.
	AgentIdentifiers string `json:"agentIdentifiers,omitempty"`
	// ServiceProxyHost is the name hub clients dial to reach this cluster's
	// service-proxy; empty means the chart derives it from the cluster name.
	ServiceProxyHost string `json:"serviceProxyHost,omitempty"`
	// Base64EncodedCAData is the base64 PEM CA bundle the proxy-agent trusts
	// for the proxy-server (required).
	Base64EncodedCAData string `json:"base64EncodedCAData,omitempty"`
	// ServiceDomain is the managed cluster's Service DNS domain; empty means
	// the chart default svc.cluster.local.
	ServiceDomain string `json:"serviceDomain,omitempty"`
	// EnableKubeAPIProxy registers the kube-apiserver identifiers and renders
	// the ExternalName Service named after the cluster.
	EnableKubeAPIProxy bool `json:"enableKubeApiProxy"`
	// EnableServiceProxy runs the service-proxy container; it needs
	// ServiceProxySecretCert and ServiceProxySecretKey.
	EnableServiceProxy bool `json:"enableServiceProxy"`
	// EnableImpersonation ("true" or "false") lets the service-proxy
	// authenticate hub tokens and impersonate their users; empty means the
	// chart default "true". A string, like the customizedVariable that may
	// override it.
	EnableImpersonation string `json:"enableImpersonation,omitempty"`
	// ServiceProxySecretCert is the base64 PEM serving certificate of the
	// service-proxy.
	ServiceProxySecretCert string `json:"serviceProxySecretCert,omitempty"`
	// ServiceProxySecretKey is the base64 PEM serving key of the
	// service-proxy.
	ServiceProxySecretKey string `json:"serviceProxySecretKey,omitempty"`
	// NodeSelector is merged into the agent pod's node selector (under the
	// AddOnDeploymentConfig's nodePlacement, which wins per key).
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// NetworkPolicies controls the agent NetworkPolicy.
	NetworkPolicies NetworkPolicyValues `json:"networkPolicies"`
}

// NetworkPolicyValues are the chart's networkPolicies values.
type NetworkPolicyValues struct {
	// Enabled renders NetworkPolicy cluster-proxy-proxy-agent-network-policy.
	Enabled bool `json:"enabled"`
}

// ToValues converts v to addon-framework values (a JSON round trip, so every
// value is JSON-typed as the chart's templates expect).
func (v Values) ToValues() (addonfactory.Values, error) {
	values, err := addonfactory.JsonStructToValues(v)
	if err != nil {
		return nil, fmt.Errorf("failed to convert the agent chart values: %w", err)
	}
	return values, nil
}
