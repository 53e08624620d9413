package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Options are the example's flags.
type Options struct {
	// ProxyServer is the proxy-server's frontend address, "host:port".
	ProxyServer string
	// ProxyServerName is the name the proxy-server's certificate is
	// verified against: "proxy-entrypoint.<proxy-server namespace>".
	ProxyServerName string
	// CAFile, CertFile and KeyFile are the proxy-server CA (Secret
	// proxy-server-ca, key ca.crt) and the proxy client certificate and
	// key (Secret proxy-client, keys tls.crt and tls.key).
	CAFile, CertFile, KeyFile string
	// Cluster is the managed cluster to reach.
	Cluster string
	// ManagedKubeconfig carries credentials the managed kube-apiserver
	// accepts and the CA that signs its serving certificate; its server
	// address is not used.
	ManagedKubeconfig string
	// ManagedServerName is the name the managed kube-apiserver's
	// certificate is verified against inside the tunnel.
	ManagedServerName string
	// Timeout bounds the whole run.
	Timeout time.Duration
}

// NewOptions returns the defaults: a proxy-server installed by the chart
// in namespace open-cluster-management-addon, reached from inside the hub.
func NewOptions() *Options {
	return &Options{
		ProxyServer:       "proxy-entrypoint.open-cluster-management-addon:8090",
		ProxyServerName:   "proxy-entrypoint.open-cluster-management-addon",
		ManagedServerName: "kubernetes.default.svc",
		Timeout:           time.Minute,
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ProxyServer, "proxy-server", o.ProxyServer, "The proxy-server's frontend address (host:port).")
	fs.StringVar(&o.ProxyServerName, "proxy-server-name", o.ProxyServerName, "The name the proxy-server's certificate is verified against: proxy-entrypoint.<proxy-server namespace>.")
	fs.StringVar(&o.CAFile, "ca-cert", o.CAFile, "The proxy-server CA bundle (Secret proxy-server-ca, key ca.crt) (required).")
	fs.StringVar(&o.CertFile, "client-cert", o.CertFile, "The proxy client certificate (Secret proxy-client, key tls.crt) (required).")
	fs.StringVar(&o.KeyFile, "client-key", o.KeyFile, "The proxy client key (Secret proxy-client, key tls.key) (required).")
	fs.StringVar(&o.Cluster, "cluster", o.Cluster, "The managed cluster whose namespaces to list (required).")
	fs.StringVar(&o.ManagedKubeconfig, "managed-kubeconfig", o.ManagedKubeconfig, "A kubeconfig with credentials the managed kube-apiserver accepts and its CA; its server address is not used (required).")
	fs.StringVar(&o.ManagedServerName, "managed-server-name", o.ManagedServerName, "The name the managed kube-apiserver's serving certificate is verified against.")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "How long the whole run may take.")
}

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(o.ProxyServer); err != nil {
		errs = append(errs, fmt.Errorf("invalid --proxy-server %q: %w", o.ProxyServer, err))
	}
	for _, f := range []struct{ flag, value string }{
		{"--proxy-server-name", o.ProxyServerName},
		{"--ca-cert", o.CAFile},
		{"--client-cert", o.CertFile},
		{"--client-key", o.KeyFile},
		{"--managed-kubeconfig", o.ManagedKubeconfig},
		{"--managed-server-name", o.ManagedServerName},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.flag))
		}
	}
	if o.Cluster == "" {
		errs = append(errs, errors.New("--cluster is required"))
	} else if msgs := validation.IsDNS1123Label(o.Cluster); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("invalid --cluster %q: %s", o.Cluster, strings.Join(msgs, "; ")))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("invalid --timeout %s: must be positive", o.Timeout))
	}
	return errors.Join(errs...)
}
