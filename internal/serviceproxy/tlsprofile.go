package serviceproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
)

// tlsProfileReadTimeout bounds how long the service-proxy waits, before it
// listens, for the first read of the TLS profile ConfigMap. Past it (the
// managed kube-apiserver does not answer), it serves with the default
// profile and applies the ConfigMap once the watch reads it.
const tlsProfileReadTimeout = 30 * time.Second

// watchTLSProfile follows OCM's TLS profile ConfigMap (ocm-tls-profile in
// PodNamespace on the managed cluster) until ctx is done (the wait for the
// first read also ends with waitCtx) and returns the
// profile in force, for the HTTPS server's handshakes. It returns once the
// ConfigMap has been read (or could not be), so the server never starts
// weaker than configured for lack of having looked. Without a pod
// namespace there is nothing to watch: the profile is the default.
func (o *Options) watchTLSProfile(ctx, waitCtx context.Context) (func() tlsprofile.Profile, error) {
	if o.PodNamespace == "" {
		klog.FromContext(ctx).Info("the TLS profile ConfigMap is not watched: " + command.PodNamespaceEnv +
			" is not set; serving with the default profile (minimum TLS 1.2, Go's cipher suites)")
		return tlsprofile.Default, nil
	}
	managed, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	managed.QPS, managed.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	client, err := kubernetes.NewForConfig(managed)
	if err != nil {
		return nil, fmt.Errorf("failed to create the managed cluster client for the TLS profile: %w", err)
	}
	return tlsprofile.Start(ctx, waitCtx, client, o.PodNamespace, tlsProfileReadTimeout), nil
}

// servingTLSConfig is the HTTPS server's TLS configuration: the serving
// certificate, callers' certificates verified against clientCAs when given,
// and each handshake under the TLS profile that profile returns then.
func servingTLSConfig(serving tls.Certificate, clientCAs *x509.CertPool, profile func() tlsprofile.Profile) *tls.Config {
	return tlsprofile.ServerConfig(&tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serving},
		// Callers without a certificate reach the handler, which tells
		// them why they are refused.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  clientCAs,
	}, profile)
}
