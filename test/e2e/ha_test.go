package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"open-cluster-management.io/cluster-proxy/test/localenv"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// proxyServerSelector selects the proxy-server pods.
const proxyServerSelector = "proxy.open-cluster-management.io/component-name=proxy-server"

// hostsPerAgent is how many host identifiers each proxy-agent registers
// (cluster, cluster.namespace, the service-proxy host): each is one ready
// backend on every proxy-server the agent holds.
const hostsPerAgent = 3

// readyBackends scrapes konnectivity_network_proxy_server_ready_backend_connections
// from a proxy-server pod's health port, from inside the hub's network.
func readyBackends(ctx context.Context, pod corev1.Pod) (int, error) {
	httpClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return netns.DialContext(ctx, env.Clusters[localenv.HubName].Netns, addr)
		},
	}}
	defer httpClient.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(pod.Status.PodIP, "8092")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "konnectivity_network_proxy_server_ready_backend_connections "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0, fmt.Errorf("pod %s exports no ready-backend gauge", pod.Name)
}

// setReplicas sets the ManagedProxyConfiguration's proxy-server replicas.
func setReplicas(ctx context.Context, n int) {
	GinkgoHelper()
	patch := fmt.Sprintf(`{"spec":{"proxyServer":{"replicas":%d}}}`, n)
	_, err := hubProxy.ProxyV1alpha1().ManagedProxyConfigurations().Patch(ctx, localenv.MPCName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// serverPods are the running proxy-server pods in namespace.
func serverPods(ctx context.Context, namespace string) []corev1.Pod {
	GinkgoHelper()
	pods, err := hubKube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: proxyServerSelector})
	Expect(err).NotTo(HaveOccurred())
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			running = append(running, p)
		}
	}
	return running
}

// everyAgentOnEveryServer waits until n proxy-servers run in namespace with
// --server-count=n and each holds a stream from both clusters' agents.
func everyAgentOnEveryServer(ctx context.Context, namespace string, n int) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		d, err := hubKube.AppsV1().Deployments(namespace).Get(ctx, "cluster-proxy", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Status.ObservedGeneration).To(Equal(d.Generation))
		g.Expect(d.Status.UpdatedReplicas).To(BeNumerically("==", n))
		g.Expect(d.Status.ReadyReplicas).To(BeNumerically("==", n))
		g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement(fmt.Sprintf("--server-count=%d", n)))
		pods := serverPods(ctx, namespace)
		g.Expect(pods).To(HaveLen(n))
		for _, p := range pods {
			backends, err := readyBackends(ctx, p)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(backends).To(Equal(hostsPerAgent*len(localenv.ManagedClusters)), "agents on %s", p.Name)
		}
	}).WithContext(ctx).WithTimeout(4*time.Minute).WithPolling(2*time.Second).Should(Succeed(), "%d proxy-servers, each holding every agent", n)
}

// backToOneServer scales the proxy-servers back to the one the local
// environment runs and waits until both clusters' tunnels work.
func backToOneServer(ctx context.Context, namespace string) {
	GinkgoHelper()
	setReplicas(ctx, 1)
	everyAgentOnEveryServer(ctx, namespace, 1)
	Expect(localenv.WaitTunnels(ctx, env, GinkgoWriter)).To(Succeed())
}

