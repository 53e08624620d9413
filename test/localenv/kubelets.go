package localenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	proxyclient "open-cluster-management.io/cluster-proxy/pkg/generated/clientset/versioned"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/test/localenv/kubelet"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
	"open-cluster-management.io/cluster-proxy/test/localenv/workload"
)

// startKubelets starts, per cluster, the hosts files, the relays pods need
// and the kubelet stand-in that runs cluster-proxy's pods.
func (s *Supervisor) startKubelets(ctx context.Context, wg *sync.WaitGroup) error {
	hub := Clusters()[0]
	hubCfg, hubClient, err := s.client(hub)
	if err != nil {
		return err
	}
	proxies, err := proxyclient.NewForConfig(hubCfg)
	if err != nil {
		return err
	}
	// Where the proxy-server runs: the chart's ManagedProxyConfiguration.
	locate := func(ctx context.Context) (string, string, error) {
		mpc, err := proxies.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, MPCName, metav1.GetOptions{})
		if err != nil {
			return "", "", err
		}
		return mpc.Spec.ProxyServer.Namespace, mpc.Spec.ProxyServer.InClusterServiceName, nil
	}
	// The hub's "LoadBalancer": the proxy-server ports on the uplink.
	for port, name := range map[int]string{EntrypointPort: "agent-server", FrontendPort: "proxy-server"} {
		addr := net.JoinHostPort(HubUplinkIP, strconv.Itoa(port))
		if _, err := relay(ctx, "hub-"+name, hub.Netns(), addr,
			serviceDialer(hubClient, hub.Netns(), locate, name)); err != nil {
			return err
		}
	}
	// And the user-server's HTTPS port, so kubectl on the host reaches
	// https://<hub uplink>:9092/<cluster> (the chart adds the address to the
	// serving certificate's SANs).
	locateUserServer := func(ctx context.Context) (string, string, error) {
		namespace, _, err := locate(ctx)
		return namespace, UserServerServiceName, err
	}
	if _, err := relay(ctx, "hub-user-server", hub.Netns(), net.JoinHostPort(HubUplinkIP, strconv.Itoa(UserServerPort)),
		serviceDialer(hubClient, hub.Netns(), locateUserServer, UserServerPortName)); err != nil {
		return err
	}
	workloadRoot, err := s.writeWorkloadImage()
	if err != nil {
		return err
	}
	for _, c := range Clusters() {
		_, client, err := s.client(c)
		if err != nil {
			return err
		}
		api, err := kubeletAPI(c, PKI{Dir: filepath.Join(c.Dir(s.StateDir), "pki")})
		if err != nil {
			return err
		}
		static := map[string]string{HubHostname: c.Gateway()}
		namespaces := hubPodNamespaces
		if !c.Hub {
			static[EntrypointHostname] = c.Gateway()
			namespaces = managedPodNamespaces
			// The node's "NAT": pods reach the hub through their gateway.
			for _, port := range []int{HubAPIServerPort, EntrypointPort} {
				if _, err := relay(ctx, c.Name+"-egress", c.Netns(), net.JoinHostPort(c.Gateway(), strconv.Itoa(port)),
					dialIn(c.Netns(), net.JoinHostPort(HubUplinkIP, strconv.Itoa(port)))); err != nil {
					return err
				}
			}
		}
		h := newHosts(filepath.Join(c.Dir(s.StateDir), "hosts"), client, c.Gateway(), static)
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.run(ctx)
		}()
		k, err := kubelet.New(kubelet.Options{
			NodeName:   c.NodeName(),
			NodeIP:     c.Gateway(),
			Client:     client,
			Namespaces: namespaces,
			Images:     map[string]string{Image: s.Bin.ImageRoot, TestWorkloadImage: workloadRoot},
			Network: &kubelet.BridgeNetwork{
				NodeNetns: c.Netns(), Bridge: podsBridge, Prefix: c.PodPrefix(), Gateway: c.Gateway(),
				NetnsPrefix: c.PodNetnsPrefix(),
			},
			StateDir:      filepath.Join(c.Dir(s.StateDir), "kubelet"),
			PodExec:       []string{s.Bin.Self, "pod-exec"},
			HostsFile:     h.Path,
			APIServerHost: c.Gateway(),
			APIServerPort: strconv.Itoa(c.APIServerPort()),
			API:           api,
		})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.Run(ctx); err != nil {
				klog.FromContext(ctx).Error(err, "Kubelet stand-in failed", "cluster", c.Name)
			}
		}()
	}
	return nil
}

// cleanupKubelets kills what the kubelet stand-ins recorded and removes
// the mount points they created.
func cleanupKubelets(stateDir string) []error {
	var errs []error
	for _, c := range Clusters() {
		dir := filepath.Join(c.Dir(stateDir), "kubelet")
		errs = append(errs, kubelet.KillRecorded(dir), kubelet.CleanupCreatedDirs(dir))
	}
	return errs
}

// KubeletPort is the kubelet stand-ins' API port on each node's gateway
// address.
const KubeletPort = 10250

// kubeletAPI listens for the kube-apiserver on the node's gateway address
// (in the cluster's namespace), serving the PKI's kubelet certificate and
// admitting only the kube-apiserver's kubelet client certificate.
func kubeletAPI(c Cluster, pki PKI) (*kubelet.APIOptions, error) {
	cert, err := tls.LoadX509KeyPair(pki.Path(kubeletCert), pki.Path(kubeletKey))
	if err != nil {
		return nil, fmt.Errorf("kubelet serving certificate of %s: %w", c.Name, err)
	}
	clientCAs, err := certs.LoadCertPool(pki.Path(caCert))
	if err != nil {
		return nil, err
	}
	l, err := netns.Listen(c.Netns(), net.JoinHostPort(c.Gateway(), strconv.Itoa(KubeletPort)))
	if err != nil {
		return nil, fmt.Errorf("listen for the kubelet API of %s: %w", c.Name, err)
	}
	return &kubelet.APIOptions{
		Listener: l,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: clientCAs,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		ClientCommonName: KubeletClientName,
	}, nil
}

// writeWorkloadImage writes the test workload's image root: a link per
// program of package workload to this binary, which runs the program its
// argv[0] names.
func (s *Supervisor) writeWorkloadImage() (string, error) {
	root := filepath.Join(s.StateDir, "images", "test-workload")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	for _, p := range workload.Programs {
		link := filepath.Join(root, p)
		_ = os.Remove(link)
		if err := os.Symlink(s.Bin.Self, link); err != nil {
			return "", fmt.Errorf("write the test workload image: %w", err)
		}
	}
	return root, nil
}
