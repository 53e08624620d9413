package addonmanager

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	addonframework "open-cluster-management.io/addon-framework/pkg/addonmanager"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"open-cluster-management.io/cluster-proxy/internal/addonhealth"
	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
	"open-cluster-management.io/cluster-proxy/internal/carotation"
	"open-cluster-management.io/cluster-proxy/internal/clusterprofile"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// NewScheme returns the scheme of every type the addon-manager handles.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, proxyv1alpha1.AddToScheme, clusterv1.Install, addonapiv1beta1.Install,
		cpv1alpha1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("failed to build the scheme: %w", err)
		}
	}
	return scheme, nil
}

// Run runs the addon-manager against the hub of o.Kubeconfig until ctx is
// done. The options must be validated.
func Run(ctx context.Context, o *Options) error {
	log := klog.FromContext(ctx)
	// controller-runtime's own components log through its global logger.
	ctrl.SetLogger(log)
	cfg, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return err
	}
	mgr, err := NewManager(ctx, cfg, o)
	if err != nil {
		return err
	}
	log.Info("starting the addon-manager")
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("addon-manager stopped: %w", err)
	}
	return nil
}

// RBAC of the manager itself: leader election (Lease
// cluster-proxy-addon-manager and its Events, in the manager's own namespace:
// namespace= below stands for POD_NAMESPACE, the chart's release namespace).
// The CA Secret is read and created through the secrets rule of the
// proxyconfig package.
//
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=open-cluster-management-addon
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=open-cluster-management-addon

// NewManager assembles the addon-manager: a controller-runtime manager
// running the ManagedProxyConfiguration reconciler, while leader the
// addon-framework manager with the cluster-proxy agent addon and, with the
// ClusterProfile feature gate on, the ClusterProfile reconciler (once the
// hub serves ClusterProfiles). ctx bounds the hub reads of the addon's
// values functions.
func NewManager(ctx context.Context, cfg *rest.Config, o *Options) (ctrl.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   CacheOptions(o.PodNamespace),
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: o.PodNamespace,
		// Leader election yields the lease on shutdown so a standby takes
		// over at once.
		LeaderElectionReleaseOnCancel: true,
		Logger:                        klog.FromContext(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create the controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("failed to add the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("failed to add the readiness check: %w", err)
	}

	// The CA Secret is read and created without the cache, so a Secret another
	// manager has just created is seen at once.
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("failed to create a client: %w", err)
	}
	ca := &signer.Store{Client: direct, Namespace: o.SignerSecretNamespace, Name: o.SignerSecretName, Clock: clock.RealClock{}}
	// A CA rotation's phase changes the bundle every configuration's
	// Secrets carry: the CA Secret's watch (addAgentAddon) says so here.
	caChanged := make(chan event.GenericEvent, 1)
	reconciler := &proxyconfig.Reconciler{
		CAChanged:           caChanged,
		Client:              mgr.GetClient(),
		Recorder:            mgr.GetEventRecorder(LeaderElectionID),
		Clock:               clock.RealClock{},
		CA:                  ca,
		TLSProfileNamespace: o.PodNamespace,
		ImagePullPolicy:     corev1.PullPolicy(o.ImagePullPolicy),
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("failed to set up the ManagedProxyConfiguration reconciler: %w", err)
	}

	health := &addonhealth.Reconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          mgr.GetEventRecorder(LeaderElectionID),
		Clock:             clock.RealClock{},
		ConfigurationName: agentaddon.ConfigurationName,
		TrustedSigners:    trustedSigners(ca),
	}
	if err := health.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("failed to set up the addon health controller: %w", err)
	}

	// A plain Runnable, so only the leader rotates.
	rotation := &carotation.Controller{
		Store: ca, Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		ServiceProxyCertSecret: client.ObjectKey{Namespace: o.SignerSecretNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName},
		CertificateSecrets:     certificateSecrets,
	}
	if err := mgr.Add(manager.RunnableFunc(rotation.Start)); err != nil {
		return nil, fmt.Errorf("failed to add the CA rotation controller: %w", err)
	}

	signerSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: o.SignerSecretNamespace, Name: o.SignerSecretName}}
	serviceProxyCert, err := addAgentAddon(ctx, mgr, cfg, o, ca, func() {
		select {
		case caChanged <- event.GenericEvent{Object: signerSecret}:
		default: // one pending event reconciles them all
		}
	})
	if err != nil {
		return nil, err
	}
	// A plain Runnable: the metrics are the leader's, which keeps what they
	// report.
	metrics := &certificateMetrics{reader: mgr.GetClient(), ca: ca, serviceProxy: serviceProxyCert}
	if err := mgr.Add(manager.RunnableFunc(metrics.Start)); err != nil {
		return nil, fmt.Errorf("failed to add the certificate metrics: %w", err)
	}
	if o.FeatureGates.Enabled(FeatureClusterProfile) {
		if err := addClusterProfiles(mgr, cfg); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// clusterProfileCRDCheck is how often the addon-manager, with the
// ClusterProfile gate on, looks again for the ClusterProfile CRD while the
// hub does not serve it.
const clusterProfileCRDCheck = 10 * time.Second

// addClusterProfiles runs the ClusterProfile reconciler, while leader, once
// the hub serves ClusterProfiles: until then the addon-manager does all
// else and logs that it waits for the CRD.
func addClusterProfiles(mgr ctrl.Manager, cfg *rest.Config) error {
	d, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("failed to create a discovery client: %w", err)
	}
	r := &clusterprofile.Reconciler{Client: mgr.GetClient()}
	if err := r.StartWhenInstalled(mgr, d, clusterProfileCRDCheck); err != nil {
		return fmt.Errorf("failed to set up the ClusterProfile reconciler: %w", err)
	}
	return nil
}

