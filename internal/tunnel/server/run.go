package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"k8s.io/klog/v2"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	"sigs.k8s.io/apiserver-network-proxy/proto/agent"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/endpoints"
	"open-cluster-management.io/cluster-proxy/pkg/client/wire"
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
	// HealthReport, when set, keeps the server's health report
	// (Server.Report) in its ConfigMap while the server runs, rewritten
	// when an agent connects or leaves; Run sets its Snapshot.
	HealthReport *healthreport.WriterOptions
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
	var report *healthreport.Writer
	if c.HealthReport != nil {
		// Agents connect only once the listeners serve, after report is set.
		c.Options.AgentsChanged = func() { report.Trigger() }
	}
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
		grpc.ForceServerCodecV2(wire.Codec{Pool: true}),
		grpc.Creds(credentials.NewTLS(agentTLS.Config())),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: c.KeepaliveTime}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: agentKeepaliveMinTime, PermitWithoutStream: true}),
	)
	agent.RegisterAgentServiceServer(agentServer, s)
	agentListener, err := net.Listen("tcp", c.AgentAddress)
	if err != nil {
		return fmt.Errorf("failed to listen for agents on %s: %w", c.AgentAddress, err)
	}

	frontendOpts := []grpc.ServerOption{grpc.ForceServerCodecV2(wire.Codec{Pool: true}), grpc.KeepaliveParams(keepalive.ServerParameters{Time: c.FrontendKeepaliveTime})}
	var frontendListener net.Listener
	var frontendTLS *ReloadingTLS
	if c.UDSName != "" {
		frontendListener, err = listenUnix(c.UDSName, c.DeleteUDSFile)
	} else {
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
	if c.HealthReport != nil {
		o := *c.HealthReport
		o.Snapshot = func() healthreport.Report { return withSigners(s.Report(), agentTLS, frontendTLS) }
		if report, err = healthreport.NewWriter(o); err != nil {
			_ = agentListener.Close()
			_ = frontendListener.Close()
			return err
		}
	}
	frontendServer := grpc.NewServer(frontendOpts...)
	client.RegisterProxyServiceServer(frontendServer, s)

	stopEndpoints, err := endpoints.Start(ctx, endpoints.Config{
		HealthAddress: c.HealthAddress, AdminAddress: c.AdminAddress, Ready: s.Ready, Collectors: s.Collectors(),
		EnableProfiling: c.EnableProfiling, EnableContentionProfiling: c.EnableContentionProfiling,
	})
	if err != nil {
		_ = agentListener.Close()
		_ = frontendListener.Close()
		return err
	}

	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errs <- agentServer.Serve(agentListener) })
	wg.Go(func() { errs <- frontendServer.Serve(frontendListener) })
	reportCtx, stopReport := context.WithCancel(ctx)
	if report != nil {
		// The Writer returns only when reportCtx ends; a failed write is
		// retried, never fatal.
		wg.Go(func() { _ = report.Run(reportCtx) })
	}
	logger.Info("proxy-server serving", "serverID", c.Options.ServerID, "agents", agentListener.Addr().String(),
		"frontend", frontendListener.Addr().String(), "health", c.HealthAddress)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		logger.Error(runErr, "A proxy-server listener failed; stopping")
	}
	stopReport()
	stopGRPC(agentServer, frontendServer, c.GracefulShutdownTimeout)
	stopEndpoints()
	wg.Wait()
	if c.UDSName != "" {
		_ = os.Remove(c.UDSName)
	}
	return runErr
}

// withSigners adds to r the CAs the agent port trusts and those that issued
// the serving certificates (frontend nil: a Unix socket, no TLS).
func withSigners(r healthreport.Report, agentTLS, frontendTLS *ReloadingTLS) healthreport.Report {
	trusted, serving := agentTLS.Signers()
	r.TrustedSigners = trusted
	servingSigners := []string{serving}
	if frontendTLS != nil {
		_, frontendServing := frontendTLS.Signers()
		servingSigners = append(servingSigners, frontendServing)
	}
	for _, ou := range servingSigners {
		if ou != "" && !slices.Contains(r.ServingSigners, ou) {
			r.ServingSigners = append(r.ServingSigners, ou)
		}
	}
	return r
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
