package agentaddon

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/entrypoint"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Paths inside the agent pod.
const (
	hubKubeconfigPath = "/etc/kubeconfig/kubeconfig"
)

// AuthorityLoader returns the cluster-proxy CA with the certificates to
// trust (signer.Store).
type AuthorityLoader interface {
	Authority(ctx context.Context) (*signer.Authority, error)
}

// ValuesBuilder computes the agent chart values of one managed cluster from
// the ManagedProxyConfiguration its addon references.
type ValuesBuilder struct {
	// Ctx bounds the hub reads (the framework's values functions take no
	// context).
	Ctx context.Context
	// Client reads ManagedProxyConfigurations and Services on the hub.
	Client client.Reader
	// CA provides the CA certificates the agents trust: the signing CA and,
	// during a CA rotation, the other one (signer.Authority.BundlePEM).
	CA AuthorityLoader
	// AgentImage is the image of the addon-agent and the service-proxy.
	AgentImage string
	// SecretReader reads the service-proxy certificate Secret, which the
	// addon-manager does not own and does not cache (an uncached reader).
	SecretReader client.Reader
	// SignerNamespace holds the service-proxy certificate Secret
	// (proxyv1alpha1.ServiceProxyCertSecretName), which
	// `cluster-proxy controllers` keeps current.
	SignerNamespace string
	// EnableKubeAPIProxy, EnableServiceProxy, EnableNetworkPolicies and
	// EnableImpersonation switch the optional parts of the agent.
	EnableKubeAPIProxy, EnableServiceProxy, EnableNetworkPolicies, EnableImpersonation bool
}

// GetValues is an addonfactory.GetValuesFunc: the core values of the agent
// chart for cluster. It fails, leaving the addon unrendered, when the
// configuration's entrypoint is not ready yet, or when the service-proxy is
// on and its certificate Secret is not there yet.
func (b *ValuesBuilder) GetValues(cluster *clusterv1.ManagedCluster, addon *addonapiv1beta1.ManagedClusterAddOn) (addonfactory.Values, error) {
	ctx := b.Ctx
	mpc, err := b.configuration(cluster, addon)
	if err != nil {
		return nil, err
	}
	name := mpc.Name
	ep, err := entrypoint.Resolve(ctx, b.Client, mpc)
	if err != nil {
		return nil, err
	}
	if !ep.Ready() {
		return nil, fmt.Errorf("ManagedProxyConfiguration %s: entrypoint not ready: %s", name, ep.Pending)
	}
	authority, err := b.CA.Authority(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to load the CA: %w", err)
	}

	// Image registries (AddOnDeploymentConfig, cluster annotation) are applied
	// by ImageValues through global.imageOverrides, which the chart prefers.
	registry, image, tag := SplitImage(b.AgentImage)

	addonAgentArgs := []string{
		"--hub-kubeconfig=" + hubKubeconfigPath,
		"--cluster-name=" + cluster.Name,
		"--proxy-server-namespace=" + mpc.Spec.ProxyServer.Namespace,
	}
	if ep.PortForward {
		agentPort := mpc.DeployPorts().AgentServer
		addonAgentArgs = append(addonAgentArgs,
			"--enable-port-forward-proxy=true",
			"--port-forward-proxy-port="+strconv.Itoa(int(ep.Port)),
			"--port-forward-target-port="+strconv.Itoa(int(agentPort)))
	}

	v := Values{
		IncludeNamespaceCreation:     true,
		Registry:                     registry,
		Image:                        image,
		Tag:                          tag,
		ProxyAgentImage:              mpc.Spec.ProxyAgent.Image,
		ProxyAgentImagePullSecrets:   mpc.Spec.ProxyAgent.ImagePullSecrets,
		Replicas:                     mpc.Spec.ProxyAgent.Replicas,
		AdditionalProxyAgentArgs:     mpc.Spec.ProxyAgent.AdditionalArgs,
		AdditionalServiceProxyArgs:   mpc.Spec.ProxyAgent.AdditionalServiceProxyArgs,
		AdditionalServiceCAConfigMap: mpc.Spec.ProxyAgent.AdditionalServiceCAConfigMap,
		AgentDeploymentAnnotations: map[string]string{
			proxyv1alpha1.AnnotationConfigurationGeneration: strconv.FormatInt(mpc.Generation, 10),
		},
		AddonAgentArgs:        addonAgentArgs,
		ServiceEntryPoint:     ep.Host,
		ServiceEntryPointPort: ep.Port,
		ServiceProxyHost:      proxyv1alpha1.ServiceProxyHost(cluster.Name),
		Base64EncodedCAData:   base64.StdEncoding.EncodeToString(authority.BundlePEM()),
		EnableKubeAPIProxy:    b.EnableKubeAPIProxy,
		EnableServiceProxy:    b.EnableServiceProxy,
		EnableImpersonation:   strconv.FormatBool(b.EnableImpersonation),
	}
	// The chart derives the agent identifiers from the cluster name and the
	// actual install namespace (an AddOnDeploymentConfig may change it).
	v.NetworkPolicies.Enabled = b.EnableNetworkPolicies
	if b.EnableServiceProxy {
		cert, key, err := b.serviceProxyCertificate(ctx)
		if err != nil {
			return nil, err
		}
		v.ServiceProxySecretCert = base64.StdEncoding.EncodeToString(cert)
		v.ServiceProxySecretKey = base64.StdEncoding.EncodeToString(key)
	}
	return v.ToValues()
}

