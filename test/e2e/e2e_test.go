package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	addonv1alpha1 "open-cluster-management.io/api/addon/v1alpha1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/localenv"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// proxyServerNamespace is where the chart's ManagedProxyConfiguration runs
// the proxy-server and keeps its certificates.
func proxyServerNamespace(ctx context.Context) string {
	GinkgoHelper()
	mpc, err := hubProxy.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, localenv.MPCName, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	return mpc.Spec.ProxyServer.Namespace
}

// The proxy-agent's client certificate Secret on a managed cluster,
// written by OCM's registration agent from the CSR our signer signed.
const agentCertSecret = "cluster-proxy-open-cluster-management.io-proxy-agent-signer-client-cert"

func conditionStatus(conds []metav1.Condition, t string) metav1.ConditionStatus {
	for _, c := range conds {
		if c.Type == t {
			return c.Status
		}
	}
	return metav1.ConditionUnknown
}

func addonAvailable(ctx context.Context, cluster string) (metav1.ConditionStatus, error) {
	mca, err := hubAddon.AddonV1alpha1().ManagedClusterAddOns(cluster).Get(ctx, localenv.AddonName, metav1.GetOptions{})
	if err != nil {
		return metav1.ConditionUnknown, err
	}
	return conditionStatus(mca.Status.Conditions, addonv1alpha1.ManagedClusterAddOnConditionAvailable), nil
}

