package client

import (
	"errors"
	"fmt"
	"net"

	"k8s.io/client-go/rest"
)

// DefaultAPIServerName is the name RESTConfigForCluster verifies the managed
// kube-apiserver's serving certificate against when neither the options nor
// the base configuration name one. Every kube-apiserver certificate carries
// it, because in-cluster clients reach the API server under that name;
// none carries the managed cluster's name, which is what the hub dials.
const DefaultAPIServerName = "kubernetes.default.svc"

// DefaultAPIServerPort is the port RESTConfigForCluster dials, the port of
// the kubernetes Service on the managed cluster.
const DefaultAPIServerPort = "443"

// ClusterOptions adjust what RESTConfigForCluster returns.
type ClusterOptions struct {
	// Address is the "host:port" dialled through the tunnel. Empty means
	// "<cluster>:443": each cluster-proxy agent registers its cluster name
	// and resolves it to its kube-apiserver.
	Address string
	// CAData is the PEM bundle that verifies the managed kube-apiserver's
	// serving certificate (typically the managed cluster's
	// kube-root-ca.crt). Empty keeps the CA of the base configuration.
	CAData []byte
	// ServerName is the name the managed kube-apiserver's serving
	// certificate is verified against. Empty keeps the base configuration's
	// ServerName, or DefaultAPIServerName when it has none.
	ServerName string
	// Insecure skips the verification of the managed kube-apiserver's
	// serving certificate, as the upstream cluster-proxy examples do. The
	// tunnel to the proxy-server stays verified, but anything between the
	// agent and the kube-apiserver could then impersonate the API server.
	// It excludes CAData.
	Insecure bool
}

// RESTConfigForCluster returns a copy of base, which carries credentials
// for the managed cluster (a bearer token or client certificate the managed
// kube-apiserver accepts), whose requests go through dialer to cluster.
// Host becomes "https://<Address>", Dial is dialer.DialContext, and any
// HTTP proxy of base is dropped.
//
// TLS to the managed kube-apiserver is verified end to end, inside the
// tunnel. Its certificate does not name the cluster, so the configuration
// verifies it against opts.ServerName (default: the base ServerName, else
// DefaultAPIServerName) with opts.CAData (default: the base CA). Use
// opts.Insecure only where that cannot work.
func RESTConfigForCluster(dialer *Dialer, base *rest.Config, cluster string, opts ClusterOptions) (*rest.Config, error) {
	switch {
	case dialer == nil:
		return nil, errors.New("failed to build the rest.Config: the dialer is nil")
	case base == nil:
		return nil, errors.New("failed to build the rest.Config: the base configuration is nil")
	case cluster == "":
		return nil, errors.New("failed to build the rest.Config: the cluster name is empty")
	case base.Transport != nil:
		return nil, fmt.Errorf("failed to build the rest.Config of cluster %s: the base configuration has its own Transport, which would bypass the tunnel", cluster)
	case opts.Insecure && len(opts.CAData) > 0:
		return nil, fmt.Errorf("failed to build the rest.Config of cluster %s: Insecure and CAData exclude each other", cluster)
	}
	address := opts.Address
	if address == "" {
		address = net.JoinHostPort(cluster, DefaultAPIServerPort)
	}
	if _, _, err := net.SplitHostPort(address); err != nil {
		return nil, fmt.Errorf("failed to build the rest.Config of cluster %s: invalid address %q: %w", cluster, address, err)
	}

	cfg := rest.CopyConfig(base)
	cfg.Host = "https://" + address
	cfg.Dial = dialer.DialContext
	cfg.Proxy = nil
	tlsConfig := &cfg.TLSClientConfig
	if opts.Insecure {
		// client-go refuses a CA together with Insecure.
		tlsConfig.Insecure = true
		tlsConfig.CAData = nil
		tlsConfig.CAFile = ""
	} else if len(opts.CAData) > 0 {
		tlsConfig.CAData = opts.CAData
		tlsConfig.CAFile = ""
	}
	switch {
	case opts.ServerName != "":
		tlsConfig.ServerName = opts.ServerName
	case tlsConfig.ServerName == "" && !tlsConfig.Insecure:
		tlsConfig.ServerName = DefaultAPIServerName
	}
	return cfg, nil
}