var _ = Describe("Proxy-server HA on the local environment", Ordered, Label("ha"), func() {
	var namespace string

	BeforeAll(func(ctx SpecContext) {
		namespace = proxyServerNamespace(ctx)
		DeferCleanup(func(ctx SpecContext) {
			backToOneServer(ctx, namespace)
			// The user-server's pooled tunnel may still point at a
			// proxy-server this spec scaled away: its next dial fails, the
			// Dialer retries on a new connection, and for a few seconds the
			// name can still resolve to the gone pod (Go re-reads
			// /etc/hosts at most every 5 s). The specs after this one find
			// the user-server path working again, as a user would after a
			// scale-down settles.
			Eventually(func(g Gomega) {
				for _, c := range localenv.ManagedClusters {
					_, errOut, err := viaUserServer(ctx, c, "get", "namespace", "default", "-o", "name")
					g.Expect(err).NotTo(HaveOccurred(), "%s through the user-server: %s", c, errOut)
				}
			}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		})
	})

	It("keeps tunnelled requests succeeding (at most one retry) while each proxy-server is killed in turn, and has every agent hold a fourth server it scales to", func(ctx SpecContext) {
		By("running three proxy-servers, each holding the agents of both clusters")
		setReplicas(ctx, 3)
		everyAgentOnEveryServer(ctx, namespace, 3)

		By("sending a steady stream of tunnelled requests to both clusters, through four pooled Dialers (the hub's Service spreads their connections over the three servers)")
		type target struct {
			name string
			get  func(context.Context) error
		}
		var targets []target
		for i := range 4 {
			d := hubDialer(ctx)
			for _, c := range localenv.ManagedClusters {
				cs := throughTunnel(d, c)
				get := func(ctx context.Context) error {
					_, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
					return err
				}
				Expect(get(ctx)).To(Succeed(), "dialer %d to %s", i, c) // connects it, one after the other
				targets = append(targets, target{fmt.Sprintf("dialer %d to %s", i, c), get})
			}
		}
		var requests, retried atomic.Int64
		var failuresMu sync.Mutex
		var failures []string
		streamCtx, stopStream := context.WithCancel(ctx)
		var stream sync.WaitGroup
		for _, t := range targets {
			stream.Go(func() {
				for streamCtx.Err() == nil {
					reqCtx, cancel := context.WithTimeout(streamCtx, 10*time.Second)
					err := t.get(reqCtx)
					if err != nil && streamCtx.Err() == nil {
						retried.Add(1)
						err = t.get(reqCtx)
					}
					cancel()
					if streamCtx.Err() != nil {
						return
					}
					requests.Add(1)
					if err != nil {
						failuresMu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %v", t.name, err))
						failuresMu.Unlock()
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
		stopAndCheck := func(step string) {
			// Not checked: that a request needed its retry; client-go
			// retries a GET whose connection was reset, and the Dialer a
			// dial whose tunnel broke, so a kill rarely reaches this loop.
			GinkgoHelper()
			stopStream()
			stream.Wait()
			failuresMu.Lock()
			defer failuresMu.Unlock()
			GinkgoWriter.Printf("%s: %d requests, %d retried once, %d failed twice\n", step, requests.Load(), retried.Load(), len(failures))
			Expect(failures).To(BeEmpty(), "requests that failed even after one retry")
			Expect(requests.Load()).To(BeNumerically(">", 20), "the stream ran")
		}
		DeferCleanup(func() { stopStream(); stream.Wait() })

		// Each server is killed in turn (SIGKILL, as a node failure or the
		// OOM killer would), so every Dialer's connection is cut once,
		// whichever server it landed on. The kubelet restarts the container
		// (a new server ID) and the agents hold all three again before the
		// next kill.
		for _, victim := range serverPods(ctx, namespace) {
			By("killing proxy-server " + victim.Name)
			var pid int
			for _, s := range victim.Status.ContainerStatuses {
				if s.Name == "proxy-server" && s.State.Running != nil {
					var err error
					pid, err = strconv.Atoi(strings.TrimPrefix(s.ContainerID, "local://"))
					Expect(err).NotTo(HaveOccurred())
				}
			}
			Expect(pid).NotTo(BeZero())
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			Expect(err).NotTo(HaveOccurred())
			Expect(exe).To(HaveSuffix("/proxy-server"))
			Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
			Eventually(func(g Gomega) {
				p, err := hubKube.CoreV1().Pods(namespace).Get(ctx, victim.Name, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(p.Status.ContainerStatuses).NotTo(BeEmpty())
				g.Expect(p.Status.ContainerStatuses[0].RestartCount).To(BeNumerically(">", victim.Status.ContainerStatuses[0].RestartCount))
			}).WithContext(ctx).WithTimeout(2*time.Minute).Should(Succeed(), "the kubelet restarted %s", victim.Name)
			everyAgentOnEveryServer(ctx, namespace, 3)
		}
		time.Sleep(2 * time.Second)
		stopAndCheck("kill")

		By("scaling to four: the Deployment rolls onto --server-count=4 and every agent holds the new server too")
		setReplicas(ctx, 4)
		everyAgentOnEveryServer(ctx, namespace, 4)
		Expect(localenv.WaitTunnels(ctx, env, GinkgoWriter)).To(Succeed())
	})
})
