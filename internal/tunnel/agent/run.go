package agent

import (
	"context"
	"crypto/tls"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/tlsfiles"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/endpoints"
)

// drainPoll is how often a draining agent checks whether it is idle.
const drainPoll = 500 * time.Millisecond

// DefaultRetireTimeout is how long a connection replaced after a
// certificate change keeps carrying the connections it had (long watches,
// exec sessions) before it is closed.
const DefaultRetireTimeout = time.Hour

// RunConfig is a proxy-agent's whole configuration: the validated flags.
type RunConfig struct {
	// Options configure the Agent; its Credentials come from the files
	// below.
	Options Options
	// AgentCert, AgentKey and CACert are the client certificate and the
	// CA that verifies the servers (re-read when they change); ServerName
	// is the name the server certificate must carry; ALPN are extra ALPN
	// protocols.
	AgentCert, AgentKey, CACert, ServerName string
	ALPN                                    []string
	// HealthAddress serves /healthz, /readyz and /metrics; AdminAddress
	// /metrics and, with EnableProfiling, /debug/pprof.
	HealthAddress, AdminAddress                string
	EnableProfiling, EnableContentionProfiling bool
}

// Run runs the agent until ctx ends (the first SIGTERM); then it drains
// (konnectivity's DRAIN to every server) and returns once no connection or
// dial is open any more, or when stop ends.
func Run(ctx context.Context, stop <-chan struct{}, c RunConfig) error {
	logger := klog.FromContext(ctx)
	creds, err := NewReloadingClientTLS(c.AgentCert, c.AgentKey, c.CACert, c.ServerName, c.ALPN)
	if err != nil {
		return err
	}
	c.Options.Credentials = credentials.NewTLS(creds.Config(ctx))
	if creds.cert != nil && c.Options.Certificate == nil {
		// A renewed certificate (a CA rotation's above all) replaces the
		// connections made with the old one, without cutting what they carry.
		c.Options.Certificate = creds.CertificateSerial
		if c.Options.RetireTimeout == 0 {
			c.Options.RetireTimeout = DefaultRetireTimeout
		}
	}
	a, err := New(c.Options)
	if err != nil {
		return err
	}
	stopEndpoints, err := endpoints.Start(ctx, endpoints.Config{
		HealthAddress: c.HealthAddress, AdminAddress: c.AdminAddress,
		Ready: func() (bool, string) {
			if a.Servers() == 0 {
				return false, "not connected to any proxy-server"
			}
			return true, ""
		},
		Collectors: []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "konnectivity_network_proxy", Subsystem: "agent", Name: "open_server_connections",
				Help: "Proxy-servers the agent holds a stream to.",
			}, func() float64 { return float64(a.Servers()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "cluster_proxy_proxy_agent_server_count",
				Help: "Proxy-servers there are, as they told the agent (their --server-count); 0 before any answered.",
			}, func() float64 { return float64(a.ServerCount()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "konnectivity_network_proxy", Subsystem: "agent", Name: "open_endpoint_connections",
				Help: "Open backend connections.",
			}, func() float64 { return float64(a.Open()) }),
		},
		EnableProfiling: c.EnableProfiling, EnableContentionProfiling: c.EnableContentionProfiling,
	})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer func() {
		stopEndpoints()
		wg.Wait()
	}()

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	wg.Go(func() { a.Run(runCtx) })
	logger.Info("proxy-agent running", "agentID", c.Options.AgentID, "proxyServer", c.Options.ServerAddress, "identifiers", c.Options.Identifiers)
	select {
	case <-ctx.Done():
	case <-stop:
		return nil
	}
	logger.Info("Draining: the proxy-servers send no new dials here; exiting once the open connections are closed")
	a.Drain(ctx)
	ticker := time.NewTicker(drainPoll)
	defer ticker.Stop()
	for a.Busy() {
		select {
		case <-stop:
			return nil
		case <-ticker.C:
		}
	}
	return nil
}

// ReloadingClientTLS is the agent's TLS: the client certificate and the
// CA bundle that verifies the servers are re-read from their files when
// they change, so renewed certificates take effect on the next handshake
// without a restart. A file that cannot be read keeps the last good
// material.
type ReloadingClientTLS struct {
	serverName string
	alpn       []string
	cert       *tlsfiles.KeyPair
	roots      *tlsfiles.Pool
}

// NewReloadingClientTLS reads the files once (failing when they are not
// usable) and returns the configuration source.
func NewReloadingClientTLS(certFile, keyFile, caFile, serverName string, alpn []string) (*ReloadingClientTLS, error) {
	r := &ReloadingClientTLS{serverName: serverName, alpn: alpn}
	var err error
	if certFile != "" {
		if r.cert, err = tlsfiles.NewKeyPair(certFile, keyFile); err != nil {
			return nil, err
		}
	}
	if caFile != "" {
		if r.roots, err = tlsfiles.NewPool(caFile); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// CertificateSerial returns the serial number (hexadecimal) of the client
// certificate as the files hold it now; "" without one.
func (r *ReloadingClientTLS) CertificateSerial() string {
	if r.cert == nil {
		return ""
	}
	cert, _ := r.cert.Get()
	if cert == nil || cert.Leaf == nil {
		return ""
	}
	return cert.Leaf.SerialNumber.Text(16)
}

// Config returns the client configuration. With a CA file, the server's
// chain is verified against the CA as read at each handshake (crypto/tls's
// own verification is replaced because its roots are fixed); without one,
// against the system roots. ctx gives the logger that reports a CA file
// that cannot be read.
func (r *ReloadingClientTLS) Config(ctx context.Context) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.serverName, NextProtos: r.alpn}
	if r.cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := r.cert.Get() // a broken renewal keeps the last good certificate
			return cert, nil
		}
	}
	if r.roots == nil {
		return cfg
	}
	cfg.InsecureSkipVerify = true //nolint:gosec // VerifyConnection verifies the chain and the name against the re-read CA.
	// The configured name, not the connection's SNI name: crypto/tls sends
	// none for an IP address.
	cfg.VerifyConnection = tlsfiles.VerifyServer(ctx, r.roots, r.serverName)
	return cfg
}
