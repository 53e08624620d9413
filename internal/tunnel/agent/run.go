package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"
)

// drainPoll is how often a draining agent checks whether it is idle.
const drainPoll = 500 * time.Millisecond

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
	c.Options.Credentials = credentials.NewTLS(creds.Config())
	a, err := New(c.Options)
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "konnectivity_network_proxy", Subsystem: "agent", Name: "open_server_connections",
			Help: "Proxy-servers the agent holds a stream to.",
		}, func() float64 { return float64(a.Servers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "konnectivity_network_proxy", Subsystem: "agent", Name: "open_endpoint_connections",
			Help: "Open backend connections and dials in flight.",
		}, func() float64 { return float64(a.Open()) }))
	metrics := promhttp.HandlerFor(registry, promhttp.HandlerOpts{})
	health := http.NewServeMux()
	health.Handle("/metrics", metrics)
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	health.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if a.Servers() == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "not connected to any proxy-server")
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	admin := http.NewServeMux()
	admin.Handle("/metrics", metrics)
	if c.EnableProfiling {
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if c.EnableContentionProfiling {
			runtime.SetBlockProfileRate(1)
		}
	}
	var servers []*http.Server
	var wg sync.WaitGroup
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
		wg.Wait()
	}()
	for _, hs := range []struct {
		addr    string
		handler http.Handler
	}{{c.HealthAddress, health}, {c.AdminAddress, admin}} {
		l, err := net.Listen("tcp", hs.addr)
		if err != nil {
			return fmt.Errorf("failed to listen on %s: %w", hs.addr, err)
		}
		s := &http.Server{Handler: hs.handler, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 20}
		servers = append(servers, s)
		wg.Go(func() {
			if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "A proxy-agent HTTP server stopped", "address", hs.addr)
			}
		})
	}

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
	for a.Open() > 0 {
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
	certFile, keyFile, caFile, serverName string
	alpn                                  []string

	mu        sync.Mutex
	certStamp [2]fileStamp
	cert      *tls.Certificate
	caStamp   fileStamp
	pool      *x509.CertPool
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	modTime time.Time
	size    int64
}

func stamp(path string) (fileStamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{info.ModTime(), info.Size()}, nil
}

// NewReloadingClientTLS reads the files once (failing when they are not
// usable) and returns the configuration source.
func NewReloadingClientTLS(certFile, keyFile, caFile, serverName string, alpn []string) (*ReloadingClientTLS, error) {
	r := &ReloadingClientTLS{certFile: certFile, keyFile: keyFile, caFile: caFile, serverName: serverName, alpn: alpn}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := errors.Join(r.reloadCertLocked(), r.reloadCALocked()); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *ReloadingClientTLS) reloadCertLocked() error {
	if r.certFile == "" {
		return nil
	}
	c, err1 := stamp(r.certFile)
	k, err2 := stamp(r.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("failed to read the agent certificate: %w", err)
	}
	if r.cert != nil && r.certStamp == [2]fileStamp{c, k} {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("failed to load the agent certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certStamp = &cert, [2]fileStamp{c, k}
	return nil
}

func (r *ReloadingClientTLS) reloadCALocked() error {
	if r.caFile == "" {
		return nil
	}
	s, err := stamp(r.caFile)
	if err != nil {
		return fmt.Errorf("failed to read the CA bundle: %w", err)
	}
	if r.pool != nil && r.caStamp == s {
		return nil
	}
	data, err := os.ReadFile(r.caFile)
	if err != nil {
		return fmt.Errorf("failed to read the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("the CA bundle %s holds no PEM certificate", r.caFile)
	}
	r.pool, r.caStamp = pool, s
	return nil
}

// Config returns the client configuration. With a CA file, the server's
// chain is verified against the CA as read at each handshake (crypto/tls's
// own verification is replaced because its roots are fixed); without one,
// against the system roots.
func (r *ReloadingClientTLS) Config() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.serverName, NextProtos: r.alpn}
	if r.certFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			_ = r.reloadCertLocked() // a broken renewal keeps the last good certificate
			return r.cert, nil
		}
	}
	if r.caFile == "" {
		return cfg
	}
	cfg.InsecureSkipVerify = true //nolint:gosec // VerifyConnection verifies the chain and the name against the re-read CA.
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		r.mu.Lock()
		_ = r.reloadCALocked()
		pool := r.pool
		r.mu.Unlock()
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the proxy-server presented no certificate")
		}
		intermediates := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			intermediates.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			// The configured name, not cs.ServerName: that is empty when the
			// name is an IP address (no SNI), which would skip the check.
			Roots: pool, Intermediates: intermediates, DNSName: r.serverName,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("the proxy-server's certificate is not valid for %q under CA %s: %w", r.serverName, r.caFile, err)
		}
		return nil
	}
	return cfg
}
