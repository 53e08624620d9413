package addonhealth_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// readCert parses the PEM certificate in file.
func readCert(file string) *x509.Certificate {
	GinkgoHelper()
	data, err := os.ReadFile(file)
	Expect(err).NotTo(HaveOccurred())
	block, _ := pem.Decode(data)
	Expect(block).NotTo(BeNil(), "no PEM block in %s", file)
	cert, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return cert
}

// startTunnelProcess starts binary and stops it when the spec ends.
func startTunnelProcess(name, binary string, args, env []string, dir string) *framework.Process {
	GinkgoHelper()
	p, err := framework.StartProcess(name, binary, args, env, dir)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = framework.StopTunnelProcess(p) })
	return p
}

var _ = Describe("The proxy-server's health report", Label("healthreport"), func() {
	It("lists the clusters whose agents connect, with their certificates, and drops a cluster whose agent leaves", func(ctx SpecContext) {
		namespace := "proxy-server-report"
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
		pod := createPod(ctx, namespace, "cluster-proxy-5f6d-server")

		dir := GinkgoT().TempDir()
		pki, err := framework.NewTunnelPKI(dir, "127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		kubeconfig := dir + "/hub.kubeconfig"
		Expect(os.WriteFile(kubeconfig, apiServer.KubeConfig, 0o600)).To(Succeed())
		ports, err := framework.FreeProxyServerPorts()
		Expect(err).NotTo(HaveOccurred())
		args := append(framework.ProxyServerArgs(pki, ports, "server-a", 2),
			"--health-report", "--health-report-kubeconfig="+kubeconfig)
		server := startTunnelProcess("proxy-server", proxyServerBinary, args,
			[]string{"POD_NAME=" + pod.Name, "POD_NAMESPACE=" + namespace, "POD_UID=" + string(pod.UID)}, dir)
		Expect(framework.WaitHTTPOK(ctx, "http://127.0.0.1:"+strconv.Itoa(ports.Health)+"/healthz", false, server)).To(Succeed())

		By("writing a report with no cluster at start, owned by the pod")
		// The next periodic write comes DefaultPeriod after the first: a
		// report written sooner was triggered by an agent.
		var first time.Time
		Eventually(func(g Gomega) {
			cm, r, err := readReport(ctx, namespace, pod.Name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.ServerID).To(Equal("server-a"))
			g.Expect(r.ServerCount).To(Equal(2))
			g.Expect(r.Clusters).To(BeEmpty())
			// Both ports' certificates and the agents' CA are the PKI's.
			g.Expect(r.TrustedSigners).To(Equal([]string{identity.SignerOU(pki.CA.Cert)}))
			g.Expect(r.ServingSigners).To(Equal([]string{identity.SignerOU(pki.CA.Cert)}))
			g.Expect(cm.OwnerReferences).To(ConsistOf(HaveField("UID", pod.UID)))
			first = r.UpdateTime
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())

		By("listing each cluster once its agent connects, with the agent's certificate")
		agents := map[string]*framework.Process{}
		certsByCluster := map[string]*x509.Certificate{}
		for _, cluster := range []string{"cluster1", "cluster2"} {
			certFile, keyFile, err := pki.AgentCert(cluster)
			Expect(err).NotTo(HaveOccurred())
			certsByCluster[cluster] = readCert(certFile)
			health, err := framework.FreeTunnelPort()
			Expect(err).NotTo(HaveOccurred())
			admin, err := framework.FreeTunnelPort()
			Expect(err).NotTo(HaveOccurred())
			agents[cluster] = startTunnelProcess("proxy-agent-"+cluster, proxyAgentBinary,
				framework.ProxyAgentArgs(pki, "agent-"+cluster, ports.Agent, certFile, keyFile,
					framework.ProxyAgentIdentifiers(cluster, "open-cluster-management-agent-addon"), health, admin), nil, dir)
		}
		var connected healthreport.Report
		Eventually(func(g Gomega) {
			_, r, err := readReport(ctx, namespace, pod.Name)
			g.Expect(err).NotTo(HaveOccurred())
			connected = r
			g.Expect(r.Clusters).To(HaveLen(2))
			for i, cluster := range []string{"cluster1", "cluster2"} {
				c, cert := r.Clusters[i], certsByCluster[cluster]
				g.Expect(c.Name).To(Equal(cluster))
				g.Expect(c.Agents).To(Equal(1))
				g.Expect(c.Certificate).NotTo(BeNil())
				g.Expect(c.Certificate.Serial).To(Equal(cert.SerialNumber.Text(16)))
				g.Expect(c.Certificate.NotAfter).To(BeTemporally("==", cert.NotAfter))
				g.Expect(c.Certificate.Signer).To(Equal(identity.SignerOU(pki.CA.Cert)))
				g.Expect(c.Certificate.Issuer).To(Equal(pki.CA.Cert.Subject.CommonName))
			}
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
		Expect(connected.UpdateTime).To(BeTemporally("<", first.Add(healthreport.DefaultPeriod)),
			"the report listing the agents was not triggered by their connecting (or the spec took longer than a period)")

		By("dropping a cluster once its agent leaves")
		Expect(framework.StopTunnelProcess(agents["cluster2"])).To(Succeed())
		var left healthreport.Report
		Eventually(func(g Gomega) {
			_, r, err := readReport(ctx, namespace, pod.Name)
			g.Expect(err).NotTo(HaveOccurred())
			left = r
			g.Expect(r.Clusters).To(ConsistOf(HaveField("Name", "cluster1")))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
		Expect(left.UpdateTime).To(BeTemporally("<", first.Add(healthreport.DefaultPeriod)),
			"the report without cluster2 was not triggered by its agent leaving (or the spec took longer than a period)")
	})
})
