package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	agentproto "sigs.k8s.io/apiserver-network-proxy/proto/agent"
)

// loopbackServerName is the server name clients of a loopback port verify:
// the PKI's agent-server certificate holds it, and tests that dial the
// frontend issue the proxy-server certificate for it.
const loopbackServerName = "127.0.0.1"

// ServerTLS is the configuration of a port serving certFile and keyFile
// with mutual TLS: it requires a client certificate the PKI's CA issued.
func (p *TunnelPKI) ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("failed to load the serving certificate %s: %w", certFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: p.caPool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// ClientTLS is the configuration of a client that presents cert to a port
// on 127.0.0.1 and trusts the PKI's CA.
func (p *TunnelPKI) ClientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.caPool(),
		ServerName: loopbackServerName, MinVersion: tls.VersionTLS12}
}

// caPool is a pool holding the PKI's CA.
func (p *TunnelPKI) caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Cert)
	return pool
}

// TunnelCore is a proxy-server core: the AgentService agents connect to
// and the ProxyService clients dial through. Our
// internal/tunnel/server.Server and apiserver-network-proxy's stock
// ProxyServer both are one.
type TunnelCore interface {
	agentproto.AgentServiceServer
	client.ProxyServiceServer
}

// TunnelServer is a TunnelCore served as a proxy-server serves it, over
// real gRPC with mutual TLS on two free loopback ports.
type TunnelServer struct {
	// PKI issued the ports' serving certificates and the clients' ones.
	PKI *TunnelPKI
	// AgentAddr is the agent port (host:port).
	AgentAddr string
	// FrontendAddr is the client port (host:port).
	FrontendAddr string
	// stop stops both gRPC servers.
	stop func()
}

// ServeTunnelCore serves core's AgentService with the PKI's agent-server
// certificate and its ProxyService with the proxy-server certificate, each
// on a free loopback port, until Stop.
func ServeTunnelCore(pki *TunnelPKI, core TunnelCore) (*TunnelServer, error) {
	agentAddr, stopAgent, err := serveGRPC(pki, pki.AgentServerCertFile, pki.AgentServerKeyFile,
		func(gs *grpc.Server) { agentproto.RegisterAgentServiceServer(gs, core) })
	if err != nil {
		return nil, fmt.Errorf("failed to serve the agent port: %w", err)
	}
	frontendAddr, stopFrontend, err := serveGRPC(pki, pki.ProxyServerCertFile, pki.ProxyServerKeyFile,
		func(gs *grpc.Server) { client.RegisterProxyServiceServer(gs, core) })
	if err != nil {
		stopAgent()
		return nil, fmt.Errorf("failed to serve the frontend port: %w", err)
	}
	return &TunnelServer{PKI: pki, AgentAddr: agentAddr, FrontendAddr: frontendAddr,
		stop: func() { stopFrontend(); stopAgent() }}, nil
}

// Stop stops both ports at once, closing their open streams.
func (s *TunnelServer) Stop() { s.stop() }

// Dial connects to address through a stock single-use konnectivity tunnel
// to the frontend port (DialThroughTunnel).
func (s *TunnelServer) Dial(ctx context.Context, address string) (net.Conn, error) {
	return DialThroughTunnel(ctx, s.PKI, s.FrontendAddr, address)
}

// serveGRPC serves the services register registers on a free loopback
// port, with certFile and keyFile and pki's mutual TLS, until stop.
func serveGRPC(pki *TunnelPKI, certFile, keyFile string, register func(*grpc.Server)) (addr string, stop func(), err error) {
	tlsConfig, err := pki.ServerTLS(certFile, keyFile)
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("failed to listen on loopback: %w", err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)))
	register(gs)
	go func() { _ = gs.Serve(l) }()
	return l.Addr().String(), gs.Stop, nil
}

// DialThroughTunnel connects to address through a stock single-use
// konnectivity tunnel to the proxy-server frontend at serverAddr,
// presenting the PKI's proxy-client certificate. The tunnel lives as long
// as the connection; ctx bounds the dial only.
func DialThroughTunnel(ctx context.Context, pki *TunnelPKI, serverAddr, address string) (net.Conn, error) {
	cert, err := tls.X509KeyPair(pki.ProxyClientCert, pki.ProxyClientKey)
	if err != nil {
		return nil, fmt.Errorf("failed to load the proxy-client certificate: %w", err)
	}
	creds := credentials.NewTLS(pki.ClientTLS(cert))
	tunnel, err := konnectivity.CreateSingleUseGrpcTunnelWithContext(ctx, context.WithoutCancel(ctx), serverAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("failed to open a tunnel to %s: %w", serverAddr, err)
	}
	// No address in the wrap: callers read the error for what the agent
	// answered, the host it failed to resolve among it.
	conn, err := tunnel.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("failed to dial through the tunnel: %w", err)
	}
	return conn, nil
}
