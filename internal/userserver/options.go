// Package userserver is `cluster-proxy user-server`, the hub's HTTPS front
// door to every managed cluster: https://<user-server>/<cluster>/<kube path>
// reaches the cluster's kube-apiserver and
// /<cluster>/api/v1/namespaces/<ns>/services/<[proto:]svc[:port]>/proxy-service/<path>
// an exposed Service, both through the cluster's service-proxy, dialled
// through one pooled konnectivity tunnel (pkg/client). It does not
// authenticate: the caller's bearer token travels to the service-proxy,
// which does.
package userserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/httpserve"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
)

// tlsProfileReadTimeout bounds how long the user-server waits, before it
// listens, for the first read of the TLS profile ConfigMap.
const tlsProfileReadTimeout = 30 * time.Second

// DefaultExposedServicesConfigMap is the allowlist ConfigMap's default name.
const DefaultExposedServicesConfigMap = "cluster-proxy-exposed-services"

// DefaultMetricsBindAddress is where the user-server serves /metrics by
// default: not the service-proxy's 8001, so both run side by side on one
// host (the controllers container of the user-server's pod has 8080 and
// 8081).
const DefaultMetricsBindAddress = ":8002"

// Options are the settings of `cluster-proxy user-server`, with the
// existing addon's flag names and defaults where it has them.
type Options struct {
	// Host and Port locate the proxy-server's frontend (konnectivity gRPC).
	Host string
	Port int
	// ProxyCACert is the CA bundle that verifies the proxy-server;
	// ProxyCert and ProxyKey are the proxy-client certificate, presented to
	// the proxy-server and to the service-proxies. Like the other
	// certificate and CA files, they are re-read when they change, so a
	// renewal or a CA rotation needs no restart.
	ProxyCACert, ProxyCert, ProxyKey string
	// ServerCert and ServerKey are the user-server's serving certificate;
	// ServerPort its HTTPS port.
	ServerCert, ServerKey string
	ServerPort            int
	// ServiceProxyCACert is the CA bundle that verifies the service-proxies.
	ServiceProxyCACert string
	// ExposedServicesConfigMap names the allowlist ConfigMap in
	// PodNamespace.
	ExposedServicesConfigMap string
	// HealthBindAddress serves /healthz and /readyz; MetricsBindAddress
	// serves /metrics ("0" disables).
	HealthBindAddress, MetricsBindAddress string
	// DrainTimeout bounds the graceful shutdown; MinDrainDuration is how
	// long the user-server stays up not ready before it stops accepting.
	DrainTimeout, MinDrainDuration time.Duration
	// Kubeconfig reaches the hub; empty means in-cluster.
	Kubeconfig string
	// AgentInstallNamespace is accepted for compatibility; it has no effect.
	AgentInstallNamespace string
	// PodNamespace is the user-server's namespace (from $POD_NAMESPACE).
	PodNamespace string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		Port:                     int(proxyv1alpha1.ProxyServerPort),
		ServerPort:               9092,
		ExposedServicesConfigMap: DefaultExposedServicesConfigMap,
		HealthBindAddress:        ":8000",
		MetricsBindAddress:       DefaultMetricsBindAddress,
		DrainTimeout:             30 * time.Second,
		MinDrainDuration:         10 * time.Second,
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Host, "host", o.Host, "Host of the proxy-servers' frontend (konnectivity gRPC), e.g. proxy-entrypoint.<namespace>.svc.")
	fs.IntVar(&o.Port, "port", o.Port, "Port of the proxy-servers' frontend.")
	fs.StringVar(&o.ProxyCACert, "proxy-ca-cert", o.ProxyCACert, "CA bundle that verifies the proxy-servers; re-read when it changes.")
	fs.StringVar(&o.ProxyCert, "proxy-cert", o.ProxyCert, "Client certificate (proxy-client) presented to the proxy-servers and the service-proxies; re-read when it changes.")
	fs.StringVar(&o.ProxyKey, "proxy-key", o.ProxyKey, "Key of --proxy-cert.")
	fs.StringVar(&o.ServerCert, "server-cert", o.ServerCert, "Serving certificate of the user-server; re-read when it changes.")
	fs.StringVar(&o.ServerKey, "server-key", o.ServerKey, "Serving key of the user-server.")
	fs.IntVar(&o.ServerPort, "server-port", o.ServerPort, "HTTPS port of the user-server.")
	fs.StringVar(&o.ServiceProxyCACert, "service-proxy-ca-cert", o.ServiceProxyCACert, "CA bundle that verifies the managed clusters' service-proxies; re-read when it changes.")
	fs.StringVar(&o.ExposedServicesConfigMap, "exposed-services-configmap", o.ExposedServicesConfigMap, "ConfigMap in $POD_NAMESPACE listing the Services the user-server exposes (default deny).")
	fs.StringVar(&o.HealthBindAddress, "health-bind-address", o.HealthBindAddress, "Address of /healthz and /readyz.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of /metrics (Prometheus, plain HTTP); 0 disables it.")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", o.DrainTimeout, "How long open requests may take to finish at shutdown.")
	fs.DurationVar(&o.MinDrainDuration, "min-drain-duration", o.MinDrainDuration, "How long the user-server reports not ready before it stops accepting requests.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to the hub kubeconfig; empty means in-cluster configuration (or $KUBECONFIG).")
	fs.StringVar(&o.AgentInstallNamespace, "agent-install-namespace", o.AgentInstallNamespace, "Accepted for compatibility with the existing addon; it has no effect.")
	_ = fs.MarkDeprecated("agent-install-namespace", "it has no effect and will be removed")
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
	for _, f := range []struct{ flag, value string }{
		{"--host", o.Host}, {"--proxy-ca-cert", o.ProxyCACert}, {"--proxy-cert", o.ProxyCert}, {"--proxy-key", o.ProxyKey},
		{"--server-cert", o.ServerCert}, {"--server-key", o.ServerKey}, {"--service-proxy-ca-cert", o.ServiceProxyCACert},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.flag))
		}
	}
	for _, f := range []struct {
		flag string
		port int
	}{{"--port", o.Port}, {"--server-port", o.ServerPort}} {
		if f.port < 1 || f.port > 65535 {
			errs = append(errs, fmt.Errorf("invalid %s %d: must be from 1 to 65535", f.flag, f.port))
		}
	}
	if _, _, err := net.SplitHostPort(o.HealthBindAddress); err != nil {
		errs = append(errs, fmt.Errorf("invalid --health-bind-address %q: %w", o.HealthBindAddress, err))
	}
	if err := command.ValidateMetricsAddress("--metrics-bind-address", o.MetricsBindAddress); err != nil {
		errs = append(errs, err)
	}
	if o.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("invalid --drain-timeout %s: must not be negative", o.DrainTimeout))
	}
	if o.MinDrainDuration < 0 {
		errs = append(errs, fmt.Errorf("invalid --min-drain-duration %s: must not be negative", o.MinDrainDuration))
	}
	if msgs := validation.IsDNS1123Subdomain(o.ExposedServicesConfigMap); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("invalid --exposed-services-configmap %q: %v", o.ExposedServicesConfigMap, msgs))
	}
	if o.PodNamespace == "" {
		errs = append(errs, fmt.Errorf("the environment variable %s must name the user-server's namespace (where --exposed-services-configmap is read)", command.PodNamespaceEnv))
	}
	return errors.Join(errs...)
}