// serviceProxyCertificate reads the service-proxy's serving certificate and
// key from the Secret `cluster-proxy controllers` keeps.
func (b *ValuesBuilder) serviceProxyCertificate(ctx context.Context) (cert, key []byte, err error) {
	name := types.NamespacedName{Namespace: b.SignerNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName}
	secret := &corev1.Secret{}
	if err := b.SecretReader.Get(ctx, name, secret); err != nil {
		return nil, nil, fmt.Errorf("the service-proxy is enabled but its certificate Secret %s is not readable (cluster-proxy controllers creates it): %w", name, err)
	}
	cert, key = secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
	if len(cert) == 0 || len(key) == 0 {
		return nil, nil, fmt.Errorf("the service-proxy certificate Secret %s has no %s or %s yet", name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	return cert, key, nil
}

// ImageValues rewrites the agent images with the image registries of the
// addon's AddOnDeploymentConfig, else of the cluster's
// open-cluster-management.io/image-registries annotation, into
// global.imageOverrides.{agentImage,proxyAgentImage}.
func (b *ValuesBuilder) ImageValues(getter utils.AddOnDeploymentConfigGetter) addonfactory.GetValuesFunc {
	return func(cluster *clusterv1.ManagedCluster, addon *addonapiv1beta1.ManagedClusterAddOn) (addonfactory.Values, error) {
		mpc, err := b.configuration(cluster, addon)
		if err != nil {
			return nil, err
		}
		agent, err := addonfactory.GetAgentImageValues(getter, "global.imageOverrides.agentImage", b.AgentImage)(cluster, addon)
		if err != nil {
			return nil, fmt.Errorf("failed to apply image registries to %s: %w", b.AgentImage, err)
		}
		proxyAgent, err := addonfactory.GetAgentImageValues(getter, "global.imageOverrides.proxyAgentImage", mpc.Spec.ProxyAgent.Image)(cluster, addon)
		if err != nil {
			return nil, fmt.Errorf("failed to apply image registries to %s: %w", mpc.Spec.ProxyAgent.Image, err)
		}
		return addonfactory.MergeValues(agent, proxyAgent), nil
	}
}

// configuration reads the ManagedProxyConfiguration the addon references.
func (b *ValuesBuilder) configuration(cluster *clusterv1.ManagedCluster, addon *addonapiv1beta1.ManagedClusterAddOn) (*proxyv1alpha1.ManagedProxyConfiguration, error) {
	name := ConfigurationName(addon)
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	if err := b.Client.Get(b.Ctx, types.NamespacedName{Name: name}, mpc); err != nil {
		return nil, fmt.Errorf("failed to get ManagedProxyConfiguration %s for cluster %s: %w", name, cluster.Name, err)
	}
	return mpc, nil
}

// ConfigurationName is the ManagedProxyConfiguration the addon references
// (through its ClusterManagementAddOn's default or its own configs), or the
// default one when it references none yet.
func ConfigurationName(addon *addonapiv1beta1.ManagedClusterAddOn) string {
	for _, ref := range addon.Status.ConfigReferences {
		if ref.Group != proxyv1alpha1.GroupName || ref.Resource != "managedproxyconfigurations" {
			continue
		}
		if ref.DesiredConfig != nil && ref.DesiredConfig.Name != "" {
			return ref.DesiredConfig.Name
		}
	}
	return proxyv1alpha1.DefaultName
}

// SplitImage splits an image reference into registry, name and tag
// (registry "quay.io/open-cluster-management", name "cluster-proxy", tag
// "v1.0.0"). A digest reference keeps "@sha256:..." in the tag position's
// place; a missing tag is "latest".
func SplitImage(ref string) (registry, name, tag string) {
	rest := ref
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest, tag = rest[:i], rest[i:]
	} else if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest, tag = rest[:i], rest[i+1:]
	}
	if tag == "" {
		tag = "latest"
	}
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		return rest[:i], rest[i+1:], tag
	}
	return "", rest, tag
}
