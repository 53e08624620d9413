package addonagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Options are the addon-agent's settings.
type Options struct {
	// HubKubeconfig is the addon-agent's hub kubeconfig (registered by OCM).
	HubKubeconfig string
	// Kubeconfig reaches the managed cluster; empty means in-cluster.
	Kubeconfig string
	// ClusterName is the managed cluster's name on the hub.
	ClusterName string
	// ProxyServerNamespace is where the hub proxy-servers run.
	ProxyServerNamespace string
	// EnablePortForwardProxy relays the proxy-agent's connections through the
	// hub kube-apiserver's port-forwarding (PortForward entrypoint).
	EnablePortForwardProxy bool
	// PortForwardProxyPort is the local port the relay listens on.
	PortForwardProxyPort int
	// PortForwardTargetPort is the proxy-server pods' agent port.
	PortForwardTargetPort int
	// EnableProxyAgentHealthCheck renews the Lease only while the proxy-agent
	// is connected.
	EnableProxyAgentHealthCheck bool
	// ProxyAgentReadyURL is the proxy-agent's readiness endpoint.
	ProxyAgentReadyURL string
	// HealthBindAddress serves /healthz.
	HealthBindAddress string
	// CertificateFiles are watched: a change fails /healthz. None by
	// default: the proxy-agent re-reads its renewed certificate itself, and
	// the addon-agent's /healthz is no container's probe any more.
	CertificateFiles []string
	// LeaseDuration is the Lease's duration and renewal period.
	LeaseDuration time.Duration
	// PodNamespace is the agent's namespace (from $POD_NAMESPACE).
	PodNamespace string
}

// NewOptions returns the defaults of the existing addon-agent.
func NewOptions() *Options {
	return &Options{
		ProxyServerNamespace:        "open-cluster-management-addon",
		PortForwardProxyPort:        int(proxyv1alpha1.DefaultEntrypointPort),
		PortForwardTargetPort:       int(proxyv1alpha1.AgentServerPort),
		EnableProxyAgentHealthCheck: true,
		ProxyAgentReadyURL:          "http://localhost:8093/readyz",
		HealthBindAddress:           ":8888",
		LeaseDuration:               DefaultLeaseDuration,
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.HubKubeconfig, "hub-kubeconfig", o.HubKubeconfig, "Path to the addon-agent's hub kubeconfig.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to the managed cluster kubeconfig; empty means in-cluster (or $KUBECONFIG).")
	fs.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "Name of this managed cluster on the hub.")
	fs.StringVar(&o.ProxyServerNamespace, "proxy-server-namespace", o.ProxyServerNamespace, "Hub namespace of the proxy-servers.")
	fs.BoolVar(&o.EnablePortForwardProxy, "enable-port-forward-proxy", o.EnablePortForwardProxy, "Relay the proxy-agent's connections through the hub kube-apiserver's port-forwarding.")
	fs.IntVar(&o.PortForwardProxyPort, "port-forward-proxy-port", o.PortForwardProxyPort, "Local port of the port-forward relay (the entrypoint port).")
	fs.IntVar(&o.PortForwardTargetPort, "port-forward-target-port", o.PortForwardTargetPort, "Agent port of the proxy-server pods the relay forwards to.")
	fs.BoolVar(&o.EnableProxyAgentHealthCheck, "enable-proxy-agent-health-check", o.EnableProxyAgentHealthCheck, "Renew the addon lease only while the proxy-agent is connected.")
	fs.StringVar(&o.ProxyAgentReadyURL, "proxy-agent-ready-url", o.ProxyAgentReadyURL, "Readiness endpoint of the proxy-agent.")
	fs.StringVar(&o.HealthBindAddress, "health-bind-address", o.HealthBindAddress, "Address of the /healthz endpoint.")
	fs.StringSliceVar(&o.CertificateFiles, "certificate-files", o.CertificateFiles, "Files whose change fails /healthz so the pod restarts onto them.")
	fs.DurationVar(&o.LeaseDuration, "lease-duration", o.LeaseDuration, "Duration and renewal period of the addon lease.")
}

// Complete fills in the pod namespace from the environment.
func (o *Options) Complete() error {
	if o.PodNamespace == "" {
		o.PodNamespace = command.PodNamespace()
	}
	return nil
}

