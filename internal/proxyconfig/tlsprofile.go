package proxyconfig

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
)

// TLSProfileConfigMapName is OCM's TLS profile ConfigMap (keys
// minTLSVersion, cipherSuites), read from the addon-manager's namespace.
const TLSProfileConfigMapName = tlsprofile.ConfigMapName

// tlsProfileArgs returns the proxy-server flags (--tls-min-version,
// --cipher-suites) for the OCM TLS profile in namespace: the defaults
// (--tls-min-version=VersionTLS12, as the existing addon passes) when the
// ConfigMap does not exist. Invalid values are an error naming the key, so
// the condition shows what to fix instead of silently using defaults.
func tlsProfileArgs(ctx context.Context, c client.Reader, namespace string) ([]string, error) {
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: TLSProfileConfigMapName}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = nil
	case err != nil:
		return nil, fmt.Errorf("failed to get TLS profile ConfigMap %s/%s: %w", namespace, TLSProfileConfigMapName, err)
	}
	return profileArgs(cm)
}

// profileArgs returns the proxy-server flags for the TLS profile ConfigMap
// cm; nil (no ConfigMap) gives the defaults.
func profileArgs(cm *corev1.ConfigMap) ([]string, error) {
	p, err := tlsprofile.FromConfigMap(cm)
	if err != nil {
		return nil, fmt.Errorf("TLS profile ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return p.Args(), nil
}
