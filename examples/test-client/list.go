package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"

	"open-cluster-management.io/cluster-proxy/pkg/client"
)

// Run lists the namespaces of o.Cluster twice, through a stock single-use
// konnectivity tunnel and through pkg/client's pooled Dialer, and writes
// what each saw to out.
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	managed, err := clientcmd.BuildConfigFromFlags("", o.ManagedKubeconfig)
	if err != nil {
		return fmt.Errorf("failed to load --managed-kubeconfig: %w", err)
	}
	caPEM, err := os.ReadFile(o.CAFile)
	if err != nil {
		return fmt.Errorf("failed to read --ca-cert: %w", err)
	}
	certPEM, err := os.ReadFile(o.CertFile)
	if err != nil {
		return fmt.Errorf("failed to read --client-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(o.KeyFile)
	if err != nil {
		return fmt.Errorf("failed to read --client-key: %w", err)
	}

	names, err := listWithSingleUseTunnel(ctx, o, managed, caPEM, certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("single-use tunnel: %w", err)
	}
	report(out, "single-use tunnel (konnectivity-client)", o.Cluster, names)

	names, version, stats, err := listWithDialer(ctx, o, managed, caPEM, certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("pooled Dialer: %w", err)
	}
	report(out, "pooled Dialer (pkg/client)", o.Cluster, names)
	_, err = fmt.Fprintf(out, "pooled Dialer (pkg/client): %s runs Kubernetes %s; %d dials went through %d gRPC connection(s) to the proxy-server\n",
		o.Cluster, version, stats.Dials, stats.Tunnels)
	return err
}

// report writes one line naming the path, the cluster and its namespaces.
func report(out io.Writer, path, cluster string, names []string) {
	_, _ = fmt.Fprintf(out, "%s: %s has %d namespaces: %s\n", path, cluster, len(names), strings.Join(names, ", "))
}

// listWithSingleUseTunnel is the pattern of the stock konnectivity client:
// one gRPC connection to the proxy-server, good for a single dial, and a
// client-go configuration whose Host is the cluster name and whose Dial is
// the tunnel's.
func listWithSingleUseTunnel(ctx context.Context, o *Options, managed *rest.Config, caPEM, certPEM, keyPEM []byte) ([]string, error) {
	// Mutual TLS with the proxy-server: its CA, the proxy-client
	// certificate, and the name its certificate carries.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("--ca-cert holds no PEM certificate")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to load the proxy client certificate: %w", err)
	}
	tlsConfig := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		ServerName:   o.ProxyServerName,
	}

	// The tunnel lives as long as tunnelCtx, or until its one connection
	// is closed.
	tunnelCtx, closeTunnel := context.WithCancel(ctx)
	defer closeTunnel()
	tunnel, err := konnectivity.CreateSingleUseGrpcTunnel(tunnelCtx, o.ProxyServer,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		return nil, fmt.Errorf("failed to create the tunnel to %s: %w", o.ProxyServer, err)
	}

	cfg := rest.CopyConfig(managed)
	// The proxy-agent of the cluster registered its name: dialling
	// "<cluster>:443" reaches that cluster's kube-apiserver.
	cfg.Host = o.Cluster
	cfg.Dial = tunnel.DialContext
	// The kube-apiserver's certificate does not name the cluster; verify
	// it against a name it does carry instead of skipping verification.
	cfg.ServerName = o.ManagedServerName
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to build the HTTP client: %w", err)
	}
	kube, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("failed to build the client: %w", err)
	}
	names, err := namespaceNames(ctx, kube)
	// Closing the tunnel's only connection ends the tunnel.
	httpClient.CloseIdleConnections()
	select {
	case <-tunnel.Done():
	case <-time.After(5 * time.Second):
	}
	return names, err
}

// listWithDialer does the same with pkg/client: one Dialer holds one gRPC
// connection to the proxy-server for every dial, to any cluster, and
// rebuilds it when the proxy-server goes away. A second client for the
// same cluster dials again on that connection.
func listWithDialer(ctx context.Context, o *Options, managed *rest.Config, caPEM, certPEM, keyPEM []byte) ([]string, string, client.DialerStats, error) {
	tlsConfig, err := client.NewTLSConfig(caPEM, certPEM, keyPEM, o.ProxyServerName)
	if err != nil {
		return nil, "", client.DialerStats{}, err
	}
	dialer, err := client.NewDialer(o.ProxyServer, tlsConfig)
	if err != nil {
		return nil, "", client.DialerStats{}, err
	}
	defer func() { _ = dialer.Close() }()

	cfg, err := client.RESTConfigForCluster(dialer, managed, o.Cluster, client.ClusterOptions{ServerName: o.ManagedServerName})
	if err != nil {
		return nil, "", client.DialerStats{}, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", client.DialerStats{}, fmt.Errorf("failed to build the client: %w", err)
	}
	names, err := namespaceNames(ctx, kube)
	if err != nil {
		// A *client.NoAgentError when the cluster's agent is not connected.
		return nil, "", client.DialerStats{}, err
	}
	discovery, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", client.DialerStats{}, fmt.Errorf("failed to build the client: %w", err)
	}
	version, err := discovery.Discovery().ServerVersion()
	if err != nil {
		return nil, "", client.DialerStats{}, fmt.Errorf("failed to get the server version: %w", err)
	}
	return names, version.GitVersion, dialer.Stats(), nil
}

// namespaceNames lists the names of the namespaces kube sees.
func namespaceNames(ctx context.Context, kube kubernetes.Interface) ([]string, error) {
	list, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to list namespaces: %w", err)
	}
	names := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	return names, nil
}