var _ = Describe("cluster-proxy on the local environment", Ordered, func() {
	Context("install", Label("install"), func() {
		It("reports every ManagedProxyConfiguration condition healthy: Degraded False, the others True", func(ctx SpecContext) {
			Eventually(func(g Gomega) {
				mpc, err := hubProxy.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, localenv.MPCName, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(mpc.Status.Conditions).To(ContainElements(
					HaveField("Type", proxyv1alpha1.ConditionTypeProxyServerAvailable),
					HaveField("Type", proxyv1alpha1.ConditionTypeDegraded),
				))
				for _, c := range mpc.Status.Conditions {
					healthy := metav1.ConditionTrue
					if c.Type == proxyv1alpha1.ConditionTypeDegraded {
						healthy = metav1.ConditionFalse
					}
					g.Expect(c.Status).To(Equal(healthy), "condition %s (%s): %s", c.Type, c.Reason, c.Message)
				}
			}).WithContext(ctx).Should(Succeed())
		})

		It("has the addon Available and the agent Deployment running on every managed cluster", func(ctx SpecContext) {
			for _, c := range localenv.ManagedClusters {
				Eventually(addonAvailable).WithContext(ctx).WithArguments(c).Should(Equal(metav1.ConditionTrue), "addon on %s", c)
				Eventually(func(g Gomega) {
					d, err := managed[c].AppsV1().Deployments(agentNamespace).Get(ctx, agentDeployment, metav1.GetOptions{})
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(d.Status.AvailableReplicas).To(BeNumerically(">=", 1))
				}).WithContext(ctx).Should(Succeed(), "agent Deployment on %s", c)
			}
		})
	})

	Context("isolation", Label("isolation"), func() {
		It("refuses a direct dial from the hub to a managed kube-apiserver, while the tunnel reaches it", func(ctx SpecContext) {
			hubNetns := env.Clusters[localenv.HubName].Netns
			for _, c := range localenv.ManagedClusters {
				access := env.Clusters[c]
				_, port, err := net.SplitHostPort(access.APIServer)
				Expect(err).NotTo(HaveOccurred())
				for _, addr := range []string{access.APIServer, net.JoinHostPort(access.UplinkIP, port)} {
					dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
					conn, err := netns.DialContext(dialCtx, hubNetns, addr)
					cancel()
					if conn != nil {
						_ = conn.Close()
					}
					Expect(err).To(HaveOccurred(), "the hub reached %s's kube-apiserver at %s directly", c, addr)
				}
			}
			d := hubDialer(ctx)
			for _, c := range localenv.ManagedClusters {
				v, err := throughTunnel(d, c).Discovery().ServerVersion()
				Expect(err).NotTo(HaveOccurred(), "through the tunnel to %s", c)
				Expect(v.GitVersion).NotTo(BeEmpty())
			}
		})
	})

	Context("connectivity", Label("connectivity"), func() {
		It("lists pods on every managed cluster through the tunnel with the Go client", func(ctx SpecContext) {
			d := hubDialer(ctx)
			for _, c := range localenv.ManagedClusters {
				direct, err := managed[c].CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
				Expect(err).NotTo(HaveOccurred())
				Expect(direct.Items).NotTo(BeEmpty())
				tunnelled, err := throughTunnel(d, c).CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
				Expect(err).NotTo(HaveOccurred(), "list pods on %s through the tunnel", c)
				Expect(podNames(tunnelled.Items)).To(ConsistOf(podNames(direct.Items)))
			}
			Expect(d.Stats().Tunnels).To(Equal(1), "one pooled tunnel carries every dial")
		})

		It("fails a dial to an unknown cluster with a NoAgentError", func(ctx SpecContext) {
			dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, err := hubDialer(ctx).DialContext(dialCtx, "tcp", "cluster9:443")
			var noAgent *client.NoAgentError
			Expect(errors.As(err, &noAgent)).To(BeTrue(), "got %v", err)
			Expect(noAgent.Cluster).To(Equal("cluster9"))
			Expect(err.Error()).To(ContainSubstring("cluster9"))
		})
	})

	Context("certificates", Label("certificates"), func() {
		It("gives each agent a client certificate from the custom signer that verifies against the hub CA", func(ctx SpecContext) {
			caSecret, err := hubKube.CoreV1().Secrets(proxyServerNamespace(ctx)).Get(ctx, "proxy-server-ca", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			roots := x509.NewCertPool()
			Expect(roots.AppendCertsFromPEM(caSecret.Data["ca.crt"])).To(BeTrue())
			for _, c := range localenv.ManagedClusters {
				secret, err := managed[c].CoreV1().Secrets(agentNamespace).Get(ctx, agentCertSecret, metav1.GetOptions{})
				Expect(err).NotTo(HaveOccurred())
				cert, err := certs.ParseCertificate(secret.Data[corev1.TLSCertKey])
				Expect(err).NotTo(HaveOccurred())
				_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
				Expect(err).NotTo(HaveOccurred(), "%s's agent certificate", c)
				Expect(cert.Subject.OrganizationalUnit).To(ContainElement("cluster:" + c))
			}
			csrs, err := hubKube.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			signed := map[string]bool{}
			for _, csr := range csrs.Items {
				if csr.Spec.SignerName == "open-cluster-management.io/proxy-agent-signer" && len(csr.Status.Certificate) > 0 {
					signed[csr.Labels["open-cluster-management.io/cluster-name"]] = true
				}
			}
			for _, c := range localenv.ManagedClusters {
				Expect(signed).To(HaveKey(c), "a signed proxy-agent-signer CSR of %s", c)
			}
		})

		It("adds an additionalSAN to the server certificates, served by the running proxy-servers without a restart", func(ctx SpecContext) {
			const san = "e2e-extra.proxy.hub.cpx.test"
			namespace := proxyServerNamespace(ctx)
			serverPods := func() []corev1.Pod {
				pods, err := hubKube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "proxy.open-cluster-management.io/component-name=proxy-server"})
				Expect(err).NotTo(HaveOccurred())
				return pods.Items
			}
			before := podNames(serverPods())
			Expect(before).NotTo(BeEmpty())
			patch := fmt.Sprintf(`{"spec":{"authentication":{"signer":{"selfSigned":{"additionalSANs":[%q]}}}}}`, san)
			_, err := hubProxy.ProxyV1alpha1().ManagedProxyConfigurations().Patch(ctx, localenv.MPCName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx SpecContext) {
				_, err := hubProxy.ProxyV1alpha1().ManagedProxyConfigurations().Patch(ctx, localenv.MPCName, types.MergePatchType,
					[]byte(`{"spec":{"authentication":{"signer":{"selfSigned":{"additionalSANs":null}}}}}`), metav1.PatchOptions{})
				Expect(err).NotTo(HaveOccurred())
			})
			for _, name := range []string{"proxy-server", "agent-server"} {
				Eventually(func(g Gomega) {
					s, err := hubKube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
					g.Expect(err).NotTo(HaveOccurred())
					cert, err := certs.ParseCertificate(s.Data[corev1.TLSCertKey])
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(cert.DNSNames).To(ContainElement(san))
				}).WithContext(ctx).Should(Succeed(), "Secret %s", name)
			}
			// The running proxy-servers re-read the renewed Secret for new
			// handshakes: they serve the SAN with no pod replaced or
			// restarted, and the tunnel serves every cluster throughout.
			Eventually(func(g Gomega) {
				g.Expect(servedDNSNames(ctx)).To(ContainElement(san))
			}).WithContext(ctx).Should(Succeed(), "the proxy-server serves the new certificate")
			after := serverPods()
			Expect(podNames(after)).To(ConsistOf(before), "the same proxy-server pods")
			for _, p := range after {
				for _, cs := range p.Status.ContainerStatuses {
					Expect(cs.RestartCount).To(BeZero(), "container %s of %s", cs.Name, p.Name)
				}
			}
			Eventually(func(g Gomega) {
				d := hubDialer(ctx)
				for _, c := range localenv.ManagedClusters {
					_, err := throughTunnel(d, c).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
					g.Expect(err).NotTo(HaveOccurred(), "through the tunnel to %s", c)
				}
			}).WithContext(ctx).Should(Succeed())
			for _, c := range localenv.ManagedClusters {
				Eventually(addonAvailable).WithContext(ctx).WithArguments(c).Should(Equal(metav1.ConditionTrue))
			}
		})
	})

	Context("rollout", Label("rollout"), func() {
		It("rolls an AddOnDeploymentConfig change out to the agent Deployment on the managed cluster", func(ctx SpecContext) {
			const cluster, adcName = "cluster1", "cluster-proxy-e2e"
			memory := resource.MustParse("72Mi")
			adc := &addonv1alpha1.AddOnDeploymentConfig{
				ObjectMeta: metav1.ObjectMeta{Name: adcName, Namespace: cluster},
				Spec: addonv1alpha1.AddOnDeploymentConfigSpec{
					// The API defaults it to open-cluster-management-agent-addon,
					// which would move the agent: keep the chart's namespace.
					AgentInstallNamespace: agentNamespace,
					// Replaces the chart's infra tolerations, as in the
					// existing addon.
					NodePlacement: &addonv1alpha1.NodePlacement{Tolerations: []corev1.Toleration{
						{Key: "cluster-proxy-e2e", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
					}},
					ResourceRequirements: []addonv1alpha1.ContainerResourceRequirements{{
						ContainerID: "deployments:cluster-proxy-proxy-agent:proxy-agent",
						Resources:   corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: memory}},
					}},
				},
			}
			_, err := hubAddon.AddonV1alpha1().AddOnDeploymentConfigs(cluster).Create(ctx, adc, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx SpecContext) {
				Expect(patchAddonConfigs(ctx, cluster, nil)).To(Succeed())
				Expect(hubAddon.AddonV1alpha1().AddOnDeploymentConfigs(cluster).Delete(ctx, adcName, metav1.DeleteOptions{})).To(Succeed())
			})
			Expect(patchAddonConfigs(ctx, cluster, []addonv1alpha1.AddOnConfig{{
				ConfigGroupResource: addonv1alpha1.ConfigGroupResource{Group: "addon.open-cluster-management.io", Resource: "addondeploymentconfigs"},
				ConfigReferent:      addonv1alpha1.ConfigReferent{Namespace: cluster, Name: adcName},
			}})).To(Succeed())
			Eventually(func(g Gomega) {
				d, err := managed[cluster].AppsV1().Deployments(agentNamespace).Get(ctx, agentDeployment, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				requests := containerRequests(d, "proxy-agent")
				g.Expect(requests.Memory().Equal(memory)).To(BeTrue(), "requests %v", requests)
				g.Expect(d.Spec.Template.Spec.Tolerations).To(Equal([]corev1.Toleration{
					{Key: "cluster-proxy-e2e", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
				}))
			}).WithContext(ctx).Should(Succeed())
			Eventually(func(g Gomega) {
				d, err := managed[cluster].AppsV1().Deployments(agentNamespace).Get(ctx, agentDeployment, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(d.Status.UpdatedReplicas).To(Equal(d.Status.Replicas))
				g.Expect(d.Status.AvailableReplicas).To(Equal(*d.Spec.Replicas))
			}).WithContext(ctx).Should(Succeed(), "the new agent pods run")
		})
	})

	Context("availability", Label("availability"), func() {
		// A hung proxy-agent no longer waits out OCM's lease expiry (five
		// lease durations, 5 minutes): its own /healthz is the container's
		// liveness probe, so the kubelet replaces it and the tunnel heals
		// within about a minute. (That the addon-agent stops renewing the
		// Lease while the proxy-agent is not connected is the addonagent
		// integration suite's lease spec.)
		It("restarts a hung proxy-agent through its liveness probe, and the tunnel to that cluster heals while the other is unaffected", func(ctx SpecContext) {
			const cluster = "cluster2"
			pids := proxyAgentPIDs(ctx, cluster)
			Expect(pids).NotTo(BeEmpty())
			DeferCleanup(func() {
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGCONT)
				}
			})
			for _, pid := range pids {
				Expect(syscall.Kill(pid, syscall.SIGSTOP)).To(Succeed(), "stop proxy-agent pid %d", pid)
			}
			stopped := time.Now()
			// The other cluster is unaffected while cluster2's agents hang
			// (its own Dialer: its tunnel never carried a dial to the hung
			// agents).
			other := hubDialer(ctx)
			Eventually(func(g Gomega) {
				_, err := throughTunnel(other, "cluster1").CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
				g.Expect(err).NotTo(HaveOccurred())
			}).WithContext(ctx).WithTimeout(30*time.Second).Should(Succeed(), "cluster1 through the tunnel while cluster2's agents hang")
			d := hubDialer(ctx)
			Eventually(func(g Gomega) {
				now := proxyAgentPIDs(ctx, cluster)
				g.Expect(now).NotTo(BeEmpty())
				g.Expect(now).NotTo(ContainElements(pids), "the hung processes are replaced")
				_, err := throughTunnel(d, cluster).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
				g.Expect(err).NotTo(HaveOccurred(), "through the tunnel to %s", cluster)
			}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
			GinkgoWriter.Printf("the tunnel to %s healed %v after its proxy-agents hung\n", cluster, time.Since(stopped).Round(time.Second))
			for _, c := range localenv.ManagedClusters {
				Expect(addonAvailable(ctx, c)).To(Equal(metav1.ConditionTrue), c)
			}
		})
	})

	Context("uninstall", Label("uninstall"), func() {
		It("removes hub objects and the agents on managed clusters with helm uninstall", func(ctx SpecContext) {
			proxyNamespace := proxyServerNamespace(ctx)
			helm(ctx, "uninstall", localenv.ReleaseName, "--namespace", localenv.ChartNamespace, "--wait")
			DeferCleanup(func(ctx SpecContext) {
				// Leave the environment as make local-up made it.
				helm(ctx, append([]string{"upgrade", "--install", localenv.ReleaseName, chartDir, "--namespace", localenv.ChartNamespace},
					localenv.HelmValues()...)...)
				for _, c := range localenv.ManagedClusters {
					Eventually(addonAvailable).WithContext(ctx).WithArguments(c).WithTimeout(5 * time.Minute).Should(Equal(metav1.ConditionTrue))
				}
				Expect(localenv.WaitTunnels(ctx, env, GinkgoWriter)).To(Succeed())
				// A new CA came with the new configuration: the user-server
				// kubeconfigs follow it.
				Expect(localenv.WriteUserServerAccess(ctx, env, clusterProxyBin)).To(Succeed())
			})
			Eventually(func(g Gomega) {
				_, err := hubAddon.AddonV1alpha1().ClusterManagementAddOns().Get(ctx, localenv.AddonName, metav1.GetOptions{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ClusterManagementAddOn: %v", err)
				_, err = hubProxy.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, localenv.MPCName, metav1.GetOptions{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ManagedProxyConfiguration: %v", err)
				_, err = hubKube.AppsV1().Deployments(proxyNamespace).Get(ctx, "cluster-proxy", metav1.GetOptions{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "proxy-server Deployment: %v", err)
				for _, c := range localenv.ManagedClusters {
					_, err := hubAddon.AddonV1alpha1().ManagedClusterAddOns(c).Get(ctx, localenv.AddonName, metav1.GetOptions{})
					g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ManagedClusterAddOn in %s: %v", c, err)
					works, err := hubWork.WorkV1().ManifestWorks(c).List(ctx, metav1.ListOptions{})
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(works.Items).To(BeEmpty(), "ManifestWorks in %s", c)
				}
			}).WithContext(ctx).Should(Succeed())
			for _, c := range localenv.ManagedClusters {
				Eventually(func() bool {
					_, err := managed[c].AppsV1().Deployments(agentNamespace).Get(ctx, agentDeployment, metav1.GetOptions{})
					return apierrors.IsNotFound(err)
				}).WithContext(ctx).Should(BeTrue(), "agent Deployment on %s removed", c)
			}
		})
	})
})

// servedDNSNames are the DNS SANs of the certificate the proxy-server
// frontend serves to a client in the hub's network namespace.
func servedDNSNames(ctx context.Context) ([]string, error) {
	tlsCfg, err := client.TLSConfigForHub(ctx, hubCfg, localenv.MPCName)
	if err != nil {
		return nil, err
	}
	raw, err := netns.DialContext(ctx, env.Clusters[localenv.HubName].Netns, net.JoinHostPort(localenv.HubUplinkIP, "8090"))
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tlsCfg)
	defer func() { _ = conn.Close() }()
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return conn.ConnectionState().PeerCertificates[0].DNSNames, nil
}

func podNames(pods []corev1.Pod) []string {
	names := make([]string, 0, len(pods))
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return names
}

func containerRequests(d *appsv1.Deployment, name string) corev1.ResourceList {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c.Resources.Requests
		}
	}
	return nil
}

