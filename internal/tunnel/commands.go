// Package tunnel wires the konnectivity proxy-server (package server) and
// proxy-agent (package agent), both ours, that carry cluster-proxy's
// reverse tunnels. Their options accept the flags of ANP's own binaries,
// with the same names, defaults and meaning, so manifests written for
// either run unchanged; a flag our server does not implement is refused.
package tunnel

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	agentoptions "sigs.k8s.io/apiserver-network-proxy/cmd/agent/app/options"
	serveroptions "sigs.k8s.io/apiserver-network-proxy/cmd/server/app/options"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/agent"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
)

// ServerOptions are the proxy-server's options: ANP's proxy-server flags,
// with their names, defaults and validation, served by our own server
// (package server). Flags our server does not implement are refused by
// Validate, naming the flag.
type ServerOptions struct {
	anp   *serveroptions.ProxyRunOptions
	flags *pflag.FlagSet

	// HealthReport keeps the server's health report in a ConfigMap of its
	// namespace (internal/healthreport), read by the hub's addon health
	// controller: --health-report, with the pod from the downward API
	// ($POD_NAME, $POD_NAMESPACE, $POD_UID).
	HealthReport bool
	// HealthReportKubeconfig is the kubeconfig the report is written with;
	// empty means the in-cluster configuration (or $KUBECONFIG).
	HealthReportKubeconfig string
	// PodName, PodNamespace and PodUID locate and own the report.
	PodName, PodNamespace, PodUID string
}

// healthReportMinInterval spaces the report's rewrites when agents connect
// or leave in numbers.
const healthReportMinInterval = time.Second

// NewServerOptions returns ANP's proxy-server defaults.
func NewServerOptions() *ServerOptions {
	o := &ServerOptions{anp: serveroptions.NewProxyRunOptions()}
	o.flags = o.anp.Flags()
	o.flags.BoolVar(&o.HealthReport, "health-report", false,
		"Keep this server's health report (the clusters whose agents are connected, and their certificates) in the ConfigMap cluster-proxy-health-$POD_NAME of $POD_NAMESPACE, owned by the pod ($POD_UID), for the hub to tell each addon's health. cluster-proxy only.")
	o.flags.StringVar(&o.HealthReportKubeconfig, "health-report-kubeconfig", "",
		"Kubeconfig to write the health report with; empty means the in-cluster configuration (or $KUBECONFIG). cluster-proxy only.")
	return o
}

// AddFlags binds ANP's proxy-server flags.
func (o *ServerOptions) AddFlags(fs *pflag.FlagSet) { fs.AddFlagSet(o.flags) }

// Complete reads the pod's name, namespace and UID from the environment.
func (o *ServerOptions) Complete() error {
	o.PodName = cmp.Or(o.PodName, os.Getenv(command.PodNameEnv))
	o.PodNamespace = cmp.Or(o.PodNamespace, command.PodNamespace())
	o.PodUID = cmp.Or(o.PodUID, os.Getenv(command.PodUIDEnv))
	return nil
}