// Log writes the effective options.
func (o *Options) Log(log logr.Logger) {
	log.Info("addon-agent options",
		"cluster", o.ClusterName,
		"podNamespace", o.PodNamespace,
		"hubKubeconfig", o.HubKubeconfig,
		"kubeconfig", o.Kubeconfig,
		"proxyServerNamespace", o.ProxyServerNamespace,
		"enablePortForwardProxy", o.EnablePortForwardProxy,
		"portForwardProxyPort", o.PortForwardProxyPort,
		"portForwardTargetPort", o.PortForwardTargetPort,
		"enableProxyAgentHealthCheck", o.EnableProxyAgentHealthCheck,
		"proxyAgentReadyURL", o.ProxyAgentReadyURL,
		"healthBindAddress", o.HealthBindAddress,
		"certificateFiles", o.CertificateFiles,
		"leaseDuration", o.LeaseDuration,
	)
}

// Validate reports every invalid option, naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.PodNamespace == "" {
		errs = append(errs, errors.New("environment variable POD_NAMESPACE must be set to the agent's namespace"))
	}
	if o.HubKubeconfig == "" {
		errs = append(errs, errors.New("--hub-kubeconfig is required"))
	}
	if msgs := validation.IsDNS1123Label(o.ClusterName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("invalid --cluster-name %q: %s", o.ClusterName, strings.Join(msgs, "; ")))
	}
	for flag, port := range map[string]int{"--port-forward-proxy-port": o.PortForwardProxyPort, "--port-forward-target-port": o.PortForwardTargetPort} {
		if port < 1 || port > 65535 {
			errs = append(errs, fmt.Errorf("invalid %s %d: must be 1-65535", flag, port))
		}
	}
	if _, _, err := net.SplitHostPort(o.HealthBindAddress); err != nil {
		errs = append(errs, fmt.Errorf("invalid --health-bind-address %q: %w", o.HealthBindAddress, err))
	}
	if o.LeaseDuration < time.Second {
		errs = append(errs, fmt.Errorf("invalid --lease-duration %s: must be at least 1s", o.LeaseDuration))
	}
	return errors.Join(errs...)
}

// Run runs the addon-agent until ctx is done. The options must be validated.
func Run(ctx context.Context, o *Options) error {
	managedConfig, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return err
	}
	hubConfig, err := kubeconfig.Load(o.HubKubeconfig)
	if err != nil {
		return err
	}
	managed, err := kubernetes.NewForConfig(managedConfig)
	if err != nil {
		return fmt.Errorf("failed to create the managed cluster client: %w", err)
	}
	hub, err := kubernetes.NewForConfig(hubConfig)
	if err != nil {
		return fmt.Errorf("failed to create the hub client: %w", err)
	}
	certsUnchanged, err := FilesUnchanged(o.CertificateFiles...)
	if err != nil {
		return err
	}
	updater := &LeaseUpdater{
		Managed: managed, Hub: hub, Namespace: o.PodNamespace, ClusterName: o.ClusterName,
		Duration: o.LeaseDuration, Clock: clock.RealClock{},
	}
	if o.EnableProxyAgentHealthCheck {
		updater.Checks = append(updater.Checks, ReadyCheck(&http.Client{Timeout: 5 * time.Second}, o.ProxyAgentReadyURL))
	}
	health := &HealthServer{Addr: o.HealthBindAddress, Checks: map[string]func(context.Context) error{"certificates": certsUnchanged}}

	var relay *Relay
	if o.EnablePortForwardProxy {
		listener, err := net.Listen("tcp", net.JoinHostPort("localhost", strconv.Itoa(o.PortForwardProxyPort)))
		if err != nil {
			return fmt.Errorf("failed to listen for the port-forward relay: %w", err)
		}
		relay = &Relay{Hub: hub, HubConfig: hubConfig, Namespace: o.ProxyServerNamespace, Listener: listener, TargetPort: o.PortForwardTargetPort}
		health.Checks["port forward proxy readiness"] = relay.Ready
	}

	klog.FromContext(ctx).Info("starting the addon-agent")
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { updater.Run(ctx); return nil })
	g.Go(func() error { return health.Run(ctx) })
	if relay != nil {
		g.Go(func() error { return relay.Run(ctx) })
	}
	return g.Wait()
}
