package addonagent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/addonagent"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// echoServer plays a proxy-server container's agent port: it echoes lines.
func echoServer() (port int, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, func() { _ = l.Close() }
}

// startRelay runs a relay to the proxy-server pods of namespace ns (their
// port targetPort) on a free loopback port until the spec ends; configure
// may change the relay before it starts.
func startRelay(ctx context.Context, ns string, targetPort int, configure ...func(*addonagent.Relay)) (*addonagent.Relay, net.Listener) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	relay := &addonagent.Relay{Hub: client, HubConfig: managed.Config, Namespace: ns, Listener: listener, TargetPort: targetPort}
	for _, c := range configure {
		c(relay)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	DeferCleanup(func() {
		stop()
		Eventually(done).WithTimeout(10 * time.Second).Should(Receive(BeNil()))
	})
	return relay, listener
}

var _ = Describe("The port-forward relay", Label("addonagent", "portforward"), func() {
	It("carries connections through the hub kube-apiserver's pod port-forwarding, trying another pod when one fails", func(ctx SpecContext) {
		const ns = "proxy-servers"
		_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		labels := map[string]string{proxyv1alpha1.LabelComponentName: proxyv1alpha1.ComponentProxyServer}

		kubelet, err := framework.StartKubelet(ctx, client, "node-a")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(kubelet.Stop)
		port, stopEcho := echoServer()
		DeferCleanup(stopEcho)
		Expect(kubelet.RunPod(ctx, client, ns, "proxy-server-good", labels)).To(Succeed())

		By("a second pod on a node whose kubelet cannot be reached")
		unreachable, err := framework.StartKubelet(ctx, client, "node-gone")
		Expect(err).NotTo(HaveOccurred())
		Expect(unreachable.RunPod(ctx, client, ns, "proxy-server-broken", labels)).To(Succeed())
		Expect(unreachable.Stop()).To(Succeed())

		By("a relay that tries the unreachable pod first for every connection")
		// The relay logs each failed attempt; those lines witness the retry.
		var (
			mu             sync.Mutex
			orders         [][]string
			brokenAttempts int
		)
		logger := funcr.New(func(_, args string) {
			mu.Lock()
			defer mu.Unlock()
			if strings.Contains(args, `"msg"="port-forward to proxy-server failed; trying another"`) &&
				strings.Contains(args, "proxy-server-broken") {
				brokenAttempts++
			}
		}, funcr.Options{})
		brokenFirst := func(pods []string) {
			if i := slices.Index(pods, "proxy-server-broken"); i > 0 {
				pods[0], pods[i] = pods[i], pods[0]
			}
			mu.Lock()
			defer mu.Unlock()
			orders = append(orders, slices.Clone(pods))
		}
		relay, listener := startRelay(klog.NewContext(ctx, logger), ns, port, func(r *addonagent.Relay) { r.Order = brokenFirst })
		Expect(relay.Ready(ctx)).To(MatchError(ContainSubstring("no connection forwarded")))

		By("ten concurrent connections, each echoed byte for byte after a failed first attempt")
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				conn, err := net.DialTimeout("tcp", listener.Addr().String(), 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer func() { _ = conn.Close() }()
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				msg := fmt.Sprintf("hello through the tunnel %d\n", i)
				if _, err := conn.Write([]byte(msg)); err != nil {
					errs <- err
					return
				}
				got, err := bufio.NewReader(conn).ReadString('\n')
				switch {
				case err != nil:
					errs <- fmt.Errorf("connection %d: failed to read the echo: %w", i, err)
				case got != msg:
					errs <- fmt.Errorf("connection %d: got %q, want %q", i, got, msg)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(relay.Ready(ctx)).To(Succeed())
		mu.Lock()
		defer mu.Unlock()
		Expect(orders).To(HaveLen(10))
		Expect(orders).To(HaveEach(Equal([]string{"proxy-server-broken", "proxy-server-good"})))
		Expect(brokenAttempts).To(Equal(10), "every connection first failed on the unreachable pod, then was retried")
	})
})