// Validate applies ANP's proxy-server validation, then refuses what our
// server does not do.
func (o *ServerOptions) Validate() error {
	a := o.anp
	errs := []error{a.Validate()}
	if o.HealthReport {
		if o.PodName == "" {
			errs = append(errs, fmt.Errorf("--health-report needs $%s: the pod's name names the report's ConfigMap", command.PodNameEnv))
		}
		if o.PodNamespace == "" {
			errs = append(errs, fmt.Errorf("--health-report needs $%s: the report's ConfigMap lives in the pod's namespace", command.PodNamespaceEnv))
		}
	} else if o.HealthReportKubeconfig != "" {
		errs = append(errs, errors.New("--health-report-kubeconfig is set without --health-report: no report would be written with it"))
	}
	if a.Mode != "grpc" {
		errs = append(errs, fmt.Errorf("--mode=%s is not supported: cluster-proxy's proxy-server speaks grpc only", a.Mode))
	}
	for _, name := range []string{"agent-namespace", "agent-service-account", "authentication-audience", "kubeconfig", "kubeconfig-qps", "kubeconfig-burst", "kube-api-content-type"} {
		if o.changed(name) {
			errs = append(errs, fmt.Errorf("--%s is not supported: cluster-proxy's proxy-server authenticates agents by their client certificates (--cluster-ca-cert), not by service-account tokens", name))
		}
	}
	for _, name := range []string{"enable-lease-controller", "lease-namespace", "lease-label"} {
		if o.changed(name) {
			errs = append(errs, fmt.Errorf("--%s is not supported: agents learn the server count from --server-count", name))
		}
	}
	if o.changed("xfr-channel-size") {
		errs = append(errs, errors.New("--xfr-channel-size is not supported: cluster-proxy's proxy-server has no transfer channels to size"))
	}
	if a.ClusterCaCert == "" {
		errs = append(errs, errors.New("--cluster-ca-cert is required: cluster-proxy's proxy-server identifies every agent by its client certificate"))
	}
	if a.UdsName == "" && (a.ServerCert == "" || a.ServerKey == "") {
		errs = append(errs, errors.New("--server-cert and --server-key are required unless the frontend listens on --uds-name"))
	}
	if _, err := server.ParseStrategies(a.ProxyStrategies); err != nil {
		errs = append(errs, err)
	}
	if _, err := o.tlsProfile(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *ServerOptions) changed(name string) bool {
	f := o.flags.Lookup(name)
	return f != nil && f.Changed
}

// tlsProfile is --tls-min-version and --cipher-suites.
func (o *ServerOptions) tlsProfile() (tlsprofile.Profile, error) {
	p, err := tlsprofile.Parse(map[string]string{
		tlsprofile.KeyMinVersion:   o.anp.TLSMinVersion,
		tlsprofile.KeyCipherSuites: strings.Join(o.anp.CipherSuites, ","),
	})
	if err != nil {
		return p, fmt.Errorf("--tls-min-version or --cipher-suites: %w", err)
	}
	return p, nil
}

// Log prints the effective options.
func (o *ServerOptions) Log(logger logr.Logger) {
	a := o.anp
	logger.Info("proxy-server options", "serverID", a.ServerID, "serverCount", a.ServerCount, "proxyStrategies", a.ProxyStrategies,
		"server", net.JoinHostPort(a.ServerBindAddress, strconv.Itoa(a.ServerPort)), "udsName", a.UdsName,
		"agent", net.JoinHostPort(a.AgentBindAddress, strconv.Itoa(a.AgentPort)),
		"health", net.JoinHostPort(a.HealthBindAddress, strconv.Itoa(a.HealthPort)),
		"admin", net.JoinHostPort(a.AdminBindAddress, strconv.Itoa(a.AdminPort)),
		"backendDialTimeout", a.BackendDialTimeout, "gracefulShutdownTimeout", a.GracefulShutdownTimeout,
		"healthReport", o.HealthReport, "pod", klog.KRef(o.PodNamespace, o.PodName))
}

// RunServer runs the proxy-server until ctx is done.
func RunServer(ctx context.Context, o *ServerOptions) error {
	var report *healthreport.WriterOptions
	if o.HealthReport {
		cfg, err := kubeconfig.Load(o.HealthReportKubeconfig)
		if err != nil {
			return fmt.Errorf("--health-report: %w", err)
		}
		kube, err := kubernetes.NewForConfig(rest.AddUserAgent(cfg, "cluster-proxy-proxy-server"))
		if err != nil {
			return fmt.Errorf("--health-report: %w", err)
		}
		if o.PodUID == "" {
			klog.FromContext(ctx).Info("No $"+command.PodUIDEnv+": the health report will not be owned by the pod and outlives it", "configMap",
				klog.KRef(o.PodNamespace, healthreport.ConfigMapName(o.PodName)))
		}
		report = &healthreport.WriterOptions{Client: kube.CoreV1(), Namespace: o.PodNamespace,
			Owner:       healthreport.Owner{PodName: o.PodName, PodUID: types.UID(o.PodUID)},
			MinInterval: healthReportMinInterval}
	}
	return server.Run(ctx, server.RunConfig{
		Options: server.Options{
			ServerID: o.anp.ServerID, ServerCount: o.anp.ServerCount, DialTimeout: o.anp.BackendDialTimeout,
			Authorize: AuthorizeAgent,
		},
		ProxyStrategies: o.anp.ProxyStrategies,
		TLSProfile:      mustProfile(o),
		FrontendAddress: net.JoinHostPort(o.anp.ServerBindAddress, strconv.Itoa(o.anp.ServerPort)),
		UDSName:         o.anp.UdsName, DeleteUDSFile: o.anp.DeleteUDSFile,
		ServerCert: o.anp.ServerCert, ServerKey: o.anp.ServerKey, ServerCA: o.anp.ServerCaCert,
		AgentAddress: net.JoinHostPort(o.anp.AgentBindAddress, strconv.Itoa(o.anp.AgentPort)),
		ClusterCert:  o.anp.ClusterCert, ClusterKey: o.anp.ClusterKey, ClusterCA: o.anp.ClusterCaCert,
		HealthAddress: net.JoinHostPort(o.anp.HealthBindAddress, strconv.Itoa(o.anp.HealthPort)),
		AdminAddress:  net.JoinHostPort(o.anp.AdminBindAddress, strconv.Itoa(o.anp.AdminPort)),
		KeepaliveTime: o.anp.KeepaliveTime, FrontendKeepaliveTime: o.anp.FrontendKeepaliveTime,
		EnableProfiling: o.anp.EnableProfiling, EnableContentionProfiling: o.anp.EnableContentionProfiling,
		GracefulShutdownTimeout: o.anp.GracefulShutdownTimeout,
		FrontendPeerCheck:       RefuseAgentCertificate,
		AgentPeerCheck:          RequireAgentCertificate,
		HealthReport:            report,
	})
}

// mustProfile is the TLS profile Validate accepted.
func mustProfile(o *ServerOptions) tlsprofile.Profile {
	p, _ := o.tlsProfile()
	return p
}

// AuthorizeAgent admits an agent whose client certificate names a cluster
// (identity.ClusterFromCertificate) only when every identifier it
// registers belongs to that cluster.
func AuthorizeAgent(cert *x509.Certificate, _, identifiers string) error {
	if cert == nil {
		return errors.New("the agent presented no client certificate")
	}
	cluster, err := identity.ClusterFromCertificate(cert)
	if err != nil {
		return err
	}
	return identity.CheckIdentifiers(cluster, identifiers)
}

// RequireAgentCertificate refuses, on the agent port, a client certificate
// that names no cluster (a proxy-client certificate cannot register as an
// agent).
func RequireAgentCertificate(cert *x509.Certificate) error {
	if _, err := identity.ClusterFromCertificate(cert); err != nil {
		return fmt.Errorf("certificate %q is not a proxy-agent certificate and cannot register as an agent: %w", cert.Subject.CommonName, err)
	}
	return nil
}

// RefuseAgentCertificate refuses, on the frontend port, a proxy-agent
// certificate: an agent may not dial into other clusters.
func RefuseAgentCertificate(cert *x509.Certificate) error {
	if cluster, err := identity.ClusterFromCertificate(cert); err == nil {
		return fmt.Errorf("the proxy-agent certificate of cluster %s cannot be used on the frontend port", cluster)
	}
	return nil
}

// AgentOptions are the proxy-agent's options: ANP's proxy-agent flags,
// with their names, defaults and validation, run by our own agent (package
// agent). Flags our agent does not implement are refused by Validate,
// naming the flag.
type AgentOptions struct {
	anp   *agentoptions.GrpcProxyAgentOptions
	flags *pflag.FlagSet
}

// NewAgentOptions returns ANP's proxy-agent defaults.
func NewAgentOptions() *AgentOptions {
	o := &AgentOptions{anp: agentoptions.NewGrpcProxyAgentOptions()}
	o.flags = o.anp.Flags()
	return o
}

// AddFlags binds ANP's proxy-agent flags.
func (o *AgentOptions) AddFlags(fs *pflag.FlagSet) { fs.AddFlagSet(o.flags) }

// Complete has nothing to fill in.
func (o *AgentOptions) Complete() error { return nil }

// Validate applies ANP's proxy-agent validation, then refuses what our
// agent does not do.
func (o *AgentOptions) Validate() error {
	errs := []error{o.anp.Validate()}
	for _, name := range []string{"service-account-token-path"} {
		if o.changed(name) {
			errs = append(errs, fmt.Errorf("--%s is not supported: cluster-proxy's agents authenticate with their client certificates (--agent-cert)", name))
		}
	}
	for _, name := range []string{"count-server-leases", "lease-namespace", "lease-label", "kubeconfig", "kube-api-content-type"} {
		if o.changed(name) {
			errs = append(errs, fmt.Errorf("--%s is not supported: the agent learns the server count from the proxy-servers' serverCount header", name))
		}
	}
	if o.changed("xfr-channel-size") {
		errs = append(errs, errors.New("--xfr-channel-size is not supported: cluster-proxy's proxy-agent sizes its per-connection queues itself"))
	}
	if o.anp.AgentCert == "" || o.anp.AgentKey == "" || o.anp.CaCert == "" {
		errs = append(errs, errors.New("--agent-cert, --agent-key and --ca-cert are required: cluster-proxy's proxy-servers identify agents by their client certificates"))
	}
	return errors.Join(errs...)
}

func (o *AgentOptions) changed(name string) bool {
	f := o.flags.Lookup(name)
	return f != nil && f.Changed
}

// Log prints the effective options.
func (o *AgentOptions) Log(logger logr.Logger) {
	a := o.anp
	logger.Info("proxy-agent options", "agentID", a.AgentID, "agentIdentifiers", a.AgentIdentifiers,
		"proxyServer", net.JoinHostPort(a.ProxyServerHost, strconv.Itoa(a.ProxyServerPort)),
		"health", net.JoinHostPort(a.HealthServerHost, strconv.Itoa(a.HealthServerPort)),
		"admin", net.JoinHostPort(a.AdminBindAddress, strconv.Itoa(a.AdminServerPort)),
		"syncInterval", a.SyncInterval, "syncIntervalCap", a.SyncIntervalCap, "syncForever", a.SyncForever)
}

// RunAgent runs the proxy-agent: when ctx is done (the first SIGTERM) it
// drains, telling the proxy-servers to send it no new dials, and returns
// once its open connections are closed (a second signal ends the process
// before that).
func RunAgent(ctx context.Context, o *AgentOptions) error {
	a := o.anp
	return agent.Run(ctx, nil, agent.RunConfig{
		Options: agent.Options{
			AgentID: a.AgentID, Identifiers: a.AgentIdentifiers,
			ServerAddress: net.JoinHostPort(a.ProxyServerHost, strconv.Itoa(a.ProxyServerPort)),
			SyncInterval:  a.SyncInterval, SyncIntervalCap: a.SyncIntervalCap, SyncForever: a.SyncForever,
			ProbeInterval: a.ProbeInterval, KeepaliveTime: a.KeepaliveTime, DialTimeout: backendDialTimeout,
		},
		AgentCert: a.AgentCert, AgentKey: a.AgentKey, CACert: a.CaCert, ServerName: a.ProxyServerHost, ALPN: a.AlpnProtos,
		HealthAddress:   net.JoinHostPort(a.HealthServerHost, strconv.Itoa(a.HealthServerPort)),
		AdminAddress:    net.JoinHostPort(a.AdminBindAddress, strconv.Itoa(a.AdminServerPort)),
		EnableProfiling: a.EnableProfiling, EnableContentionProfiling: a.EnableContentionProfiling,
	})
}

// backendDialTimeout bounds the agent's dial of a backend, as
// apiserver-network-proxy's agent does.
const backendDialTimeout = 5 * time.Second
