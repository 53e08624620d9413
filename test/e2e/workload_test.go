package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"open-cluster-management.io/cluster-proxy/test/localenv"
	"open-cluster-management.io/cluster-proxy/test/localenv/workload"
)

// viaUserServer runs kubectl against cluster through the user-server, as
// the viewer, in the test workload's namespace.
func viaUserServer(ctx context.Context, cluster string, args ...string) (string, string, error) {
	return kubectl(ctx, append([]string{"--kubeconfig=" + localenv.UserServerKubeconfig(env.StateDir, cluster), "-n", localenv.TestNamespace}, args...)...)
}

// startKubectl starts a long-running kubectl through the user-server and
// returns its stdout, line by line; the command is killed at cleanup.
func startKubectl(ctx context.Context, cluster string, args ...string) <-chan string {
	GinkgoHelper()
	cmdCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(cmdCtx, "kubectl", append([]string{"--kubeconfig=" + localenv.UserServerKubeconfig(env.StateDir, cluster), "-n", localenv.TestNamespace}, args...)...)
	cmd.Stderr = GinkgoWriter
	stdout, err := cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	return lines
}

var _ = Describe("The test workload through the user-server", Ordered, Label("user-server"), func() {
	var viewerToken string

	BeforeAll(func(ctx SpecContext) { viewerToken = newViewerToken(ctx) })

	It("runs kubectl logs, exec, get --watch and port-forward on every managed cluster", func(ctx SpecContext) {
		for _, c := range localenv.ManagedClusters {
			By(c + ": kubectl logs")
			out, errOut, err := viaUserServer(ctx, c, "logs", localenv.LoggerPod, "--tail=2")
			Expect(err).NotTo(HaveOccurred(), "stderr: %s", errOut)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			Expect(lines).To(HaveLen(2))
			for _, l := range lines {
				Expect(l).To(HavePrefix(localenv.LoggerPrefix(c) + " line "))
			}

			By(c + ": kubectl exec, with stdout, stdin and the exit code")
			out, errOut, err = viaUserServer(ctx, c, "exec", localenv.ShellPod, "--", "echo", "hello", "from", c)
			Expect(err).NotTo(HaveOccurred(), "stderr: %s", errOut)
			Expect(out).To(Equal("hello from " + c + "\n"))
			out, errOut, err = viaUserServer(ctx, c, "exec", localenv.ShellPod, "--", "hostname")
			Expect(err).NotTo(HaveOccurred(), "stderr: %s", errOut)
			Expect(out).To(Equal(localenv.ShellPod+"\n"), "the command ran in the pod (its UTS namespace)")
			cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig="+localenv.UserServerKubeconfig(env.StateDir, c), "-n", localenv.TestNamespace,
				"exec", "-i", localenv.ShellPod, "--", "cat")
			cmd.Stdin = strings.NewReader("through stdin\n")
			catOut, err := cmd.Output()
			Expect(err).NotTo(HaveOccurred())
			Expect(string(catOut)).To(Equal("through stdin\n"))
			_, errOut, err = viaUserServer(ctx, c, "exec", localenv.ShellPod, "--", "rm", "-rf", "/")
			var exitErr *exec.ExitError
			Expect(err).To(BeAssignableToTypeOf(exitErr))
			Expect(errOut).To(ContainSubstring("rm: command not found"), "only the image's programs run")
			Expect(errOut).To(ContainSubstring("exit code 127"))

			By(c + ": kubectl get --watch sees a ConfigMap created afterwards")
			name := "watched-" + rand.String(5)
			watched := startKubectl(ctx, c, "get", "configmaps", "--watch", "-o", "name")
			Eventually(watched).WithTimeout(30*time.Second).Should(Receive(Equal("configmap/kube-root-ca.crt")), "the watch lists first")
			_, err = managed[c].CoreV1().ConfigMaps(localenv.TestNamespace).Create(ctx,
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx SpecContext) {
				Expect(managed[c].CoreV1().ConfigMaps(localenv.TestNamespace).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
			})
			Eventually(watched).WithTimeout(30 * time.Second).Should(Receive(Equal("configmap/" + name)))

			By(c + ": kubectl port-forward to the hello pod")
			pods, err := managed[c].CoreV1().Pods(localenv.TestNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + localenv.HelloService})
			Expect(err).NotTo(HaveOccurred())
			Expect(pods.Items).NotTo(BeEmpty())
			forwarding := startKubectl(ctx, c, "port-forward", "--address=127.0.0.1", "pod/"+pods.Items[0].Name, fmt.Sprintf(":%d", localenv.HelloHTTPPort))
			var line string
			Eventually(forwarding).WithTimeout(30 * time.Second).Should(Receive(&line))
			m := regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> `).FindStringSubmatch(line)
			Expect(m).NotTo(BeNil(), "kubectl said %q", line)
			for i := range 3 {
				path := fmt.Sprintf("/forwarded/%d", i)
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+m[1]+path, nil)
				Expect(err).NotTo(HaveOccurred())
				resp, err := http.DefaultClient.Do(req)
				Expect(err).NotTo(HaveOccurred())
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				Expect(err).NotTo(HaveOccurred())
				Expect(string(body)).To(Equal(workload.Greeting(c, "http", http.MethodGet, path)))
			}
		}
	})

	It("forwards to the exposed hello Service over HTTP and HTTPS, answered by the cluster the path names", func(ctx SpecContext) {
		for _, c := range localenv.ManagedClusters {
			for proto, port := range map[string]int{"http": localenv.HelloHTTPPort, "https": localenv.HelloHTTPSPort} {
				path := fmt.Sprintf("/api/v1/namespaces/%s/services/%s:%s:%d/proxy-service/greet", localenv.TestNamespace, proto, localenv.HelloService, port)
				// Eventually: a spec before may just have restored the list.
				Eventually(func(g Gomega) {
					code, body := userServerGet(ctx, "/"+c+path, viewerToken)
					g.Expect(code).To(Equal(http.StatusOK), "%s %s: %s", c, proto, body)
					g.Expect(body).To(Equal(workload.Greeting(c, proto, http.MethodGet, "/greet")))
				}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
			}
			By(c + ": a port the list does not name is refused, naming the service")
			code, body := userServerGet(ctx, fmt.Sprintf("/%s/api/v1/namespaces/%s/services/https:%s:%d/proxy-service/", c, localenv.TestNamespace, localenv.HelloService, localenv.HelloHTTPPort), viewerToken)
			Expect(code).To(Equal(http.StatusForbidden))
			Expect(statusMessage(body)).To(ContainSubstring(fmt.Sprintf("service %s/%s (https, port %d) is not exposed", localenv.TestNamespace, localenv.HelloService, localenv.HelloHTTPPort)))
		}
	})

	It("drops Impersonate-* headers a hub user injects: it cannot escalate", func(ctx SpecContext) {
		out, errOut, err := viaUserServer(ctx, "cluster1", "--as=system:admin", "--as-group=system:masters", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		Expect(err).NotTo(HaveOccurred(), "stderr: %s", errOut)
		Expect(out).To(Equal(localenv.ViewerUser), "the request ran as the viewer, not as the injected user")
		_, errOut, err = viaUserServer(ctx, "cluster1", "--as=system:admin", "--as-group=system:masters", "get", "secrets", "-n", "kube-system")
		Expect(err).To(HaveOccurred())
		Expect(errOut).To(ContainSubstring(`User "` + localenv.ViewerUser + `" cannot list resource "secrets"`))
	})

	It("answers 200 concurrent GETs across both clusters, each from the cluster it names", func(ctx SpecContext) {
		clients := map[string]kubernetes.Interface{}
		want := map[string]string{} // cluster -> UID of its default namespace
		for _, c := range localenv.ManagedClusters {
			cfg, err := clientcmd.BuildConfigFromFlags("", localenv.UserServerKubeconfig(env.StateDir, c))
			Expect(err).NotTo(HaveOccurred())
			cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
			clients[c] = kubernetes.NewForConfigOrDie(cfg)
			ns, err := managed[c].CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			want[c] = string(ns.UID)
		}
		Expect(want["cluster1"]).NotTo(Equal(want["cluster2"]))
		const requests = 200
		var wg sync.WaitGroup
		errs := make(chan error, requests)
		for i := range requests {
			c := localenv.ManagedClusters[i%len(localenv.ManagedClusters)]
			wg.Go(func() {
				ns, err := clients[c].CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
				switch {
				case err != nil:
					errs <- fmt.Errorf("request %d to %s: %w", i, c, err)
				case string(ns.UID) != want[c]:
					errs <- fmt.Errorf("request %d to %s was answered by another cluster (namespace UID %s)", i, c, ns.UID)
				}
			})
		}
		wg.Wait()
		close(errs)
		var failed []string
		for err := range errs {
			failed = append(failed, err.Error())
		}
		Expect(failed).To(BeEmpty())
	})
})
