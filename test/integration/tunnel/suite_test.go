// Package tunnel_test drives the tunnel end to end with real processes on
// loopback: our proxy-server and proxy-agent binaries (and
// apiserver-network-proxy's stock ones, for interoperability), real mutual
// TLS, a TCP echo backend and a real kube-apiserver, reached through the
// public client library pkg/client.
package tunnel_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/pkg/generated/clientset/versioned"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// cluster is the managed cluster whose agent the specs run.
	cluster = "cluster1"
	// agentNamespace is where the addon installs the agent on a managed
	// cluster; the agent registers host=<cluster>.<agentNamespace> too.
	agentNamespace = "open-cluster-management-cluster-proxy"
)

// binaries are the programs under test, built once per suite.
var binaries struct {
	proxyServer, proxyAgent, anpServer, anpAgent string
}

var (
	// apiServer plays both the hub (it holds the MPC and the certificate
	// Secrets the client library reads) and the managed cluster whose
	// kube-apiserver the agent reaches.
	apiServer *framework.APIServer
	// workDir holds certificates and process logs.
	workDir string
	pki     *framework.TunnelPKI
	// proxyTLS is the client TLS configuration, read by the library from
	// the Secrets on the hub.
	proxyTLS *tls.Config
	echo     *echoServer
)

func TestTunnel(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "tunnel")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	var group errgroup.Group
	build := func(dst *string, pkg, name string) {
		group.Go(func() error {
			path, err := framework.BuildBinary(pkg, name)
			*dst = path
			return err
		})
	}
	build(&binaries.proxyServer, "./cmd/proxy-server", "proxy-server")
	build(&binaries.proxyAgent, "./cmd/proxy-agent", "proxy-agent")
	build(&binaries.anpServer, "sigs.k8s.io/apiserver-network-proxy/cmd/server", "anp-proxy-server")
	build(&binaries.anpAgent, "sigs.k8s.io/apiserver-network-proxy/cmd/agent", "anp-proxy-agent")
	group.Go(func() error {
		var err error
		apiServer, err = framework.StartAPIServer()
		return err
	})
	Expect(group.Wait()).To(Succeed())

	var err error
	workDir, err = os.MkdirTemp("", "tunnel-test-")
	Expect(err).NotTo(HaveOccurred())
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: proxyv1alpha1.DefaultName},
		Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
			ProxyServer: proxyv1alpha1.ManagedProxyConfigurationProxyServer{Image: "proxy-server:test"},
			ProxyAgent:  proxyv1alpha1.ManagedProxyConfigurationProxyAgent{Image: "proxy-agent:test"},
		},
	}
	proxyClient, err := versioned.NewForConfig(apiServer.Config)
	Expect(err).NotTo(HaveOccurred())
	// Created, so the server applies the API defaults (namespace, Service
	// and Secret names) the library then reads.
	mpc, err = proxyClient.ProxyV1alpha1().ManagedProxyConfigurations().Create(ctx, mpc, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())

	// The proxy-server certificate carries the names the addon-manager
	// gives it; the library verifies <service>.<namespace>.
	serverName := client.ProxyServerName(mpc)
	pki, err = framework.NewTunnelPKI(workDir, serverName, serverName+".svc", "localhost", "127.0.0.1")
	Expect(err).NotTo(HaveOccurred())
	writeHubSecrets(ctx, mpc)
	proxyTLS, err = client.TLSConfigForHub(ctx, apiServer.Config, mpc.Name)
	Expect(err).NotTo(HaveOccurred())
	Expect(proxyTLS.ServerName).To(Equal("proxy-entrypoint.open-cluster-management-cluster-proxy"))

	echo, err = startEchoServer()
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if echo != nil {
		echo.Close()
	}
	if apiServer != nil {
		Expect(apiServer.Stop()).To(Succeed())
	}
	for _, bin := range []string{binaries.proxyServer, binaries.proxyAgent, binaries.anpServer, binaries.anpAgent} {
		if bin != "" {
			Expect(os.RemoveAll(filepath.Dir(bin))).To(Succeed())
		}
	}
	if workDir != "" {
		Expect(os.RemoveAll(workDir)).To(Succeed())
	}
})

// writeHubSecrets writes the Secrets the addon-manager would: the CA and
// the proxy-client certificate, in the proxy-server namespace of mpc.
func writeHubSecrets(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration) {
	kubeClient, err := kubernetes.NewForConfig(apiServer.Config)
	Expect(err).NotTo(HaveOccurred())
	ns := mpc.Spec.ProxyServer.Namespace
	_, err = kubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = kubeClient.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: proxyv1alpha1.CASecretName},
		Data:       map[string][]byte{proxyv1alpha1.CASecretKey: pki.CA.CertPEM},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = kubeClient.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: mpc.Spec.Authentication.Dump.Secrets.SigningProxyClientSecretName},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: pki.ProxyClientCert, corev1.TLSPrivateKeyKey: pki.ProxyClientKey},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}
