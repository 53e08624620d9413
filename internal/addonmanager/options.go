// Package addonmanager wires the hub addon-manager: its options and flags,
// the controller-runtime manager, and the ManagedProxyConfiguration
// reconciler.
package addonmanager

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/component-base/featuregate"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/version"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// LeaderElectionID is the lease name used for leader election.
const LeaderElectionID = "cluster-proxy-addon-manager"

// FeatureClusterProfile publishes access to managed clusters through the
// user-server in the status of the ClusterProfiles OCM manages
// (multicluster.x-k8s.io/v1alpha1): the access provider
// open-cluster-management of each (internal/clusterprofile). Off, nothing
// reads or writes ClusterProfiles and their CRD need not exist.
const FeatureClusterProfile featuregate.Feature = "ClusterProfile"

// Options are the addon-manager's settings. Create them with NewOptions,
// bind flags with AddFlags, then call Complete and Validate.
type Options struct {
	// Kubeconfig is the hub kubeconfig; empty means in-cluster (or
	// $KUBECONFIG).
	Kubeconfig string
	// MetricsBindAddress serves Prometheus metrics ("0" disables).
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz ("0" disables).
	HealthProbeBindAddress string
	// LeaderElect enables leader election.
	LeaderElect bool
	// SignerSecretNamespace and SignerSecretName locate the CA Secret.
	SignerSecretNamespace, SignerSecretName string
	// AgentImageName is the image of the addon-agent and service-proxy
	// containers on managed clusters.
	AgentImageName string
	// EnableKubeAPIProxy registers the host=<cluster> agent identifiers
	// that route to each managed cluster's kube-apiserver.
	EnableKubeAPIProxy bool
	// EnableServiceProxy deploys the service-proxy on managed clusters, with
	// the serving certificate `cluster-proxy controllers` keeps in the signer
	// namespace.
	EnableServiceProxy bool
	// EnableNetworkPolicies deploys NetworkPolicies with the agents.
	EnableNetworkPolicies bool
	// EnableImpersonation lets the service-proxies authenticate hub tokens
	// and forward their requests impersonating the hub user (the agent
	// chart's enableImpersonation, which an AddOnDeploymentConfig's
	// customizedVariable may still override per cluster).
	EnableImpersonation bool
	// AgentInstallNamespace is the default agent namespace on managed
	// clusters.
	AgentInstallNamespace string
	// ImagePullPolicy of the hub proxy-server container.
	ImagePullPolicy string
	// FeatureGates holds the feature gates.
	FeatureGates featuregate.MutableFeatureGate
	// PodNamespace is the addon-manager's namespace (from $POD_NAMESPACE).
	PodNamespace string
}

// NewOptions returns Options with the defaults of the existing addon.
func NewOptions() *Options {
	gates := featuregate.NewFeatureGate()
	// Adding a known, fixed gate to a fresh gate set cannot fail.
	_ = gates.Add(map[featuregate.Feature]featuregate.FeatureSpec{
		FeatureClusterProfile: {Default: false, PreRelease: featuregate.Alpha},
	})
	return &Options{
		MetricsBindAddress:     ":58080",
		HealthProbeBindAddress: ":58081",
		SignerSecretNamespace:  "default",
		SignerSecretName:       "cluster-proxy-signer",
		AgentImageName:         version.DefaultImage(),
		EnableKubeAPIProxy:     true,
		EnableImpersonation:    true,
		EnableServiceProxy:     true,
		AgentInstallNamespace:  "open-cluster-management-cluster-proxy",
		ImagePullPolicy:        string(corev1.PullIfNotPresent),
		FeatureGates:           gates,
	}
}

