// Package e2e_test is the end-to-end suite: it runs on the local
// environment (`make local-up`: a hub and two managed clusters on real
// kube-apiservers with real OCM, each in its own network namespace, and
// cluster-proxy installed by the Helm CLI) and checks the product's whole
// chain: install, isolation, connectivity through the tunnel, certificates,
// rollout of configuration, availability and uninstall. `make test-e2e`
// starts the environment when it is not up; specs are labelled by area for
// LABEL_FILTER.
package e2e_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"
	workclient "open-cluster-management.io/api/client/work/clientset/versioned"

	"open-cluster-management.io/cluster-proxy/pkg/client"
	proxyclient "open-cluster-management.io/cluster-proxy/pkg/generated/clientset/versioned"
	"open-cluster-management.io/cluster-proxy/test/framework"
	"open-cluster-management.io/cluster-proxy/test/localenv"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// stateDirEnv names the environment's state directory (the Makefile's
// LOCAL_STATE_DIR); helmEnv the Helm CLI.
const (
	stateDirEnv = "LOCAL_STATE_DIR"
	helmEnv     = "HELM"
)

// agentNamespace and agentDeployment are where the agents run on managed
// clusters (the chart's default spokeAddonNamespace).
const (
	agentNamespace  = "open-cluster-management-cluster-proxy"
	agentDeployment = "cluster-proxy-proxy-agent"
)

var (
	env        *localenv.Env
	hubCfg     *rest.Config
	hubKube    kubernetes.Interface
	hubAddon   addonclient.Interface
	hubCluster clusterclient.Interface
	hubWork    workclient.Interface
	hubProxy   proxyclient.Interface
	// managed are admin clients of the managed clusters through the
	// operator's loopback relays (not the tunnel).
	managed           = map[string]kubernetes.Interface{}
	managedCfg        = map[string]*rest.Config{}
	helmBin, chartDir string
	// clusterProxyBin is the cluster-proxy binary make build wrote.
	clusterProxyBin string
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	// Specs pass their context to Eventually; keep the default timeout.
	EnforceDefaultTimeoutsWhenUsingContexts()
	SetDefaultEventuallyTimeout(3 * time.Minute)
	SetDefaultEventuallyPollingInterval(time.Second)
	RunSpecs(t, "cluster-proxy end to end")
}

var _ = BeforeSuite(func() {
	stateDir := os.Getenv(stateDirEnv)
	root, err := framework.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	if stateDir == "" {
		stateDir = filepath.Join(root, "_output", "local")
	}
	chartDir = filepath.Join(root, "charts", "cluster-proxy")
	clusterProxyBin = filepath.Join(root, "bin", "cluster-proxy")
	_, err = os.Stat(clusterProxyBin)
	Expect(err).NotTo(HaveOccurred(), "make build writes bin/cluster-proxy")
	helmBin = os.Getenv(helmEnv)
	Expect(helmBin).NotTo(BeEmpty(), "$%s must name the Helm CLI (make test-e2e sets it)", helmEnv)
	Expect(localenv.Status(stateDir)).To(Equal("ready"), "the local environment in %s is not up: run `make local-up`", stateDir)
	env, err = localenv.LoadEnv(stateDir)
	Expect(err).NotTo(HaveOccurred())

	hubCfg, err = clientcmd.BuildConfigFromFlags("", env.HubKubeconfig)
	Expect(err).NotTo(HaveOccurred())
	hubKube = kubernetes.NewForConfigOrDie(hubCfg)
	hubAddon = addonclient.NewForConfigOrDie(hubCfg)
	hubCluster = clusterclient.NewForConfigOrDie(hubCfg)
	hubWork = workclient.NewForConfigOrDie(hubCfg)
	hubProxy = proxyclient.NewForConfigOrDie(hubCfg)
	for _, c := range localenv.ManagedClusters {
		cfg, err := clientcmd.BuildConfigFromFlags("", env.Clusters[c].Kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		managedCfg[c] = cfg
		managed[c] = kubernetes.NewForConfigOrDie(cfg)
	}
})

// hubDialer is a tunnel client whose sockets live in the hub's network
// namespace: it reaches the proxy-server as a hub workload would.
func hubDialer(ctx context.Context) *client.Dialer {
	GinkgoHelper()
	tlsCfg, err := client.TLSConfigForHub(ctx, hubCfg, localenv.MPCName)
	Expect(err).NotTo(HaveOccurred())
	return hubDialerWith(tlsCfg)
}

// hubDialerWith is hubDialer with the TLS configuration tlsCfg.
func hubDialerWith(tlsCfg *tls.Config) *client.Dialer {
	GinkgoHelper()
	hubNetns := env.Clusters[localenv.HubName].Netns
	d, err := client.NewDialer(net.JoinHostPort(localenv.HubUplinkIP, "8090"), tlsCfg,
		client.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return netns.DialContext(ctx, hubNetns, addr)
		}))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(d.Close)
	return d
}

// throughTunnel is a client of a managed cluster's kube-apiserver through
// the tunnel, with the cluster's own admin credentials end to end.
func throughTunnel(d *client.Dialer, cluster string) kubernetes.Interface {
	GinkgoHelper()
	cfg, err := client.RESTConfigForCluster(d, rest.CopyConfig(managedCfg[cluster]), cluster, client.ClusterOptions{})
	Expect(err).NotTo(HaveOccurred())
	cfg.ServerName = client.DefaultAPIServerName
	return kubernetes.NewForConfigOrDie(cfg)
}
