package serviceproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/tlsfiles"
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

// servingTLSConfig is the HTTPS server's TLS configuration: each handshake
// with the serving certificate and the client CA bundle as their files
// hold them then (a renewal or a CA rotation needs no restart; a change
// that cannot be read keeps the last good material and is logged once,
// with the logger of ctx), callers' certificates verified against that
// bundle when given, under the TLS profile that profile returns then.
func servingTLSConfig(ctx context.Context, serving *tlsfiles.KeyPair, clientCAs *tlsfiles.Pool, profile func() tlsprofile.Profile) *tls.Config {
	cfg := tlsprofile.ServerConfig(&tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return serving.Current(ctx), nil
		},
		// Callers without a certificate reach the handler, which tells
		// them why they are refused.
		ClientAuth: tls.VerifyClientCertIfGiven,
		// The bundle as first read, for code that reads the field; every
		// handshake gets the current one below.
		ClientCAs: clientCAs.Current(ctx),
	}, profile)
	withProfile := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := withProfile(hello)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = clientCAs.Current(ctx)
		return c, nil
	}
	return cfg
}
