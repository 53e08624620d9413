package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	proxyproto "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// testServerName is the name in the fake proxy-server's certificate.
const testServerName = "proxy-entrypoint.open-cluster-management-cluster-proxy"

// testPKI holds a CA, a proxy-server serving certificate and a proxy-client
// certificate.
type testPKI struct {
	caPEM, serverCertPEM, serverKeyPEM, clientCertPEM, clientKeyPEM []byte
}

// newTestPKI issues the certificates of a fake proxy-server and its client.
func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	now := time.Now()
	ca, err := certs.NewCA(certs.CACommonName, now, time.Hour)
	if err != nil {
		t.Fatalf("failed to create the CA: %v", err)
	}
	pki := &testPKI{caPEM: ca.CertPEM}
	pki.serverCertPEM, pki.serverKeyPEM, err = ca.Issue(certs.LeafSpec{
		CommonName: "proxy-server", SANs: []string{testServerName, "127.0.0.1"}, Usage: certs.UsageServing,
	}, now)
	if err != nil {
		t.Fatalf("failed to issue the serving certificate: %v", err)
	}
	pki.clientCertPEM, pki.clientKeyPEM, err = ca.Issue(certs.LeafSpec{
		CommonName: "proxy-client", Usage: certs.UsageClient,
	}, now)
	if err != nil {
		t.Fatalf("failed to issue the client certificate: %v", err)
	}
	return pki
}

// clientTLS is the client TLS configuration of pki.
func (p *testPKI) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := NewTLSConfig(p.caPEM, p.clientCertPEM, p.clientKeyPEM, testServerName)
	if err != nil {
		t.Fatalf("failed to build the client TLS configuration: %v", err)
	}
	return cfg
}

// fakeProxyServer is a konnectivity ProxyService that needs no agent: it
// answers dials of the hosts in known by echoing the connection's data back,
// and any other dial as a proxy-server without a matching agent does. Like
// a real proxy-server, it requires a client certificate of its CA.
type fakeProxyServer struct {
	proxyproto.UnimplementedProxyServiceServer

	known   map[string]bool
	pki     *testPKI
	address string

	mu     sync.Mutex
	server *grpc.Server
	served sync.WaitGroup
	nextID atomic.Int64
}

// startFakeProxyServer serves on a free loopback port; Stop ends it.
func startFakeProxyServer(t *testing.T, pki *testPKI, known ...string) *fakeProxyServer {
	t.Helper()
	s := &fakeProxyServer{known: map[string]bool{}, pki: pki}
	for _, host := range known {
		s.known[host] = true
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("failed to listen: %v", err)
	}
	s.address = listener.Addr().String()
	s.serve(t, listener)
	t.Cleanup(s.Stop)
	return s
}

// serve starts a gRPC server on listener.
func (s *fakeProxyServer) serve(t *testing.T, listener net.Listener) {
	t.Helper()
	pair, err := tls.X509KeyPair(s.pki.serverCertPEM, s.pki.serverKeyPEM)
	if err != nil {
		t.Fatalf("failed to load the serving certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.pki.caPEM)
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	server := grpc.NewServer(grpc.Creds(creds))
	proxyproto.RegisterProxyServiceServer(server, s)
	s.mu.Lock()
	s.server = server
	s.mu.Unlock()
	s.served.Add(1)
	go func() {
		defer s.served.Done()
		_ = server.Serve(listener)
	}()
}

// Stop closes the listener and every connection, like a killed process.
func (s *fakeProxyServer) Stop() {
	s.mu.Lock()
	server := s.server
	s.server = nil
	s.mu.Unlock()
	if server != nil {
		server.Stop()
	}
	s.served.Wait()
}

// Restart starts serving again on the same address after Stop.
func (s *fakeProxyServer) Restart(t *testing.T) {
	t.Helper()
	listener, err := net.Listen("tcp", s.address)
	if err != nil {
		t.Fatalf("failed to listen on %s again: %v", s.address, err)
	}
	s.serve(t, listener)
}

// Proxy serves one frontend stream: one dial, then an echo.
func (s *fakeProxyServer) Proxy(stream proxyproto.ProxyService_ProxyServer) error {
	var connID int64
	for {
		pkt, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch pkt.Type {
		case proxyproto.PacketType_DIAL_REQ:
			req := pkt.GetDialRequest()
			rsp := &proxyproto.DialResponse{Random: req.Random}
			host, _, err := net.SplitHostPort(req.Address)
			if err != nil || !s.known[host] {
				// What apiserver-network-proxy's server answers.
				rsp.Error = "No agent available"
			} else {
				connID = s.nextID.Add(1)
				rsp.ConnectID = connID
			}
			if err := stream.Send(&proxyproto.Packet{
				Type:    proxyproto.PacketType_DIAL_RSP,
				Payload: &proxyproto.Packet_DialResponse{DialResponse: rsp},
			}); err != nil {
				return err
			}
			if rsp.Error != "" {
				return nil
			}
		case proxyproto.PacketType_DATA:
			if err := stream.Send(&proxyproto.Packet{
				Type:    proxyproto.PacketType_DATA,
				Payload: &proxyproto.Packet_Data{Data: &proxyproto.Data{ConnectID: connID, Data: pkt.GetData().Data}},
			}); err != nil {
				return err
			}
		case proxyproto.PacketType_CLOSE_REQ:
			return stream.Send(&proxyproto.Packet{
				Type:    proxyproto.PacketType_CLOSE_RSP,
				Payload: &proxyproto.Packet_CloseResponse{CloseResponse: &proxyproto.CloseResponse{ConnectID: connID}},
			})
		case proxyproto.PacketType_DIAL_CLS:
			return nil
		}
	}
}