// Log writes the effective options.
func (o *Options) Log(log logr.Logger) {
	log.Info("user-server options",
		"host", o.Host, "port", o.Port, "proxyCACert", o.ProxyCACert, "proxyCert", o.ProxyCert, "proxyKey", o.ProxyKey,
		"serverCert", o.ServerCert, "serverKey", o.ServerKey, "serverPort", o.ServerPort,
		"serviceProxyCACert", o.ServiceProxyCACert, "exposedServicesConfigMap", o.ExposedServicesConfigMap,
		"healthBindAddress", o.HealthBindAddress, "metricsBindAddress", o.MetricsBindAddress, "drainTimeout", o.DrainTimeout, "minDrainDuration", o.MinDrainDuration,
		"kubeconfig", o.Kubeconfig, "podNamespace", o.PodNamespace)
}

// serviceProxyTransport reaches the service-proxies: connections dialled
// with dial (through the tunnel), TLS with tlsConfig, kept alive and
// reused, so a request after the first costs neither a tunnel dial nor a
// TLS handshake. HTTP/1.1 only: exec, attach and port-forward upgrade the
// connection (SPDY, WebSocket).
func serviceProxyTransport(dial func(ctx context.Context, network, address string) (net.Conn, error), tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext:           dial,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     false,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Run serves until ctx is done, then drains. The options must be validated.
func Run(ctx context.Context, o *Options) error {
	// The allowlist watch and the tunnels last until the drain is over.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()

	hub, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return err
	}
	kubeClient, err := kubernetes.NewForConfig(hub)
	if err != nil {
		return fmt.Errorf("failed to create the hub client: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(bgCtx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kubeClient.CoreV1().Events(o.PodNamespace)})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "cluster-proxy-user-server"})
	allowlist, err := watchAllowlist(bgCtx, ctx, kubeClient, recorder, o.PodNamespace, o.ExposedServicesConfigMap)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before serving
		}
		return err
	}

	material, err := loadTLS(o)
	if err != nil {
		return err
	}
	dialer, err := client.NewDialer(net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), material.proxyServerConfig(bgCtx, o.Host))
	if err != nil {
		return err
	}
	defer func() { _ = dialer.Close() }()
	transport := serviceProxyTransport(dialer.DialContext, material.serviceProxyConfig(bgCtx))
	defer transport.CloseIdleConnections()

	log := klog.FromContext(ctx)
	handler := &Server{Transport: transport, Allowlist: allowlist.Allowlist, Metrics: NewMetrics()}
	server := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handler.ServeHTTP(w, r.WithContext(klog.NewContext(r.Context(), log)))
		}),
		// The OCM TLS profile (ocm-tls-profile in the pod namespace) and
		// the serving certificate's files apply to each new handshake,
		// without a restart.
		TLSConfig: tlsprofile.ServerConfig(material.servingConfig(bgCtx),
			tlsprofile.Start(bgCtx, ctx, kubeClient, o.PodNamespace, tlsProfileReadTimeout)),
		ReadHeaderTimeout: 32 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
	if ctx.Err() != nil {
		return nil // stopped before serving
	}
	// Metrics are served until the drain is over.
	metrics, err := command.ServeMetrics(ctx, o.MetricsBindAddress, handler.Metrics.Collectors()...)
	if err != nil {
		return fmt.Errorf("failed to serve --metrics-bind-address %s: %w", o.MetricsBindAddress, err)
	}
	defer metrics.Stop()
	listener, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(o.ServerPort)))
	if err != nil {
		return fmt.Errorf("failed to listen on --server-port %d: %w", o.ServerPort, err)
	}
	return httpserve.Serve(ctx, server, listener, o.HealthBindAddress, httpserve.Drain{MinDuration: o.MinDrainDuration, Timeout: o.DrainTimeout})
}