// certificateSecrets are the certificate Secrets of mpc
// (proxyconfig.CertificateSecrets) as object keys.
func certificateSecrets(mpc *proxyv1alpha1.ManagedProxyConfiguration) []client.ObjectKey {
	var keys []client.ObjectKey
	for _, cs := range proxyconfig.CertificateSecrets(mpc) {
		keys = append(keys, client.ObjectKey{Namespace: cs.Namespace, Name: cs.Name})
	}
	return keys
}

// trustedSigners are the signer organizational units of the CAs the
// proxy-servers trust agent certificates from: the CA bundle as last read
// (the ManagedProxyConfiguration reconciler and the agent addon read it on
// every reconcile), both CAs during a rotation.
func trustedSigners(ca *signer.Store) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		trusted := ca.Trusted()
		if trusted == nil {
			a, err := ca.Authority(ctx)
			if err != nil {
				return nil, err
			}
			trusted = a.Trusted()
		}
		ous := make([]string, 0, len(trusted))
		for _, c := range trusted {
			ous = append(ous, identity.SignerOU(c))
		}
		return ous, nil
	}
}

// CacheOptions keep the manager's informers to what it needs: the objects it
// writes (all labelled proxyconfig.ManagedByLabel), ConfigMaps of its own
// namespace podNamespace (the TLS profile), the proxy-servers' health
// reports (healthreport.Selector, in any namespace) and this addon's
// certificate requests. Anything else it reads (the CA Secret, the service-proxy
// certificate) is read without the cache. ClusterProfiles get no entry on
// purpose: an entry makes the cache resolve the type when the manager is
// created, which fails while their CRD is not installed; the ClusterProfile
// reconciler's informer (gate on only) holds them all and its predicates
// keep to the ones it reconciles.
func CacheOptions(podNamespace string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{proxyconfig.ManagedByLabel: proxyconfig.ManagedByValue})
	owned := cache.ByObject{Label: managed}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:         owned,
		&corev1.Service{}:        owned,
		&corev1.ServiceAccount{}: owned,
		&appsv1.Deployment{}:     owned,
		&rbacv1.Role{}:           owned,
		&rbacv1.RoleBinding{}:    owned,
		&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{
			podNamespace:        {},
			cache.AllNamespaces: {LabelSelector: healthreport.Selector()},
		}},
		&certificatesv1.CertificateSigningRequest{}: {
			Label: labels.SelectorFromSet(labels.Set{addonapiv1beta1.AddonLabelKey: agentaddon.AddonName}),
		},
	}}
}

