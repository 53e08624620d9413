package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/framework"
	"open-cluster-management.io/cluster-proxy/test/localenv"
	"open-cluster-management.io/cluster-proxy/test/localenv/workload"
)

// goEnv names the Go command the examples are built with (default: go on
// $PATH).
const goEnv = "GO"

// runExample runs the example program name of dir with args and returns
// its standard output and standard error.
func runExample(ctx context.Context, dir, name string, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(dir, name), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

var _ = Describe("The example programs on the local environment", Ordered, Label("examples"), func() {
	// bin holds the examples, built from examples/ for this run.
	var bin string

	BeforeAll(func(ctx SpecContext) {
		root, err := framework.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		goCmd := os.Getenv(goEnv)
		if goCmd == "" {
			goCmd = "go"
		}
		bin = GinkgoT().TempDir()
		build := exec.CommandContext(ctx, goCmd, "build", "-o", bin+string(filepath.Separator), "./examples/...")
		build.Dir = root
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "go build ./examples/...:\n%s", out)
	})

	It("test-client lists each cluster's namespaces through a stock single-use tunnel and through the pooled Dialer", func(ctx SpecContext) {
		By("writing the proxy-server CA and the proxy-client certificate from the hub's Secrets, as a user would")
		ns := proxyServerNamespace(ctx)
		files := GinkgoT().TempDir()
		caSecret, err := hubKube.CoreV1().Secrets(ns).Get(ctx, proxyv1alpha1.CASecretName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		clientSecret, err := hubKube.CoreV1().Secrets(ns).Get(ctx, "proxy-client", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		for name, data := range map[string][]byte{
			"ca.crt":  caSecret.Data[proxyv1alpha1.CASecretKey],
			"tls.crt": clientSecret.Data[corev1.TLSCertKey],
			"tls.key": clientSecret.Data[corev1.TLSPrivateKeyKey],
		} {
			Expect(data).NotTo(BeEmpty(), name)
			Expect(os.WriteFile(filepath.Join(files, name), data, 0o600)).To(Succeed())
		}
		mpc, err := hubProxy.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, localenv.MPCName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())

		By("creating on each managed cluster a namespace only it has, so the output shows which cluster answered")
		markers := map[string]string{}
		for _, c := range localenv.ManagedClusters {
			markers[c] = "example-" + c + "-" + rand.String(5)
			_, err := managed[c].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: markers[c]}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx SpecContext) {
				Expect(managed[c].CoreV1().Namespaces().Delete(ctx, markers[c], metav1.DeleteOptions{})).To(Succeed())
			})
		}

		for _, c := range localenv.ManagedClusters {
			By(c + ": both paths list its namespaces, its marker and not the other's")
			args := []string{
				"--proxy-server=" + net.JoinHostPort(localenv.HubUplinkIP, strconv.Itoa(localenv.FrontendPort)),
				"--proxy-server-name=" + client.ProxyServerName(mpc),
				"--ca-cert=" + filepath.Join(files, "ca.crt"),
				"--client-cert=" + filepath.Join(files, "tls.crt"),
				"--client-key=" + filepath.Join(files, "tls.key"),
				"--cluster=" + c,
				"--managed-kubeconfig=" + env.Clusters[c].Kubeconfig,
			}
			var lines []string
			// Eventually: a spec before may just have reinstalled the chart.
			Eventually(func(g Gomega) {
				out, errOut, err := runExample(ctx, bin, "test-client", args...)
				g.Expect(err).NotTo(HaveOccurred(), "stdout: %s\nstderr: %s", out, errOut)
				lines = strings.Split(strings.TrimSpace(out), "\n")
			}).WithContext(ctx).Should(Succeed())
			Expect(lines).To(HaveLen(3), "%q", lines)
			for i, path := range []string{"single-use tunnel (konnectivity-client)", "pooled Dialer (pkg/client)"} {
				Expect(lines[i]).To(HavePrefix(path+": "+c+" has "), "line %d", i)
				Expect(lines[i]).To(ContainSubstring(markers[c]))
				Expect(lines[i]).To(ContainSubstring(localenv.TestNamespace))
				for other, marker := range markers {
					if other != c {
						Expect(lines[i]).NotTo(ContainSubstring(marker), "%s answered for %s", other, c)
					}
				}
			}
			Expect(lines[2]).To(MatchRegexp(`^pooled Dialer \(pkg/client\): %s runs Kubernetes v\S+; \d+ dials went through 1 gRPC connection\(s\) to the proxy-server$`, c))
		}
	})

	It("access-exported-services reaches the allowlisted hello Service over HTTP and HTTPS, and is refused a port the list does not name", func(ctx SpecContext) {
		for _, c := range localenv.ManagedClusters {
			kubeconfig := "--kubeconfig=" + localenv.UserServerKubeconfig(env.StateDir, c)
			for _, s := range []struct {
				scheme string
				port   int
			}{{"http", localenv.HelloHTTPPort}, {"https", localenv.HelloHTTPSPort}} {
				By(fmt.Sprintf("%s: hello over %s", c, s.scheme))
				path := "/examples/" + c
				url := fmt.Sprintf("%s/%s/api/v1/namespaces/%s/services/%s:%s:%d/proxy-service%s",
					localenv.UserServerURL(), c, localenv.TestNamespace, s.scheme, localenv.HelloService, s.port, path)
				// Eventually: a spec before may just have restored the list.
				Eventually(func(g Gomega) {
					out, errOut, err := runExample(ctx, bin, "access-exported-services", kubeconfig,
						"--scheme="+s.scheme, "--port="+strconv.Itoa(s.port), "--path="+path)
					g.Expect(err).NotTo(HaveOccurred(), "stdout: %s\nstderr: %s", out, errOut)
					g.Expect(out).To(Equal("GET " + url + "\n200 OK\n" + workload.Greeting(c, s.scheme, http.MethodGet, path)))
				}).WithContext(ctx).Should(Succeed())
			}

			By(c + ": HTTPS on the HTTP port is not in the list: 403, naming the service")
			out, errOut, err := runExample(ctx, bin, "access-exported-services", kubeconfig,
				"--scheme=https", "--port="+strconv.Itoa(localenv.HelloHTTPPort))
			Expect(err).To(HaveOccurred(), "stdout: %s", out)
			Expect(out).To(BeEmpty())
			Expect(errOut).To(ContainSubstring("403 Forbidden"))
			Expect(errOut).To(ContainSubstring(fmt.Sprintf("service %s/%s (https, port %d) is not exposed",
				localenv.TestNamespace, localenv.HelloService, localenv.HelloHTTPPort)))
		}
	})

	It("access-prometheus queries each cluster's Prometheus API stand-in with client_golang through the user-server", func(ctx SpecContext) {
		// The line a sample of the request counter prints as, with its value.
		requests := regexp.MustCompile(`^` + workload.PrometheusRequestsMetric + `\{.*\} => (\d+) @\[`)
		for _, c := range localenv.ManagedClusters {
			kubeconfig := "--kubeconfig=" + localenv.UserServerKubeconfig(env.StateDir, c)
			By(c + ": up, labelled with the cluster that answered")
			want := fmt.Sprintf(`%s="%s", instance="%s", job="%s"}`, workload.PrometheusClusterLabel, c, workload.PrometheusInstance(localenv.PrometheusPort), workload.PrometheusJob)
			Eventually(func(g Gomega) {
				out, errOut, err := runExample(ctx, bin, "access-prometheus", kubeconfig)
				g.Expect(err).NotTo(HaveOccurred(), "stdout: %s\nstderr: %s", out, errOut)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				g.Expect(lines).To(HaveLen(2), "%q", lines)
				g.Expect(lines[0]).To(HavePrefix("query up at "))
				g.Expect(lines[1]).To(HavePrefix("up{" + want + " => 1 @["))
			}).WithContext(ctx).Should(Succeed())

			By(c + ": the stand-in's own request counter, which the queries above raised, scraped")
			Eventually(func(g Gomega) {
				out, errOut, err := runExample(ctx, bin, "access-prometheus", kubeconfig,
					`--query=`+workload.PrometheusRequestsMetric+`{handler="/api/v1/query",code="200"}`)
				g.Expect(err).NotTo(HaveOccurred(), "stdout: %s\nstderr: %s", out, errOut)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				g.Expect(lines).To(HaveLen(2), "%q", lines)
				g.Expect(lines[1]).To(ContainSubstring(`cluster="` + c + `"`))
				m := requests.FindStringSubmatch(lines[1])
				g.Expect(m).NotTo(BeNil(), "%q", lines[1])
				g.Expect(strconv.Atoi(m[1])).To(BeNumerically(">=", 1))
			}).WithContext(ctx).Should(Succeed())
		}
	})
})
