package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/apiserver-network-proxy/proto/agent"
	"sigs.k8s.io/apiserver-network-proxy/proto/header"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// serverOptions parses args as the proxy-server command does.
func serverOptions(t *testing.T, args ...string) *ServerOptions {
	t.Helper()
	o := NewServerOptions()
	fs := pflag.NewFlagSet("proxy-server", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

// validServerArgs are the arguments the addon gives a proxy-server, for a
// new PKI and free ports.
func validServerArgs(t *testing.T) []string {
	t.Helper()
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := framework.FreeProxyServerPorts()
	if err != nil {
		t.Fatal(err)
	}
	return framework.ProxyServerArgs(pki, ports, "s1", 1)
}

func TestServerOptionsRefuseWhatOurServerDoesNotDo(t *testing.T) {
	valid := validServerArgs(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"the addon's arguments", nil, ""},
		{"http-connect", []string{"--mode=http-connect"}, "--mode=http-connect is not supported"},
		{"token authentication", []string{"--agent-namespace=kube-system"}, "--agent-namespace is not supported"},
		{"lease controller", []string{"--enable-lease-controller"}, "--enable-lease-controller is not supported"},
		{"transfer channels", []string{"--xfr-channel-size=20"}, "--xfr-channel-size is not supported"},
		{"unknown strategy", []string{"--proxy-strategies=nearest"}, `unknown strategy "nearest"`},
		{"no agent CA", []string{"--cluster-ca-cert="}, "--cluster-ca-cert is required"},
		{"insecure cipher", []string{"--cipher-suites=TLS_RSA_WITH_RC4_128_SHA"}, "--tls-min-version or --cipher-suites"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := serverOptions(t, append(append([]string{}, valid...), tt.args...)...).Validate()
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestServerOptionsHealthReportNeedsThePod(t *testing.T) {
	valid := validServerArgs(t)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
	}{
		{"no report", nil, nil, nil},
		{"the pod from the downward API", []string{"--health-report"},
			map[string]string{command.PodNameEnv: "proxy-1", "POD_NAMESPACE": "ns", command.PodUIDEnv: "uid"}, nil},
		{"no pod", []string{"--health-report"}, nil,
			[]string{"--health-report needs $POD_NAME", "--health-report needs $POD_NAMESPACE"}},
		{"no namespace", []string{"--health-report"}, map[string]string{command.PodNameEnv: "proxy-1"},
			[]string{"--health-report needs $POD_NAMESPACE"}},
		{"a kubeconfig for no report", []string{"--health-report-kubeconfig=/k"}, nil,
			[]string{"--health-report-kubeconfig is set without --health-report"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			for _, name := range []string{command.PodNameEnv, "POD_NAMESPACE", command.PodUIDEnv} {
				t.Setenv(name, tt.env[name])
			}
			o := serverOptions(t, append(append([]string{}, valid...), tt.args...)...)
			g.Expect(o.Complete()).To(Succeed())
			err := o.Validate()
			if len(tt.wantErr) == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			for _, want := range tt.wantErr {
				g.Expect(err).To(MatchError(ContainSubstring(want)))
			}
		})
	}
}

// runServer runs the proxy-server command's server on free loopback
// ports until the test ends.
func runServer(t *testing.T, pki *framework.TunnelPKI) framework.ProxyServerPorts {
	t.Helper()
	g := NewWithT(t)
	ports, err := framework.FreeProxyServerPorts()
	g.Expect(err).NotTo(HaveOccurred())
	o := serverOptions(t, framework.ProxyServerArgs(pki, ports, "s1", 1)...)
	g.Expect(o.Validate()).To(Succeed())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- RunServer(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the proxy-server stopped with %v", err)
		}
	})
	g.Eventually(func() error {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(ports.Health) + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}).WithTimeout(10 * time.Second).Should(Succeed())
	return ports
}

// handshake connects to port with cert and returns the server's leaf.
func handshake(pki *framework.TunnelPKI, port int, cert tls.Certificate) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	pool.AddCert(pki.CA.Cert)
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	// TLS 1.3 reports a refused client certificate on the first read.
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return nil, err
		}
	}
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestCertificatesKeepToTheirPort(t *testing.T) {
	g := NewWithT(t)
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	ports := runServer(t, pki)
	agentCertFile, agentKeyFile, err := pki.AgentCert("cluster1")
	g.Expect(err).NotTo(HaveOccurred())
	agentCert, err := tls.LoadX509KeyPair(agentCertFile, agentKeyFile)
	g.Expect(err).NotTo(HaveOccurred())
	clientCert, err := tls.X509KeyPair(pki.ProxyClientCert, pki.ProxyClientKey)
	g.Expect(err).NotTo(HaveOccurred())

	_, err = handshake(pki, ports.Server, clientCert)
	g.Expect(err).NotTo(HaveOccurred(), "a proxy-client certificate on the frontend")
	_, err = handshake(pki, ports.Server, agentCert)
	g.Expect(err).To(HaveOccurred(), "an agent certificate on the frontend")
	_, err = handshake(pki, ports.Agent, agentCert)
	g.Expect(err).NotTo(HaveOccurred(), "an agent certificate on the agent port")
	_, err = handshake(pki, ports.Agent, clientCert)
	g.Expect(err).To(HaveOccurred(), "a proxy-client certificate on the agent port")
}

