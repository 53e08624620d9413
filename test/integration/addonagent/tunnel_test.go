package addonagent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	proxyclient "open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

var _ = Describe("The port-forward relay", Label("addonagent", "portforward", "tunnel"), func() {
	It("carries a proxy-agent's tunnel to a proxy-server through the hub kube-apiserver", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		serverBin, err := framework.BuildBinary("./cmd/proxy-server", "proxy-server")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, filepath.Dir(serverBin))
		agentBin, err := framework.BuildBinary("./cmd/proxy-agent", "proxy-agent")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, filepath.Dir(agentBin))

		pki, err := framework.NewTunnelPKI(dir, "127.0.0.1")
		Expect(err).NotTo(HaveOccurred())

		By("a proxy-server process, playing the proxy-server pod")
		ports, err := framework.FreeProxyServerPorts()
		Expect(err).NotTo(HaveOccurred())
		server, err := framework.StartProcess("proxy-server", serverBin, framework.ProxyServerArgs(pki, ports, "server-0", 1), nil, dir)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(framework.StopTunnelProcess, server)
		Expect(framework.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports.Health), false, server)).To(Succeed())

		const ns = "proxy-tunnel"
		_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		kubelet, err := framework.StartKubelet(ctx, client, "node-tunnel")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(kubelet.Stop)
		Expect(kubelet.RunPod(ctx, client, ns, "proxy-server-0",
			map[string]string{proxyv1alpha1.LabelComponentName: proxyv1alpha1.ComponentProxyServer})).To(Succeed())

		By("the relay, listening where the proxy-agent dials")
		relay, listener := startRelay(ctx, ns, ports.Agent)

		By("a proxy-agent that can reach the proxy-server only through the relay")
		certFile, keyFile, err := pki.AgentCert("cluster1")
		Expect(err).NotTo(HaveOccurred())
		agentHealth, err := framework.FreeTunnelPort()
		Expect(err).NotTo(HaveOccurred())
		agentAdmin, err := framework.FreeTunnelPort()
		Expect(err).NotTo(HaveOccurred())
		relayPort := listener.Addr().(*net.TCPAddr).Port
		// The proxy-server admits an agent only for its own cluster's names;
		// they resolve to 127.0.0.1 in the agent's private hosts file.
		const agentNamespace = "open-cluster-management-cluster-proxy"
		agent, err := framework.StartProcessWithHostAliases("proxy-agent", agentBin,
			framework.ProxyAgentArgs(pki, "agent-1", relayPort, certFile, keyFile, framework.ProxyAgentIdentifiers("cluster1", agentNamespace), agentHealth, agentAdmin),
			nil, dir, framework.ProxyAgentHosts("cluster1", agentNamespace))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(framework.StopTunnelProcess, agent)
		// The proxy-server is ready once an agent is connected to it (a
		// refused agent never connects: bounded, with the agent's log).
		readyCtx, cancelReady := context.WithTimeout(ctx, time.Minute)
		defer cancelReady()
		Expect(framework.WaitHTTPOK(readyCtx, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports.Health), false, server)).To(Succeed(), "agent log:\n%s", agent.LogTail(20))
		Expect(relay.Ready(ctx)).To(Succeed())

		By("a hub client dialing through the proxy-server, the tunnel and the agent")
		echoPort, stopEcho := echoServer()
		DeferCleanup(stopEcho)
		tlsConfig, err := proxyclient.NewTLSConfig(pki.CA.CertPEM, pki.ProxyClientCert, pki.ProxyClientKey, "127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		dialer, err := proxyclient.NewDialer("127.0.0.1:"+strconv.Itoa(ports.Server), tlsConfig)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(dialer.Close)
		conn, err := dialer.DialContext(ctx, "tcp", "cluster1:"+strconv.Itoa(echoPort))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		msg := []byte("through the relay and back\n")
		_, err = conn.Write(msg)
		Expect(err).NotTo(HaveOccurred())
		// Tunnelled connections have no deadlines; bound the read instead.
		echoed := make(chan string, 1)
		go func() {
			got := make([]byte, len(msg))
			n, _ := io.ReadFull(conn, got)
			echoed <- string(got[:n])
		}()
		Eventually(echoed).WithTimeout(20 * time.Second).Should(Receive(Equal(string(msg))))
	})
})
