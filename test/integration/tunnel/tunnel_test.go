package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
)

var _ = Describe("The tunnel through our proxy-server and proxy-agent", Label("tunnel"), Ordered, func() {
	var pair *tunnel

	BeforeAll(func() {
		pair = startTunnel("ours", binaries.proxyServer, binaries.proxyAgent)
	})

	It("reaches a TCP backend under every host name the agent registers", func(ctx SpecContext) {
		snapshot := goleak.IgnoreCurrent()
		dialer, err := client.NewDialer(fmt.Sprintf("127.0.0.1:%d", pair.serverPorts.Server), proxyTLS)
		Expect(err).NotTo(HaveOccurred())

		for _, host := range []string{cluster, cluster + "." + agentNamespace, proxyv1alpha1.ServiceProxyHost(cluster)} {
			Expect(echoThrough(ctx, dialer, host, "hello "+host)).To(Succeed())
		}

		Expect(dialer.Close()).To(Succeed())
		expectNoLeaks(snapshot)
	})

	It("lists the namespaces of a real kube-apiserver with a rest.Config from the library", func(ctx SpecContext) {
		snapshot := goleak.IgnoreCurrent()
		dialer, err := client.NewDialer(fmt.Sprintf("127.0.0.1:%d", pair.serverPorts.Server), proxyTLS)
		Expect(err).NotTo(HaveOccurred())

		apiURL, err := url.Parse(apiServer.Config.Host)
		Expect(err).NotTo(HaveOccurred())
		// Production dials <cluster>:443, the kubernetes Service of the
		// managed cluster; this kube-apiserver listens on a loopback port,
		// which the agent reaches as <cluster>:<port>. Its serving
		// certificate names localhost (not kubernetes.default.svc, as a real
		// one would), so that is the name to verify; apiServer.Config
		// carries its CA and the admin credentials of the "managed cluster".
		cfg, err := client.RESTConfigForCluster(dialer, apiServer.Config, cluster, client.ClusterOptions{
			Address:    net.JoinHostPort(cluster, apiURL.Port()),
			ServerName: "localhost",
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Host).To(Equal("https://" + net.JoinHostPort(cluster, apiURL.Port())))
		httpClient, err := rest.HTTPClientFor(cfg)
		Expect(err).NotTo(HaveOccurred())
		kubeClient, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
		Expect(err).NotTo(HaveOccurred())

		namespaces, err := kubeClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, ns := range namespaces.Items {
			names = append(names, ns.Name)
		}
		Expect(names).To(ContainElements("default", "kube-system", agentNamespace))
		Expect(dialer.Stats().Dials).To(BeNumerically(">=", 1), "the requests did not go through the tunnel")

		httpClient.CloseIdleConnections()
		Expect(dialer.Close()).To(Succeed())
		expectNoLeaks(snapshot)
	})

	It("fails fast with a NoAgentError naming a cluster that has no agent", func(ctx SpecContext) {
		snapshot := goleak.IgnoreCurrent()
		dialer, err := client.NewDialer(fmt.Sprintf("127.0.0.1:%d", pair.serverPorts.Server), proxyTLS)
		Expect(err).NotTo(HaveOccurred())

		start := time.Now()
		_, err = dialer.DialContext(ctx, "tcp", "cluster-without-agent:443")
		// A bound on a hang (konnectivity's backstop is 30 s), not a
		// performance assertion.
		Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second))
		var noAgent *client.NoAgentError
		Expect(errors.As(err, &noAgent)).To(BeTrue(), "error %v is not a *client.NoAgentError", err)
		Expect(noAgent.Cluster).To(Equal("cluster-without-agent"))
		Expect(err.Error()).To(ContainSubstring(`"cluster-without-agent"`))
		Expect(err.Error()).To(ContainSubstring("no cluster-proxy agent"))

		Expect(dialer.Close()).To(Succeed())
		expectNoLeaks(snapshot)
	})

	It("closes quietly: Close ends the connections still open with konnectivity's CLOSE, and nothing is logged", func(ctx SpecContext) {
		// konnectivity-client logs a cut stream ("stream read failure")
		// through klog: capture klog while the Dialer closes.
		var mu sync.Mutex
		var logged []string
		klog.SetLogger(funcr.New(func(prefix, args string) {
			mu.Lock()
			defer mu.Unlock()
			logged = append(logged, prefix+" "+args)
		}, funcr.Options{}))
		DeferCleanup(klog.ClearLogger)

		dialer, err := client.NewDialer(fmt.Sprintf("127.0.0.1:%d", pair.serverPorts.Server), proxyTLS)
		Expect(err).NotTo(HaveOccurred())
		var open []net.Conn
		for range 3 {
			conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(cluster, strconv.Itoa(echo.port)))
			Expect(err).NotTo(HaveOccurred())
			_, err = io.WriteString(conn, "ping")
			Expect(err).NotTo(HaveOccurred())
			got := make([]byte, 4)
			_, err = io.ReadFull(conn, got)
			Expect(err).NotTo(HaveOccurred())
			open = append(open, conn)
		}
		Expect(dialer.Stats().OpenConnections).To(Equal(3))

		Expect(dialer.Close()).To(Succeed())
		for _, conn := range open {
			_, err := conn.Read(make([]byte, 1))
			Expect(err).To(HaveOccurred(), "a connection outlived its Dialer")
		}
		// The tunnel's goroutines log as they wind down: give them a moment.
		Consistently(func() []string {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(logged)
		}).WithContext(ctx).WithTimeout(time.Second).Should(Not(ContainElement(ContainSubstring("stream read failure"))))
		Expect(dialer.Stats().OpenConnections).To(BeZero(), "Close closed the open connections")
	})

	It("shares one gRPC connection to the proxy-server across 50 dials", func(ctx SpecContext) {
		snapshot := goleak.IgnoreCurrent()
		var connections atomic.Int64
		dialer, err := client.NewDialer(fmt.Sprintf("127.0.0.1:%d", pair.serverPorts.Server), proxyTLS,
			client.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				connections.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			}))
		Expect(err).NotTo(HaveOccurred())

		for i := range 50 {
			Expect(echoThrough(ctx, dialer, cluster, fmt.Sprintf("dial %d", i))).To(Succeed())
		}
		Expect(connections.Load()).To(BeEquivalentTo(1), "TCP connections to the proxy-server")
		Expect(dialer.Stats()).To(Equal(client.DialerStats{Tunnels: 1, Dials: 50}))

		Expect(dialer.Close()).To(Succeed())
		expectNoLeaks(snapshot)
	})

	It("keeps working by itself after the proxy-server restarts", func(ctx SpecContext) {
		dialer := newDialer(pair.serverPorts.Server)
		Expect(echoThrough(ctx, dialer, cluster, "before the restart")).To(Succeed())
		held, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(cluster, strconv.Itoa(echo.port)))
		Expect(err).NotTo(HaveOccurred())

		pair.restartServer()

		// The connection held across the restart ends at once, without
		// waiting for a timeout.
		readErr := make(chan error, 1)
		go func() {
			_, err := held.Read(make([]byte, 1))
			readErr <- err
		}()
		Eventually(readErr).WithTimeout(5 * time.Second).Should(Receive(HaveOccurred()))
		_ = held.Close()

		// The agent reconnects with its own backoff (ANP's sync interval
		// and cap); the same Dialer serves again without help from the
		// caller.
		Eventually(func(ctx context.Context) error {
			return echoThrough(ctx, dialer, cluster, "after the restart")
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		Expect(dialer.Stats().OpenConnections).To(BeZero())
	})
})

var _ = Describe("Interoperability with apiserver-network-proxy's stock binaries", Label("tunnel"), func() {
	DescribeTable("a dial through the pair reaches the backend, and an unknown cluster fails fast",
		func(ctx SpecContext, name string, serverBinary, agentBinary func() string) {
			pair := startTunnel(name, serverBinary(), agentBinary())
			dialer := newDialer(pair.serverPorts.Server)

			Expect(echoThrough(ctx, dialer, cluster, "hello from "+name)).To(Succeed())
			_, err := dialer.DialContext(ctx, "tcp", "cluster-without-agent:443")
			var noAgent *client.NoAgentError
			Expect(errors.As(err, &noAgent)).To(BeTrue(), "error %v is not a *client.NoAgentError", err)
		},
		Entry("our proxy-server with ANP's proxy-agent", "ours-anp",
			func() string { return binaries.proxyServer }, func() string { return binaries.anpAgent }),
		Entry("ANP's proxy-server with our proxy-agent", "anp-ours",
			func() string { return binaries.anpServer }, func() string { return binaries.proxyAgent }),
	)
})