// addAgentAddon runs the addon-framework manager with the cluster-proxy
// agent addon, only while this addon-manager is the leader, and re-renders
// the addons when the CA Secret changes (then calls caChanged too). With
// the service-proxy on, it returns the watch of the service-proxy
// certificate.
func addAgentAddon(ctx context.Context, mgr ctrl.Manager, cfg *rest.Config, o *Options, ca *signer.Store, caChanged func()) (*certificateTrigger, error) {
	kubeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create a kube client: %w", err)
	}
	addonClient, err := addonclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create an addon client: %w", err)
	}
	registration := &agentaddon.Registration{CA: ca, Clock: clock.RealClock{}}
	csrs := &agentaddon.CSRController{Client: mgr.GetClient(), KubeClient: kubeClient, Registration: registration, Recorder: mgr.GetEventRecorder(LeaderElectionID)}
	if err := csrs.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("failed to set up the certificate request controller: %w", err)
	}
	agentAddon, err := agentaddon.New(agentaddon.Options{
		Values: &agentaddon.ValuesBuilder{
			Ctx:                   ctx,
			Client:                mgr.GetClient(),
			CA:                    ca,
			AgentImage:            o.AgentImageName,
			EnableKubeAPIProxy:    o.EnableKubeAPIProxy,
			EnableServiceProxy:    o.EnableServiceProxy,
			SecretReader:          mgr.GetAPIReader(),
			SignerNamespace:       o.SignerSecretNamespace,
			EnableNetworkPolicies: o.EnableNetworkPolicies,
			EnableImpersonation:   o.EnableImpersonation,
		},
		Registration:            registration,
		KubeClient:              kubeClient,
		DeploymentConfigs:       utils.NewAddOnDeploymentConfigGetter(addonClient),
		DefaultInstallNamespace: o.AgentInstallNamespace,
	})
	if err != nil {
		return nil, err
	}
	addonManager, err := addonframework.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create the addon-framework manager: %w", err)
	}
	if err := addonManager.AddAgent(agentAddon); err != nil {
		return nil, fmt.Errorf("failed to add the %s agent addon: %w", agentaddon.AddonName, err)
	}
	caTrigger := &certificateTrigger{kubeClient: kubeClient, addonClient: addonClient, namespace: o.SignerSecretNamespace,
		name: o.SignerSecretName, trigger: addonManager.Trigger, onChange: caChanged}
	if err := mgr.Add(manager.RunnableFunc(caTrigger.Start)); err != nil {
		return nil, fmt.Errorf("failed to add the CA Secret trigger: %w", err)
	}
	var trigger *certificateTrigger
	if o.EnableServiceProxy {
		trigger = &certificateTrigger{kubeClient: kubeClient, addonClient: addonClient, namespace: o.SignerSecretNamespace,
			name: proxyv1alpha1.ServiceProxyCertSecretName, trigger: addonManager.Trigger}
		if err := mgr.Add(manager.RunnableFunc(trigger.Start)); err != nil {
			return nil, fmt.Errorf("failed to add the service-proxy certificate trigger: %w", err)
		}
	}
	// A plain RunnableFunc runs only on the leader.
	return trigger, mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if err := addonManager.Start(ctx); err != nil {
			return fmt.Errorf("failed to start the addon-framework manager: %w", err)
		}
		<-ctx.Done()
		return nil
	}))
}
