package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/localenv"
)

// kubectl runs the kubectl CLI and returns its stdout, stderr and error.
func kubectl(ctx context.Context, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// userServerGet sends GET <user-server>/<path> with token and returns the
// status code and body.
func userServerGet(ctx context.Context, path, token string) (int, string) {
	GinkgoHelper()
	ca, err := hubKube.CoreV1().Secrets(proxyServerNamespace(ctx)).Get(ctx, proxyv1alpha1.CASecretName, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(ca.Data[proxyv1alpha1.CASecretKey])).To(BeTrue())
	httpClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}}
	defer httpClient.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, localenv.UserServerURL()+path, nil)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(body)
}

// newViewerToken returns an hour's token of the hub service account the
// local environment's user-server kubeconfigs act as.
func newViewerToken(ctx context.Context) string {
	GinkgoHelper()
	tr, err := hubKube.CoreV1().ServiceAccounts(localenv.ViewerNamespace).CreateToken(ctx, localenv.ViewerName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

// statusMessage decodes the message of a Kubernetes Status body.
func statusMessage(body string) string {
	var status metav1.Status
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		return body
	}
	return status.Message
}

var _ = Describe("The user-server on the local environment", Ordered, Label("user-server"), func() {
	var viewerToken string

	BeforeAll(func(ctx SpecContext) {
		viewerToken = newViewerToken(ctx)
		By("waiting for the user-server to be ready")
		Eventually(func(g Gomega) {
			d, err := hubKube.AppsV1().Deployments(proxyServerNamespace(ctx)).Get(ctx, localenv.UserServerServiceName, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Status.ReadyReplicas).To(BeNumerically(">=", 1))
		}).WithContext(ctx).Should(Succeed())
	})

	It("lists pods on every managed cluster with plain kubectl and the kubeconfig `cluster-proxy kubeconfig` wrote", func(ctx SpecContext) {
		for _, c := range localenv.ManagedClusters {
			direct, err := managed[c].CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			Eventually(func(g Gomega) {
				out, errOut, err := kubectl(ctx, "--kubeconfig="+localenv.UserServerKubeconfig(env.StateDir, c),
					"get", "pods", "-n", agentNamespace, "-o", "jsonpath={.items[*].metadata.name}")
				g.Expect(err).NotTo(HaveOccurred(), "stderr: %s", errOut)
				g.Expect(strings.Fields(out)).To(ConsistOf(podNames(direct.Items)))
			}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed(), "pods of %s through the user-server", c)
		}
		By("acting as the hub service account, impersonated with the cluster:hub: prefix")
		out, errOut, err := kubectl(ctx, "--kubeconfig="+localenv.UserServerKubeconfig(env.StateDir, "cluster2"), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		Expect(err).NotTo(HaveOccurred(), "stderr: %s", errOut)
		Expect(out).To(Equal(localenv.ViewerUser))
	})

	It("prints nothing but the result of a tunnelled kubectl command (bin/localenv kubectl)", func(ctx SpecContext) {
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(clusterProxyBin), "localenv"), "kubectl", "--state-dir="+env.StateDir,
			"--cluster=cluster1", "--", "get", "namespace", agentNamespace, "-o", "name")
		cmd.Stdout, cmd.Stderr = &out, &errOut
		Expect(cmd.Run()).To(Succeed(), "stderr: %s", errOut.String())
		Expect(out.String()).To(Equal("namespace/" + agentNamespace + "\n"))
		Expect(errOut.String()).To(BeEmpty())
	})

	It("refuses a garbage token with 401 and a hub user without RBAC on the cluster with 403", func(ctx SpecContext) {
		kubeconfig := localenv.UserServerKubeconfig(env.StateDir, "cluster1")
		_, errOut, err := kubectl(ctx, "--kubeconfig="+kubeconfig, "--token=garbage", "get", "pods", "-n", agentNamespace)
		Expect(err).To(HaveOccurred())
		Expect(errOut).To(ContainSubstring("Unauthorized"))

		const stranger = "cluster-proxy-e2e-stranger"
		_, err = hubKube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: stranger}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(hubKube.CoreV1().ServiceAccounts("default").Delete(ctx, stranger, metav1.DeleteOptions{})).To(Succeed())
		})
		tr, err := hubKube.CoreV1().ServiceAccounts("default").CreateToken(ctx, stranger, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, errOut, err = kubectl(ctx, "--kubeconfig="+kubeconfig, "--token="+tr.Status.Token, "get", "pods", "-n", agentNamespace)
		Expect(err).To(HaveOccurred())
		Expect(errOut).To(ContainSubstring(`User "cluster:hub:system:serviceaccount:default:` + stranger + `" cannot list resource "pods"`))
	})

	It("answers a cluster without an agent at once with an error naming it, and a malformed path with 400", func(ctx SpecContext) {
		start := time.Now()
		code, body := userServerGet(ctx, "/cluster9/api/v1/namespaces", viewerToken)
		Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(statusMessage(body)).To(ContainSubstring(`cluster "cluster9" is not reachable: no cluster-proxy agent of it is connected`))

		code, body = userServerGet(ctx, "/Cluster_1/api", viewerToken)
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(statusMessage(body)).To(ContainSubstring(`invalid cluster "Cluster_1"`))
	})

	It("forwards to a Service only while the exposed-services ConfigMap lists it, keeping the last good list through a broken edit", func(ctx SpecContext) {
		ns := proxyServerNamespace(ctx)
		const path = "/cluster1/api/v1/namespaces/default/services/http:hello:8000/proxy-service/"
		setList := func(data string) {
			cm, err := hubKube.CoreV1().ConfigMaps(ns).Get(ctx, "cluster-proxy-exposed-services", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			cm.Data = map[string]string{"services": data}
			_, err = hubKube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		DeferCleanup(func(ctx SpecContext) {
			helm(ctx, "upgrade", localenv.ReleaseName, chartDir, "--namespace", localenv.ChartNamespace, "--reuse-values")
		})
		const denied = "service default/hello (http, port 8000) is not exposed by the user-server"

		By("denying a Service the chart's list does not name")
		code, body := userServerGet(ctx, path, viewerToken)
		Expect(code).To(Equal(http.StatusForbidden))
		Expect(statusMessage(body)).To(ContainSubstring(denied))

		By("forwarding once it is listed: the service-proxy then looks the Service up itself (it does not exist: 404 naming it)")
		setList("- namespace: default\n  service: hello\n  port: 8000\n  protocol: http\n")
		Eventually(func(g Gomega) {
			code, body := userServerGet(ctx, path, viewerToken)
			g.Expect(code).To(Equal(http.StatusNotFound), body)
			g.Expect(statusMessage(body)).To(ContainSubstring("the service-proxy found no Service at hello.default.svc:8000"))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		By("keeping the last good list through a broken edit, with a Warning Event saying why")
		setList("- namespace: default\n  servcie: hello\n")
		Eventually(func(g Gomega) {
			events, err := hubKube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=cluster-proxy-exposed-services,reason=InvalidExposedServices"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(events.Items).NotTo(BeEmpty())
			g.Expect(events.Items[0].Message).To(ContainSubstring(`unknown field "servcie"`))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		code, _ = userServerGet(ctx, path, viewerToken)
		Expect(code).To(Equal(http.StatusNotFound), "the last good list still allows it")

		By("denying everything once the ConfigMap is deleted")
		Expect(hubKube.CoreV1().ConfigMaps(ns).Delete(ctx, "cluster-proxy-exposed-services", metav1.DeleteOptions{})).To(Succeed())
		Eventually(func(g Gomega) {
			code, body := userServerGet(ctx, path, viewerToken)
			g.Expect(code).To(Equal(http.StatusForbidden), body)
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
	})

	It("keeps working across a proxy-server restart without restarting the user-server", func(ctx SpecContext) {
		ns := proxyServerNamespace(ctx)
		userPods, err := hubKube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "component=" + localenv.UserServerServiceName})
		Expect(err).NotTo(HaveOccurred())
		Expect(userPods.Items).NotTo(BeEmpty())
		servers, err := hubKube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "proxy.open-cluster-management.io/component-name=proxy-server"})
		Expect(err).NotTo(HaveOccurred())
		Expect(servers.Items).NotTo(BeEmpty())
		for _, p := range servers.Items {
			Expect(hubKube.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{})).To(Succeed())
		}
		By("waiting until the deleted proxy-servers are gone")
		Eventually(func(g Gomega) {
			now, err := hubKube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "proxy.open-cluster-management.io/component-name=proxy-server"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(podNames(now.Items)).NotTo(ContainElements(podNames(servers.Items)))
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
		// Later specs find every tunnel up again.
		DeferCleanup(func(ctx SpecContext) { Expect(localenv.WaitTunnels(ctx, env, GinkgoWriter)).To(Succeed()) })
		kubeconfig := localenv.UserServerKubeconfig(env.StateDir, "cluster1")
		Eventually(func(g Gomega) {
			_, errOut, err := kubectl(ctx, "--kubeconfig="+kubeconfig, "get", "pods", "-n", agentNamespace)
			g.Expect(err).NotTo(HaveOccurred(), "stderr: %s", errOut)
		}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())
		after, err := hubKube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "component=" + localenv.UserServerServiceName})
		Expect(err).NotTo(HaveOccurred())
		Expect(podNames(after.Items)).To(ConsistOf(podNames(userPods.Items)), "the user-server pods are the same")
		for _, p := range after.Items {
			for _, s := range p.Status.ContainerStatuses {
				Expect(s.RestartCount).To(BeZero(), "container %s of %s", s.Name, p.Name)
			}
		}
	})
})
