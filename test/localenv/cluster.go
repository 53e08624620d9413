package localenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// kcmControllers are the kube-controller-manager controllers every cluster
// runs: certificate signing, garbage collection, namespaces, service
// accounts, what turns Deployments into Ready endpoints, and resource
// quotas (a quota is how the e2e suite keeps a replica from running).
var kcmControllers = []string{
	"csrsigning", "csrcleaner", "garbagecollector", "namespace", "serviceaccount",
	"serviceaccount-token", "root-ca-cert-publisher", "deployment", "replicaset",
	"endpointslice", "resourcequota",
}

// startControlPlane starts the cluster's etcd, kube-apiserver and
// kube-controller-manager inside its namespace and waits for the API server
// to be ready.
func (s *Supervisor) startControlPlane(ctx context.Context, c Cluster, pki PKI, tokenFile string) error {
	dir := c.Dir(s.StateDir)
	if _, err := s.start(c, "etcd", s.Bin.Etcd,
		"--name="+c.Name,
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster="+c.Name+"=http://127.0.0.1:2380",
		"--unsafe-no-fsync",
	); err != nil {
		return err
	}
	args := []string{
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=" + c.APIServerBind(),
		"--secure-port=" + strconv.Itoa(c.APIServerPort()),
		"--advertise-address=" + c.Gateway(),
		"--tls-cert-file=" + pki.Path(apiserverCert),
		"--tls-private-key-file=" + pki.Path(apiserverKey),
		"--client-ca-file=" + pki.Path(caCert),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.Path(saPub),
		"--service-account-signing-key-file=" + pki.Path(saKey),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		// The kubelet stand-in's API (pods' exec, port-forward and logs),
		// reached at the Node's InternalIP, with TLS both ways.
		"--kubelet-client-certificate=" + pki.Path(kubeletClientCert),
		"--kubelet-client-key=" + pki.Path(kubeletClientKey),
		"--kubelet-certificate-authority=" + pki.Path(caCert),
		"--kubelet-preferred-address-types=InternalIP",
	}
	if tokenFile != "" {
		args = append(args, "--token-auth-file="+tokenFile)
	}
	apiserver, err := s.start(c, "kube-apiserver", s.Bin.KubeAPIServer, args...)
	if err != nil {
		return err
	}
	if err := s.waitAPIServer(ctx, c, apiserver.Done()); err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	_, err = s.start(c, "kube-controller-manager", s.Bin.KubeControllerManager,
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1",
		"--cert-dir="+filepath.Join(dir, "kcm-certs"),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--controllers="+strings.Join(kcmControllers, ","),
		"--cluster-signing-cert-file="+pki.Path(caCert),
		"--cluster-signing-key-file="+pki.Path(caKey),
		"--service-account-private-key-file="+pki.Path(saKey),
		"--root-ca-file="+pki.Path(caCert),
		"--concurrent-deployment-syncs=2",
	)
	return err
}

// waitAPIServer waits until the cluster's kube-apiserver answers /readyz.
func (s *Supervisor) waitAPIServer(ctx context.Context, c Cluster, exited <-chan struct{}) error {
	_, client, err := s.client(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		_, last = client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("kube-apiserver of %s exited (see %s)", c.Name, s.logPath(c, "kube-apiserver"))
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver of %s not ready: %w (see %s)", c.Name, last, s.logPath(c, "kube-apiserver"))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// restConfig is an admin config for the cluster that dials from inside the
// cluster's namespace, so it works for managed clusters the root namespace
// cannot reach.
func (s *Supervisor) restConfig(c Cluster) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(c.Dir(s.StateDir), "admin.kubeconfig"))
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig of %s: %w", c.Name, err)
	}
	ns := c.Netns()
	cfg.Dial = func(ctx context.Context, _, address string) (net.Conn, error) {
		return netns.DialContext(ctx, ns, address)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// logPath is the log file of a process the supervisor started.
func (s *Supervisor) logPath(c Cluster, component string) string {
	return filepath.Join(s.StateDir, "logs", c.Name+"-"+component+".log")
}
