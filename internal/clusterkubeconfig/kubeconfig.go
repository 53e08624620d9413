// Package clusterkubeconfig is `cluster-proxy kubeconfig`: it prints a
// kubeconfig that reaches one managed cluster through the hub's
// user-server with the caller's own hub token, so
// `kubectl --kubeconfig <(cluster-proxy kubeconfig --cluster c1) get pods`
// works from wherever the user-server is reachable.
package clusterkubeconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"

	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/generated/clientset/versioned"
)

// UserServerServiceName and UserServerPort locate the user-server in the
// hub: https://<UserServerServiceName>.<namespace>:<UserServerPort>.
const (
	UserServerServiceName = "cluster-proxy-addon-user"
	UserServerPort        = 9092
)

// Options are the settings of `cluster-proxy kubeconfig`.
type Options struct {
	// Cluster is the managed cluster the kubeconfig reaches.
	Cluster string
	// Kubeconfig reaches the hub (the caller's credentials); empty means
	// $KUBECONFIG or in-cluster.
	Kubeconfig string
	// Configuration is the ManagedProxyConfiguration whose user-server and
	// CA are used.
	Configuration string
	// Server is the user-server's base URL; empty means
	// https://cluster-proxy-addon-user.<proxy-server namespace>:9092.
	Server string
	// Token is the bearer token written into the kubeconfig; empty means
	// the caller's hub token.
	Token string
	// Out receives the kubeconfig.
	Out io.Writer
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{Configuration: proxyv1alpha1.DefaultName, Out: os.Stdout}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Cluster, "cluster", o.Cluster, "The managed cluster the kubeconfig reaches (required).")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "The hub kubeconfig whose token the printed kubeconfig carries; empty means $KUBECONFIG or in-cluster.")
	fs.StringVar(&o.Configuration, "configuration", o.Configuration, "The ManagedProxyConfiguration whose user-server and CA to use.")
	fs.StringVar(&o.Server, "server", o.Server, "The user-server's base URL as the kubeconfig's user reaches it (a Route, Ingress or port-forward); empty means https://"+UserServerServiceName+".<proxy-server namespace>:9092.")
	fs.StringVar(&o.Token, "token", o.Token, "The bearer token to write; empty means the hub kubeconfig's own token.")
}

// Complete does nothing: every option comes from flags.
func (o *Options) Complete() error { return nil }

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.Cluster == "" {
		errs = append(errs, errors.New("--cluster is required"))
	} else if msgs := validation.IsDNS1123Label(o.Cluster); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("invalid --cluster %q: %s", o.Cluster, strings.Join(msgs, "; ")))
	}
	if o.Server != "" {
		if u, err := url.Parse(o.Server); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("invalid --server %q: must be an https URL with a host and no path", o.Server))
		}
	}
	return errors.Join(errs...)
}

// Log writes the effective options (the token never).
func (o *Options) Log(log logr.Logger) {
	log.V(4).Info("kubeconfig options", "cluster", o.Cluster, "kubeconfig", o.Kubeconfig,
		"configuration", o.Configuration, "server", o.Server, "tokenGiven", o.Token != "")
}

// Run prints the kubeconfig.
func Run(ctx context.Context, o *Options) error {
	hub, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return err
	}
	token := o.Token
	if token == "" {
		token = hub.BearerToken
		if token == "" && hub.BearerTokenFile != "" {
			data, err := os.ReadFile(hub.BearerTokenFile)
			if err != nil {
				return fmt.Errorf("failed to read the hub token file %s: %w", hub.BearerTokenFile, err)
			}
			token = strings.TrimSpace(string(data))
		}
	}
	if token == "" {
		return errors.New("the hub credentials carry no bearer token (a client certificate or exec plugin cannot travel through the user-server): pass --token, e.g. --token=$(kubectl create token <service account>)")
	}
	clusters, err := clusterclient.NewForConfig(hub)
	if err != nil {
		return fmt.Errorf("failed to create the ManagedCluster client: %w", err)
	}
	if _, err := clusters.ClusterV1().ManagedClusters().Get(ctx, o.Cluster, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("invalid --cluster %q: the hub has no such ManagedCluster", o.Cluster)
		}
		return fmt.Errorf("failed to get ManagedCluster %s: %w", o.Cluster, err)
	}
	proxies, err := versioned.NewForConfig(hub)
	if err != nil {
		return fmt.Errorf("failed to create the ManagedProxyConfiguration client: %w", err)
	}
	mpc, err := proxies.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, o.Configuration, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to get ManagedProxyConfiguration %s (--configuration): %w", o.Configuration, err)
	}
	namespace := mpc.Spec.ProxyServer.Namespace
	kube, err := kubernetes.NewForConfig(hub)
	if err != nil {
		return fmt.Errorf("failed to create the hub client: %w", err)
	}
	caSecret, err := kube.CoreV1().Secrets(namespace).Get(ctx, proxyv1alpha1.CASecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to read the cluster-proxy CA (Secret %s/%s): %w", namespace, proxyv1alpha1.CASecretName, err)
	}
	caPEM := caSecret.Data[proxyv1alpha1.CASecretKey]
	if len(caPEM) == 0 {
		return fmt.Errorf("secret %s/%s has no %s", namespace, proxyv1alpha1.CASecretName, proxyv1alpha1.CASecretKey)
	}
	server := o.Server
	if server == "" {
		server = fmt.Sprintf("https://%s.%s:%d", UserServerServiceName, namespace, UserServerPort)
	}
	data, err := clientcmd.Write(*Build(o.Cluster, server, caPEM, token))
	if err != nil {
		return fmt.Errorf("failed to encode the kubeconfig: %w", err)
	}
	_, err = o.Out.Write(data)
	return err
}

// Build is the kubeconfig of cluster through the user-server at server
// (base URL), trusting caPEM, authenticating with token.
func Build(cluster, server string, caPEM []byte, token string) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{
		Server:                   strings.TrimSuffix(server, "/") + "/" + cluster,
		CertificateAuthorityData: caPEM,
	}
	cfg.AuthInfos[cluster] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: cluster}
	cfg.CurrentContext = cluster
	return cfg
}