// AddFlags binds the options to flags with the existing addon's names.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to the hub kubeconfig; empty means in-cluster configuration (or $KUBECONFIG).")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "The address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "The address the health probe endpoint binds to; 0 disables it.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Enable leader election (lease "+LeaderElectionID+" in $POD_NAMESPACE) so only one addon-manager is active.")
	fs.StringVar(&o.SignerSecretNamespace, "signer-secret-namespace", o.SignerSecretNamespace, "Namespace of the Secret holding the cluster-proxy CA.")
	fs.StringVar(&o.SignerSecretName, "signer-secret-name", o.SignerSecretName, "Name of the Secret holding the cluster-proxy CA (keys ca.crt, ca.key); created when missing.")
	fs.StringVar(&o.AgentImageName, "agent-image-name", o.AgentImageName, "Image of the addon-agent and service-proxy containers on managed clusters.")
	fs.BoolVar(&o.EnableKubeAPIProxy, "enable-kube-api-proxy", o.EnableKubeAPIProxy, "Route host=<cluster> to each managed cluster's kube-apiserver.")
	fs.BoolVar(&o.EnableServiceProxy, "enable-service-proxy", o.EnableServiceProxy, "Deploy the service-proxy on managed clusters (HTTPS access through the tunnel); its serving certificate comes from Secret "+proxyv1alpha1.ServiceProxyCertSecretName+" in --signer-secret-namespace, kept by `cluster-proxy controllers`.")
	fs.BoolVar(&o.EnableNetworkPolicies, "enable-network-policies", o.EnableNetworkPolicies, "Deploy NetworkPolicies with the agents on managed clusters.")
	fs.BoolVar(&o.EnableImpersonation, "enable-impersonation", o.EnableImpersonation, "Let the service-proxies authenticate hub tokens and impersonate the hub users (hub service accounts as cluster:hub:<name>); false: they accept managed-cluster tokens (and OIDC, when configured) only. An AddOnDeploymentConfig customizedVariable enableImpersonation overrides it per cluster.")
	fs.StringVar(&o.AgentInstallNamespace, "agent-install-namespace", o.AgentInstallNamespace, "Default namespace of the agents on managed clusters.")
	fs.StringVar(&o.ImagePullPolicy, "image-pull-policy", o.ImagePullPolicy, "Image pull policy of the hub proxy-server: Always, IfNotPresent or Never.")
	o.FeatureGates.AddFlag(fs)
}

// Complete fills in what flags do not carry: the pod namespace.
func (o *Options) Complete() error {
	if o.PodNamespace == "" {
		o.PodNamespace = command.PodNamespace()
	}
	return nil
}

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.PodNamespace == "" {
		errs = append(errs, fmt.Errorf("environment variable %s must be set to the addon-manager's namespace", command.PodNamespaceEnv))
	} else if msgs := validation.IsDNS1123Label(o.PodNamespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("invalid %s %q: %s", command.PodNamespaceEnv, o.PodNamespace, strings.Join(msgs, "; ")))
	}
	errs = append(errs,
		validateBindAddress("--metrics-bind-address", o.MetricsBindAddress),
		validateBindAddress("--health-probe-bind-address", o.HealthProbeBindAddress),
		validateName("--signer-secret-namespace", o.SignerSecretNamespace, validation.IsDNS1123Label),
		validateName("--signer-secret-name", o.SignerSecretName, validation.IsDNS1123Subdomain),
		validateName("--agent-install-namespace", o.AgentInstallNamespace, validation.IsDNS1123Label),
	)
	if strings.TrimSpace(o.AgentImageName) == "" {
		errs = append(errs, errors.New("--agent-image-name must not be empty"))
	}
	switch corev1.PullPolicy(o.ImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("invalid --image-pull-policy %q: must be Always, IfNotPresent or Never", o.ImagePullPolicy))
	}
	return errors.Join(errs...)
}

func validateBindAddress(flag, addr string) error {
	if addr == "0" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("invalid %s %q: want host:port, :port or 0 to disable: %w", flag, addr, err)
	}
	return nil
}

func validateName(flag, value string, validate func(string) []string) error {
	if msgs := validate(value); len(msgs) > 0 {
		return fmt.Errorf("invalid %s %q: %s", flag, value, strings.Join(msgs, "; "))
	}
	return nil
}

// Log writes the effective options.
func (o *Options) Log(log logr.Logger) {
	log.Info("addon-manager options",
		"kubeconfig", o.Kubeconfig,
		"podNamespace", o.PodNamespace,
		"metricsBindAddress", o.MetricsBindAddress,
		"healthProbeBindAddress", o.HealthProbeBindAddress,
		"leaderElect", o.LeaderElect,
		"signerSecret", o.SignerSecretNamespace+"/"+o.SignerSecretName,
		"agentImageName", o.AgentImageName,
		"enableKubeAPIProxy", o.EnableKubeAPIProxy,
		"enableServiceProxy", o.EnableServiceProxy,
		"enableNetworkPolicies", o.EnableNetworkPolicies, "enableImpersonation", o.EnableImpersonation,
		"agentInstallNamespace", o.AgentInstallNamespace,
		"imagePullPolicy", o.ImagePullPolicy,
		"clusterProfile", o.FeatureGates.Enabled(FeatureClusterProfile),
	)
}
