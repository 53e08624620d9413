package authn

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/configmapwatch"
)

// OIDCCAKey is the key of the OIDC issuer's CA (PEM) in its ConfigMap, under
// data or binaryData.
const OIDCCAKey = "ca.crt"

// WatchOIDCCA keeps o trusting the CA in key ca.crt of ConfigMap
// namespace/name, watched with an informer on that one object: every change
// applies without a restart, and while the ConfigMap, its key or a
// certificate in it is missing, o fails closed naming why. It runs until ctx
// is done; o stops with it.
func WatchOIDCCA(ctx context.Context, client kubernetes.Interface, namespace, name string, o *OIDC) error {
	ref := klog.KRef(namespace, name)
	log := klog.FromContext(ctx).WithValues("configMap", ref)
	o.Disable(fmt.Errorf("the CA ConfigMap %s has not been read yet", ref))

	return configmapwatch.Run(ctx, client, namespace, name, configmapwatch.Handlers{
		Changed: func(cm *corev1.ConfigMap) {
			if err := loadOIDCCA(ctx, cm, ref, o); err != nil {
				o.Disable(err)
				log.Error(err, "the OIDC issuer's CA is unusable: OIDC tokens are refused until the ConfigMap is fixed")
				return
			}
			log.V(2).Info("trusting the OIDC issuer's CA from the ConfigMap")
		},
		// Until the first list succeeds, a failure to read (RBAC, say) is
		// the reason OIDC tokens are refused.
		ReadFailed: func(err error) { o.Disable(err) },
	})
}

// loadOIDCCA makes o trust the CA in cm (nil: absent), or says why it
// cannot.
func loadOIDCCA(ctx context.Context, cm *corev1.ConfigMap, ref klog.ObjectRef, o *OIDC) error {
	if cm == nil {
		return fmt.Errorf("the CA ConfigMap %s does not exist", ref)
	}
	ca, ok := caOf(cm)
	if !ok {
		return fmt.Errorf("the CA ConfigMap %s has no key %s (in data or binaryData)", ref, OIDCCAKey)
	}
	if err := o.UseCA(ctx, ca); err != nil {
		return fmt.Errorf("key %s of the CA ConfigMap %s: %w", OIDCCAKey, ref, err)
	}
	return nil
}

// caOf returns the CA of the ConfigMap: data first, then binaryData (the API
// server keeps a key out of one of them).
func caOf(cm *corev1.ConfigMap) ([]byte, bool) {
	if s, ok := cm.Data[OIDCCAKey]; ok {
		return []byte(s), true
	}
	if b, ok := cm.BinaryData[OIDCCAKey]; ok {
		return b, true
	}
	return nil, false
}

// errNoCertificate is UseCA's refusal of a CA without a certificate.
var errNoCertificate = errors.New("holds no PEM certificate")