func TestAgentRefusedForAnotherClustersIdentifiers(t *testing.T) {
	g := NewWithT(t)
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	ports := runServer(t, pki)
	certFile, keyFile, err := pki.AgentCert("cluster1")
	g.Expect(err).NotTo(HaveOccurred())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	g.Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(pki.CA.Cert)
	conn, err := grpc.NewClient(net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.Agent)), grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})))
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close() }()
	connect := func(identifiers string) error {
		ctx := metadata.AppendToOutgoingContext(t.Context(), header.AgentID, "a1", header.AgentIdentifiers, identifiers)
		stream, err := agent.NewAgentServiceClient(conn).Connect(ctx)
		if err != nil {
			return err
		}
		_, err = stream.Recv() // a refusal ends the stream with its status
		return err
	}
	err = connect("host=cluster2")
	g.Expect(err).To(MatchError(ContainSubstring("an agent of cluster cluster1 may not register identifier host=cluster2")))

	// Its own identifiers are accepted: the stream stays open.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	own := metadata.AppendToOutgoingContext(ctx, header.AgentID, "a1", header.AgentIdentifiers, "host=cluster1")
	stream, err := agent.NewAgentServiceClient(conn).Connect(own)
	g.Expect(err).NotTo(HaveOccurred())
	md, err := stream.Header()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(md.Get(header.ServerID)).To(Equal([]string{"s1"}))
	_, err = stream.Recv()
	// gRPC's own timer for the deadline may fire before the context's.
	g.Expect(status.Code(err)).To(Equal(codes.DeadlineExceeded), "the stream was open until the client gave up: %v", err)
}

func TestServingCertificateReloadsFromDisk(t *testing.T) {
	g := NewWithT(t)
	pki, err := framework.NewTunnelPKI(t.TempDir(), "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	ports := runServer(t, pki)
	clientCert, err := tls.X509KeyPair(pki.ProxyClientCert, pki.ProxyClientKey)
	g.Expect(err).NotTo(HaveOccurred())
	before, err := handshake(pki, ports.Server, clientCert)
	g.Expect(err).NotTo(HaveOccurred())

	// Renew the serving certificate in place, as a Secret update does.
	certPEM, keyPEM, err := pki.CA.Issue(certs.LeafSpec{CommonName: "proxy-server-renewed", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing}, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(pki.ProxyServerKeyFile, keyPEM, 0o600)).To(Succeed())
	g.Expect(os.WriteFile(pki.ProxyServerCertFile, certPEM, 0o600)).To(Succeed())
	g.Eventually(func() (string, error) {
		after, err := handshake(pki, ports.Server, clientCert)
		if err != nil {
			return "", err
		}
		return after.Subject.CommonName, nil
	}).WithTimeout(5 * time.Second).Should(Equal("proxy-server-renewed"))
	g.Expect(before.Subject.CommonName).To(Equal("proxy-server"))
}
