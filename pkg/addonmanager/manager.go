package addonmanager

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/proxyserver"
	"open-cluster-management.io/cluster-proxy/pkg/signer"
)

// NewScheme returns the scheme of every type the addon-manager handles.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, proxyv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("failed to build the scheme: %w", err)
		}
	}
	return scheme, nil
}

// Run runs the addon-manager against the hub at cfg until ctx is done. The
// options must be validated.
func Run(ctx context.Context, cfg *rest.Config, o *Options) error {
	log := logf.FromContext(ctx)
	o.Log(log)
	scheme, err := NewScheme()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: o.PodNamespace,
		// Leader election yields the lease on shutdown so a standby takes
		// over at once.
		LeaderElectionReleaseOnCancel: true,
		Logger:                        log,
	})
	if err != nil {
		return fmt.Errorf("failed to create the controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("failed to add the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("failed to add the readiness check: %w", err)
	}

	// The CA Secret is read and created without the cache, so a Secret another
	// manager has just created is seen at once.
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("failed to create a client: %w", err)
	}
	reconciler := &proxyserver.Reconciler{
		Client:              mgr.GetClient(),
		Recorder:            mgr.GetEventRecorder(LeaderElectionID),
		Clock:               clock.RealClock{},
		CA:                  &signer.Store{Client: direct, Namespace: o.SignerSecretNamespace, Name: o.SignerSecretName, Clock: clock.RealClock{}},
		TLSProfileNamespace: o.PodNamespace,
		ImagePullPolicy:     corev1.PullPolicy(o.ImagePullPolicy),
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("failed to set up the ManagedProxyConfiguration reconciler: %w", err)
	}

	log.Info("starting the addon-manager")
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("addon-manager stopped: %w", err)
	}
	return nil
}