// patchAddonConfigs sets the cluster's ManagedClusterAddOn spec.configs.
func patchAddonConfigs(ctx context.Context, cluster string, configs []addonv1alpha1.AddOnConfig) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"configs": configs}})
	if err != nil {
		return err
	}
	_, err = hubAddon.AddonV1alpha1().ManagedClusterAddOns(cluster).Patch(ctx, localenv.AddonName, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// proxyAgentPIDs are the PIDs of the proxy-agent containers on a managed
// cluster: the kubelet stand-in reports container IDs as local://<pid>.
// Each is checked to still run the proxy-agent binary.
func proxyAgentPIDs(ctx context.Context, cluster string) []int {
	GinkgoHelper()
	var pids []int
	// Pods an earlier spec replaced may still be listed as running for a
	// moment after their drained agent exited: skip terminating pods and
	// wait until every listed process exists.
	Eventually(func(g Gomega) {
		pods, err := managed[cluster].CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		pids = nil
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, s := range p.Status.ContainerStatuses {
				if s.Name != "proxy-agent" || s.State.Running == nil {
					continue
				}
				pid, err := strconv.Atoi(strings.TrimPrefix(s.ContainerID, "local://"))
				g.Expect(err).NotTo(HaveOccurred(), "container ID %q", s.ContainerID)
				exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(exe).To(HaveSuffix("/proxy-agent"))
				pids = append(pids, pid)
			}
		}
	}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
	return pids
}

func helm(ctx context.Context, args ...string) {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, helmBin, append(args, "--kubeconfig", env.HubKubeconfig)...)
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "helm %s:\n%s", strings.Join(args, " "), out)
}
