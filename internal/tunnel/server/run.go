package server

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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"k8s.io/klog/v2"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	"sigs.k8s.io/apiserver-network-proxy/proto/agent"

	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
)

// agentKeepaliveMinTime is the shortest keepalive interval agents may use
// (apiserver-network-proxy's server enforces the same).
const agentKeepaliveMinTime = 30 * time.Second

// RunConfig is a proxy-server's whole configuration: the validated flags.
type RunConfig struct {
	// Options configure the Server; Strategies come from ProxyStrategies.
	Options         Options
	ProxyStrategies string
	// TLSProfile is the minimum version and cipher suites of both ports.
	TLSProfile tlsprofile.Profile
	// FrontendAddress is the frontend's TCP address, unless UDSName names
	// a Unix socket (plain gRPC, no TLS), removed first with DeleteUDSFile.
	FrontendAddress string
	UDSName         string
	DeleteUDSFile   bool
	// ServerCert, ServerKey and ServerCA secure the TCP frontend (clients
	// verified against ServerCA when set).
	ServerCert, ServerKey, ServerCA string
	// AgentAddress is the agent port; ClusterCert, ClusterKey and
	// ClusterCA secure it (agents verified against ClusterCA).
	AgentAddress                       string
	ClusterCert, ClusterKey, ClusterCA string
	// HealthAddress serves /healthz, /readyz (/ready) and /metrics;
	// AdminAddress /metrics and, with EnableProfiling, /debug/pprof.
	HealthAddress, AdminAddress                string
	EnableProfiling, EnableContentionProfiling bool
	KeepaliveTime, FrontendKeepaliveTime       time.Duration
	GracefulShutdownTimeout                    time.Duration
	FrontendPeerCheck, AgentPeerCheck          func(*x509.Certificate) error
}

// Run serves the proxy-server until ctx ends, then stops its gRPC servers
// (waiting up to GracefulShutdownTimeout for open streams) and HTTP
// servers.
func Run(ctx context.Context, c RunConfig) error {
	logger := klog.FromContext(ctx)
	strategies, err := ParseStrategies(c.ProxyStrategies)
	if err != nil {
		return err
	}
	c.Options.Strategies = strategies
	s, err := New(c.Options)
	if err != nil {
		return err
	}
	base := &tls.Config{MinVersion: c.TLSProfile.MinVersion, CipherSuites: c.TLSProfile.CipherSuites}

	agentTLS, err := NewReloadingTLS(c.ClusterCert, c.ClusterKey, c.ClusterCA, base, c.AgentPeerCheck)
	if err != nil {
		return fmt.Errorf("agent port: %w", err)
	}
	agentServer := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(agentTLS.Config())),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: c.KeepaliveTime}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: agentKeepaliveMinTime, PermitWithoutStream: true}),
	)
	agent.RegisterAgentServiceServer(agentServer, s)
	agentListener, err := net.Listen("tcp", c.AgentAddress)
	if err != nil {
		return fmt.Errorf("failed to listen for agents on %s: %w", c.AgentAddress, err)
	}

	frontendOpts := []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{Time: c.FrontendKeepaliveTime})}
	var frontendListener net.Listener
	if c.UDSName != "" {
		frontendListener, err = listenUnix(c.UDSName, c.DeleteUDSFile)
	} else {
		var frontendTLS *ReloadingTLS
		frontendTLS, err = NewReloadingTLS(c.ServerCert, c.ServerKey, c.ServerCA, base, c.FrontendPeerCheck)
		if err == nil {
			frontendOpts = append(frontendOpts, grpc.Creds(credentials.NewTLS(frontendTLS.Config())))
			frontendListener, err = net.Listen("tcp", c.FrontendAddress)
		}
	}
	if err != nil {
		_ = agentListener.Close()
		return fmt.Errorf("frontend: %w", err)
	}
	frontendServer := grpc.NewServer(frontendOpts...)
	client.RegisterProxyServiceServer(frontendServer, s)

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registry.MustRegister(s.Collectors()...)
	metrics := promhttp.HandlerFor(registry, promhttp.HandlerOpts{})
	health := http.NewServeMux()
	health.Handle("/metrics", metrics)
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	ready := func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := s.Ready(); !ok {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, why)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}
	health.HandleFunc("/readyz", ready)
	health.HandleFunc("/ready", ready) // apiserver-network-proxy's older path
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
	var httpServers []*http.Server
	var httpListeners []net.Listener
	for _, hs := range []struct {
		addr    string
		handler http.Handler
	}{{c.HealthAddress, health}, {c.AdminAddress, admin}} {
		l, err := net.Listen("tcp", hs.addr)
		if err != nil {
			for _, other := range append(httpListeners, agentListener, frontendListener) {
				_ = other.Close()
			}
			return fmt.Errorf("failed to listen on %s: %w", hs.addr, err)
		}
		httpListeners = append(httpListeners, l)
		httpServers = append(httpServers, &http.Server{Handler: hs.handler, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 20})
	}

	errs := make(chan error, 4)
	var wg sync.WaitGroup
	wg.Go(func() { errs <- agentServer.Serve(agentListener) })
	wg.Go(func() { errs <- frontendServer.Serve(frontendListener) })
	for i, hs := range httpServers {
		wg.Go(func() {
			if err := hs.Serve(httpListeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		})
	}
	logger.Info("proxy-server serving", "serverID", c.Options.ServerID, "agents", agentListener.Addr().String(),
		"frontend", frontendListener.Addr().String(), "health", httpListeners[0].Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		logger.Error(runErr, "A proxy-server listener failed; stopping")
	}
	stopGRPC(agentServer, frontendServer, c.GracefulShutdownTimeout)
	for _, hs := range httpServers {
		_ = hs.Close()
	}
	wg.Wait()
	if c.UDSName != "" {
		_ = os.Remove(c.UDSName)
	}
	return runErr
}

// stopGRPC stops the servers: at once without a timeout, otherwise
// gracefully (open streams may finish) for at most timeout.
func stopGRPC(agentServer, frontendServer *grpc.Server, timeout time.Duration) {
	if timeout <= 0 {
		frontendServer.Stop()
		agentServer.Stop()
		return
	}
	done := make(chan struct{})
	go func() {
		frontendServer.GracefulStop()
		agentServer.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		frontendServer.Stop()
		agentServer.Stop()
		<-done
	}
}

// listenUnix listens on a Unix socket only the owner and group may use,
// removing a leftover socket file first when asked.
func listenUnix(path string, deleteExisting bool) (net.Listener, error) {
	if deleteExisting {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("failed to remove the old socket %s: %w", path, err)
		}
	}
	old := syscall.Umask(0o007)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", path, err)
	}
	return l, nil
}
