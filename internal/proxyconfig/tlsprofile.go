package proxyconfig

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	sdktls "open-cluster-management.io/sdk-go/pkg/tls"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TLSProfileConfigMapName is OCM's TLS profile ConfigMap (keys
// minTLSVersion, cipherSuites), read from the addon-manager's namespace.
const TLSProfileConfigMapName = sdktls.ConfigMapName

// tlsProfileArgs returns the proxy-server flags (--tls-min-version,
// --cipher-suites) for the OCM TLS profile in namespace, none when the
// ConfigMap does not exist. Invalid values are an error naming the key, so
// the condition shows what to fix instead of silently using defaults.
func tlsProfileArgs(ctx context.Context, c client.Reader, namespace string) ([]string, error) {
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: TLSProfileConfigMapName}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get TLS profile ConfigMap %s/%s: %w", namespace, TLSProfileConfigMapName, err)
	}
	var args []string
	if v := strings.TrimSpace(cm.Data[sdktls.ConfigMapKeyMinVersion]); v != "" {
		if _, err := sdktls.ParseTLSVersion(v); err != nil {
			return nil, fmt.Errorf("TLS profile ConfigMap %s/%s: invalid %s %q: %w", namespace, TLSProfileConfigMapName, sdktls.ConfigMapKeyMinVersion, v, err)
		}
		args = append(args, "--tls-min-version="+v)
	}
	if v := strings.TrimSpace(cm.Data[sdktls.ConfigMapKeyCipherSuites]); v != "" {
		_, unsupported := sdktls.ParseCipherSuites(v)
		if len(unsupported) > 0 {
			return nil, fmt.Errorf("TLS profile ConfigMap %s/%s: unsupported %s: %s", namespace, TLSProfileConfigMapName, sdktls.ConfigMapKeyCipherSuites, strings.Join(unsupported, ","))
		}
		var names []string
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		args = append(args, "--cipher-suites="+strings.Join(names, ","))
	}
	return args, nil
}
