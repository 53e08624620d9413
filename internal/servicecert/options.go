package servicecert

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/signer"
)

// LeaderElectionID is the lease the controllers command elects a leader
// with, in its own namespace.
const LeaderElectionID = "cluster-proxy-service-proxy"

// Options are the settings of `cluster-proxy controllers`, with the existing
// addon's flag names and defaults.
type Options struct {
	// Kubeconfig is the hub kubeconfig; empty means in-cluster (or
	// $KUBECONFIG).
	Kubeconfig string
	// MetricsAddr serves Prometheus metrics ("0" disables).
	MetricsAddr string
	// HealthProbeAddr serves /healthz and /readyz ("0" disables).
	HealthProbeAddr string
	// EnableLeaderElection elects one active replica.
	EnableLeaderElection bool
	// CertificatesNamespace holds the service-proxy certificate Secret.
	CertificatesNamespace string
	// SignerSecretNamespace and SignerSecretName locate the CA Secret.
	SignerSecretNamespace, SignerSecretName string
	// AgentImage is accepted for compatibility and has no effect.
	AgentImage string
	// PodNamespace is the command's namespace (from $POD_NAMESPACE).
	PodNamespace string
}

// NewOptions returns the defaults of the existing addon's controllers
// command.
func NewOptions() *Options {
	return &Options{
		MetricsAddr:           ":8080",
		HealthProbeAddr:       ":8081",
		CertificatesNamespace: "default",
		SignerSecretNamespace: "default",
		SignerSecretName:      "cluster-proxy-signer",
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to the hub kubeconfig; empty means in-cluster configuration (or $KUBECONFIG).")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, "The address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.HealthProbeAddr, "health-probe-addr", o.HealthProbeAddr, "The address the health probe endpoint binds to; 0 disables it.")
	fs.BoolVar(&o.EnableLeaderElection, "enable-leader-election", o.EnableLeaderElection, "Enable leader election (lease "+LeaderElectionID+" in $POD_NAMESPACE) so only one replica is active.")
	fs.StringVar(&o.CertificatesNamespace, "certificates-namespace", o.CertificatesNamespace, "Namespace of the service-proxy certificate Secret "+"cluster-proxy-service-proxy-server-cert.")
	fs.StringVar(&o.SignerSecretNamespace, "signer-secret-namespace", o.SignerSecretNamespace, "Namespace of the Secret holding the cluster-proxy CA.")
	fs.StringVar(&o.SignerSecretName, "signer-secret-name", o.SignerSecretName, "Name of the Secret holding the cluster-proxy CA (keys ca.crt, ca.key); created when missing.")
	fs.StringVar(&o.AgentImage, "agent-image", o.AgentImage, "Accepted for compatibility with the existing addon; it has no effect.")
	_ = fs.MarkDeprecated("agent-image", "it has no effect and will be removed")
}

// Complete fills in the pod namespace from the environment.
func (o *Options) Complete() error {
	if o.PodNamespace == "" {
		o.PodNamespace = command.PodNamespace()
	}
	return nil
}

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.EnableLeaderElection && o.PodNamespace == "" {
		errs = append(errs, fmt.Errorf("--enable-leader-election needs environment variable %s set to the command's namespace", command.PodNamespaceEnv))
	}
	for flag, addr := range map[string]string{"--metrics-addr": o.MetricsAddr, "--health-probe-addr": o.HealthProbeAddr} {
		if addr == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s %q: want host:port, :port or 0 to disable: %w", flag, addr, err))
		}
	}
	for flag, ns := range map[string]string{"--certificates-namespace": o.CertificatesNamespace, "--signer-secret-namespace": o.SignerSecretNamespace} {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("invalid %s %q: %s", flag, ns, strings.Join(msgs, "; ")))
		}
	}
	if msgs := validation.IsDNS1123Subdomain(o.SignerSecretName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("invalid --signer-secret-name %q: %s", o.SignerSecretName, strings.Join(msgs, "; ")))
	}
	return errors.Join(errs...)
}

// Log writes the effective options.
func (o *Options) Log(log logr.Logger) {
	log.Info("controllers options",
		"kubeconfig", o.Kubeconfig,
		"podNamespace", o.PodNamespace,
		"metricsAddr", o.MetricsAddr,
		"healthProbeAddr", o.HealthProbeAddr,
		"enableLeaderElection", o.EnableLeaderElection,
		"certificatesNamespace", o.CertificatesNamespace,
		"signerSecret", o.SignerSecretNamespace+"/"+o.SignerSecretName,
	)
}

// Run keeps the service-proxy certificate fresh until ctx is done. The
// options must be validated.
func Run(ctx context.Context, o *Options) error {
	log := klog.FromContext(ctx)
	ctrl.SetLogger(log)
	cfg, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return err
	}
	// Only the Secrets of the two namespaces are cached.
	namespaces := map[string]cache.Config{o.CertificatesNamespace: {}, o.SignerSecretNamespace: {}}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Cache:                         cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {Namespaces: namespaces}}},
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.HealthProbeAddr,
		LeaderElection:                o.EnableLeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.PodNamespace,
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
	// The CA Secret is read and created without the cache, so one the
	// addon-manager has just created is seen at once.
	direct, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return fmt.Errorf("failed to create a client: %w", err)
	}
	r := &Reconciler{
		Client:          mgr.GetClient(),
		CA:              &signer.Store{Client: direct, Namespace: o.SignerSecretNamespace, Name: o.SignerSecretName, Clock: clock.RealClock{}},
		Clock:           clock.RealClock{},
		Namespace:       o.CertificatesNamespace,
		SignerNamespace: o.SignerSecretNamespace,
		SignerName:      o.SignerSecretName,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("failed to set up the service-proxy certificate controller: %w", err)
	}
	log.Info("starting the controllers")
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("controllers stopped: %w", err)
	}
	return nil
}
