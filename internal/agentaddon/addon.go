package agentaddon

import (
	"context"
	"errors"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/agent"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// ManagedProxyConfigurationGVR is the config type the addon reads.
var ManagedProxyConfigurationGVR = schema.GroupVersionResource{
	Group: proxyv1alpha1.GroupName, Version: "v1alpha1", Resource: "managedproxyconfigurations",
}

// Hub RBAC of the agents, bound to the addon-agent's kube-client identity.
const (
	// AgentRoleName grants leases (get, create, update) in the cluster
	// namespace (the addon-agent's hub lease fallback).
	AgentRoleName = "cluster-proxy-addon-agent"
	// AgentTokenReviewClusterRoleName grants token reviews (hub
	// authentication by the service-proxy, which is not available in this
	// version: nothing uses the grant yet).
	AgentTokenReviewClusterRoleName = "cluster-proxy-addon-agent-tokenreview"
)

// Options assemble the agent addon.
type Options struct {
	// Values computes the core chart values.
	Values *ValuesBuilder
	// Registration defines, approves and signs the agents' certificates.
	Registration *Registration
	// KubeClient creates the agents' hub RBAC.
	KubeClient kubernetes.Interface
	// DeploymentConfigs reads AddOnDeploymentConfigs.
	DeploymentConfigs utils.AddOnDeploymentConfigGetter
	// DefaultInstallNamespace is the agent namespace when no
	// AddOnDeploymentConfig sets one.
	DefaultInstallNamespace string
}

// RBAC of the addon-framework (v1.3.0) manager running this addon: it
// watches clusters, addons, ClusterManagementAddOns, the config types and its
// ManifestWorks; updates addon finalizers and patches addon and
// ClusterManagementAddOn status (and ClusterManagementAddOn annotations);
// applies and deletes the agent ManifestWorks, owned by the addon
// (blockOwnerDeletion, hence managedclusteraddons/finalizers). Its
// PermissionConfig creates and updates the agents' hub Role (leases get,
// create and update in each cluster namespace) and ClusterRole (tokenreviews
// create) with their bindings: RBAC only lets the manager grant what it
// holds, hence those lease verbs in every namespace and tokenreviews create.
//
// +kubebuilder:rbac:groups=cluster.open-cluster-management.io,resources=managedclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=managedclusteraddons,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=managedclusteraddons/status,verbs=patch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=managedclusteraddons/finalizers,verbs=update
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=clustermanagementaddons,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=clustermanagementaddons/status,verbs=patch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=addondeploymentconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups=proxy.open-cluster-management.io,resources=managedproxyconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=work.open-cluster-management.io,resources=manifestworks,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings;clusterroles;clusterrolebindings,verbs=get;create;update
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// New builds the cluster-proxy agent addon from the embedded chart.
func New(o Options) (agent.AgentAddon, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	addon, err := newFactory(o, o.Values.GetValues).BuildHelmAgentAddon()
	if err != nil {
		return nil, fmt.Errorf("failed to build the %s agent addon: %w", AddonName, err)
	}
	return addon, nil
}

// validate checks that every dependency is set.
func (o Options) validate() error {
	if o.Values == nil || o.Registration == nil || o.KubeClient == nil || o.DeploymentConfigs == nil || o.DefaultInstallNamespace == "" {
		return errors.New("agentaddon.New: Values, Registration, KubeClient, DeploymentConfigs and DefaultInstallNamespace are required")
	}
	if o.Values.EnableServiceProxy && (o.Values.SecretReader == nil || o.Values.SignerNamespace == "") {
		return errors.New("agentaddon.New: EnableServiceProxy needs Values.SecretReader and Values.SignerNamespace (where the service-proxy certificate Secret is)")
	}
	return nil
}

// newFactory is the addon factory New builds. coreValues computes the
// manager's core chart values (ValuesBuilder.GetValues in production; the
// chart test passes values it chose); the AddOnDeploymentConfig's values and
// the image registries follow it, so they win.
func newFactory(o Options, coreValues addonfactory.GetValuesFunc) *addonfactory.AgentAddonFactory {
	installNamespace := utils.AgentInstallNamespaceFromDeploymentConfigFunc(o.DeploymentConfigs)
	return addonfactory.NewAgentAddonFactory(AddonName, ChartFS, ChartDir).
		WithConfigGVRs(ManagedProxyConfigurationGVR, utils.AddOnDeploymentConfigGVR).
		WithConfigCheckEnabledOption().
		WithAgentDeployTriggerClusterFilter(utils.ClusterImageRegistriesAnnotationChanged).
		WithAgentInstallNamespace(func(ctx context.Context, addon *addonapiv1beta1.ManagedClusterAddOn) (string, error) {
			ns, err := installNamespace(ctx, addon)
			if err != nil || ns != "" {
				return ns, err
			}
			return o.DefaultInstallNamespace, nil
		}).
		WithGetValuesFuncs(
			coreValues,
			addonfactory.GetAddOnDeploymentConfigValues(o.DeploymentConfigs,
				addonfactory.ToAddOnCustomizedVariableValues,
				addonfactory.ToAddOnNodePlacementValues,
				addonfactory.ToAddOnProxyConfigValues,
				addonfactory.ToAddOnResourceRequirementsValues,
			),
			o.Values.ImageValues(o.DeploymentConfigs),
		).
		// CSRs are approved and signed by CSRController, not by the
		// framework's controllers (see CSRController).
		WithAgentRegistrationOption(&agent.RegistrationOption{
			Configurations:   o.Registration.Configurations,
			PermissionConfig: permissionConfig(o.KubeClient),
		}).
		// The addon health controller (internal/addonhealth) owns the
		// addon's Available and Degraded conditions, from the
		// proxy-servers' reports; None keeps the registration agent's lease
		// check from overwriting Available.
		WithAgentHealthProber(&agent.HealthProber{Type: agent.HealthProberTypeNone})
}

// permissionConfig grants each cluster's addon-agent leases in its cluster
// namespace and token reviews on the hub.
func permissionConfig(kubeClient kubernetes.Interface) agent.PermissionConfigFunc {
	return utils.NewRBACPermissionConfigBuilder(kubeClient).
		BindKubeClientRole(&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: AgentRoleName},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"},
			}},
		}).
		BindKubeClientClusterRole(&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: AgentTokenReviewClusterRoleName},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"},
			}},
		}).
		Build()
}
