package carotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Names in the agents' ManifestWorks.
const (
	// addonName is the cluster-proxy addon (agentaddon.AddonName).
	addonName = "cluster-proxy"
	// agentCASecret holds the CA bundle the agents trust.
	agentCASecret = "cluster-proxy-ca"
	// agentServiceProxySecret holds the service-proxy's certificate.
	agentServiceProxySecret = "cluster-proxy-service-proxy-server-certificates"
	// reportStaleness: a report older than this is from a server that is
	// gone or hung.
	reportStaleness = 3 * healthreport.DefaultPeriod
)

var manifestWorkList = schema.GroupVersionKind{Group: "work.open-cluster-management.io", Version: "v1", Kind: "ManifestWorkList"}

// trustDistributed returns what the Trusting phase still waits for, or ""
// when every party trusts the next CA.
func (c *Controller) trustDistributed(ctx context.Context, a *signer.Authority) (string, error) {
	bundle := a.BundlePEM()
	next := identity.SignerOU(a.Next.Cert)
	return c.check(ctx, a, func(s *corev1.Secret, _ bool) string {
		if !bytes.Equal(s.Data[proxyv1alpha1.CASecretKey], bundle) {
			return "its ca.crt is not the CA bundle yet"
		}
		return ""
	}, func(r *healthreport.Report) string {
		if !slices.Contains(r.TrustedSigners, next) {
			return "it does not trust the new CA yet"
		}
		return ""
	}, func(manifests map[string]map[string]string) string {
		if manifests[agentCASecret]["ca.crt"] != base64.StdEncoding.EncodeToString(bundle) {
			return "its " + agentCASecret + " Secret does not hold the CA bundle yet"
		}
		return ""
	})
}

// reissued returns what the Signing phase still waits for, or "" when
// every certificate is issued by the new CA.
func (c *Controller) reissued(ctx context.Context, a *signer.Authority) (string, error) {
	ca := a.Signing.Cert
	ou := identity.SignerOU(ca)
	if key := c.ServiceProxyCertSecret; key.Name != "" {
		s := &corev1.Secret{}
		err := c.APIReader.Get(ctx, key, s)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return "", fmt.Errorf("failed to get Secret %s: %w", key, err)
		default:
			if why := issuedBy(s.Data[corev1.TLSCertKey], ca); why != "" {
				return fmt.Sprintf("Secret %s: %s", key, why), nil
			}
		}
	}
	return c.check(ctx, a, func(s *corev1.Secret, leaf bool) string {
		if !leaf {
			return ""
		}
		return issuedBy(s.Data[corev1.TLSCertKey], ca)
	}, func(r *healthreport.Report) string {
		if !slices.Equal(r.ServingSigners, []string{ou}) {
			return fmt.Sprintf("it serves certificates of %v, not only of the new CA", r.ServingSigners)
		}
		for _, cl := range r.Clusters {
			if cl.Certificate != nil && cl.Certificate.Signer != ou {
				return fmt.Sprintf("the proxy-agent of %s holds a certificate of another CA (serial %s)", cl.Name, cl.Certificate.Serial)
			}
		}
		return ""
	}, func(manifests map[string]map[string]string) string {
		data, ok := manifests[agentServiceProxySecret]
		if !ok {
			return ""
		}
		certPEM, err := base64.StdEncoding.DecodeString(data[corev1.TLSCertKey])
		if err != nil {
			return "its service-proxy certificate is not base64"
		}
		if why := issuedBy(certPEM, ca); why != "" {
			return "its service-proxy certificate: " + why
		}
		return ""
	})
}

// issuedBy says why certPEM is not issued by ca, or "".
func issuedBy(certPEM []byte, ca *x509.Certificate) string {
	cert, err := certs.ParseCertificate(certPEM)
	if err != nil {
		return "no certificate: " + err.Error()
	}
	if cert.CheckSignatureFrom(ca) != nil {
		return fmt.Sprintf("its certificate (serial %s) is not issued by the new CA yet", cert.SerialNumber.Text(16))
	}
	return ""
}

// check applies a phase's tests to every ManagedProxyConfiguration's hub
// Secrets (secret: leaf says whether it holds a certificate besides
// ca.crt) and fresh health reports, and to every online cluster's applied
// agent ManifestWork (work: the data of its Secrets, by name). It returns
// the first thing not done yet.
func (c *Controller) check(ctx context.Context, a *signer.Authority,
	secret func(s *corev1.Secret, leaf bool) string,
	report func(r *healthreport.Report) string,
	work func(manifests map[string]map[string]string) string,
) (string, error) {
	mpcs := &proxyv1alpha1.ManagedProxyConfigurationList{}
	if err := c.Client.List(ctx, mpcs); err != nil {
		return "", fmt.Errorf("failed to list ManagedProxyConfigurations: %w", err)
	}
	for i := range mpcs.Items {
		mpc := &mpcs.Items[i]
		ns := mpc.Spec.ProxyServer.Namespace
		keys := []client.ObjectKey{{Namespace: ns, Name: proxyv1alpha1.CASecretName}}
		keys = append(keys, c.CertificateSecrets(mpc)...)
		for i, key := range keys {
			s := &corev1.Secret{}
			if err := c.Client.Get(ctx, key, s); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Sprintf("Secret %s does not exist yet", key), nil
				}
				return "", fmt.Errorf("failed to get Secret %s: %w", key, err)
			}
			if why := secret(s, i > 0); why != "" {
				return fmt.Sprintf("Secret %s: %s", key, why), nil
			}
		}
		why, err := c.checkReports(ctx, a, mpc, report)
		if why != "" || err != nil {
			return why, err
		}
	}
	return c.checkWorks(ctx, work)
}

// checkReports applies test to the reports of mpc's proxy-servers written
// since the phase began; at least as many as its replicas must be there.
func (c *Controller) checkReports(ctx context.Context, a *signer.Authority, mpc *proxyv1alpha1.ManagedProxyConfiguration, test func(*healthreport.Report) string) (string, error) {
	ns := mpc.Spec.ProxyServer.Namespace
	cms := &corev1.ConfigMapList{}
	if err := c.Client.List(ctx, cms, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: healthreport.Selector()}); err != nil {
		return "", fmt.Errorf("failed to list the health reports in %s: %w", ns, err)
	}
	now := c.Clock.Now()
	fresh := 0
	for i := range cms.Items {
		r, err := healthreport.FromConfigMap(&cms.Items[i])
		if err != nil || !r.UpdateTime.After(a.PhaseSince) || now.Sub(r.UpdateTime) > reportStaleness {
			continue
		}
		fresh++
		if why := test(&r); why != "" {
			return fmt.Sprintf("proxy-server %s (ConfigMap %s/%s): %s", r.ServerID, ns, cms.Items[i].Name, why), nil
		}
	}
	if want := int(mpc.Spec.ProxyServer.Replicas); fresh < want {
		return fmt.Sprintf("%d of the %d proxy-servers of ManagedProxyConfiguration %s reported since the phase began", fresh, want, mpc.Name), nil
	}
	return "", nil
}

// checkWorks applies test to the agent ManifestWorks of every cluster
// whose addon is installed and which is online, and requires them applied.
func (c *Controller) checkWorks(ctx context.Context, test func(map[string]map[string]string) string) (string, error) {
	addons := &addonapiv1beta1.ManagedClusterAddOnList{}
	if err := c.Client.List(ctx, addons); err != nil {
		return "", fmt.Errorf("failed to list ManagedClusterAddOns: %w", err)
	}
	for i := range addons.Items {
		if addons.Items[i].Name != addonName {
			continue
		}
		cluster := addons.Items[i].Namespace
		mc := &clusterv1.ManagedCluster{}
		if err := c.Client.Get(ctx, client.ObjectKey{Name: cluster}, mc); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return "", fmt.Errorf("failed to get ManagedCluster %s: %w", cluster, err)
		}
		if !meta.IsStatusConditionTrue(mc.Status.Conditions, clusterv1.ManagedClusterConditionAvailable) {
			continue // offline: it catches up once back
		}
		why, err := c.checkClusterWorks(ctx, cluster, test)
		if why != "" || err != nil {
			return why, err
		}
	}
	return "", nil
}

// checkClusterWorks checks the agent ManifestWorks of one cluster.
func (c *Controller) checkClusterWorks(ctx context.Context, cluster string, test func(map[string]map[string]string) string) (string, error) {
	works := &unstructured.UnstructuredList{}
	works.SetGroupVersionKind(manifestWorkList)
	if err := c.APIReader.List(ctx, works, client.InNamespace(cluster), client.MatchingLabels{addonapiv1beta1.AddonLabelKey: addonName}); err != nil {
		return "", fmt.Errorf("failed to list the ManifestWorks of cluster %s: %w", cluster, err)
	}
	secrets := map[string]map[string]string{}
	for _, w := range works.Items {
		ref := cluster + "/" + w.GetName()
		if why := applied(&w); why != "" {
			return fmt.Sprintf("ManifestWork %s: %s", ref, why), nil
		}
		manifests, _, _ := unstructured.NestedSlice(w.Object, "spec", "workload", "manifests")
		for _, m := range manifests {
			obj, ok := m.(map[string]any)
			if !ok || obj["kind"] != "Secret" {
				continue
			}
			name, _, _ := unstructured.NestedString(obj, "metadata", "name")
			data, _, _ := unstructured.NestedStringMap(obj, "data")
			secrets[name] = data
		}
	}
	if len(works.Items) == 0 {
		return "no agent ManifestWork in cluster namespace " + cluster + " yet", nil
	}
	if why := test(secrets); why != "" {
		return "the agents of cluster " + cluster + ": " + why, nil
	}
	return "", nil
}

// applied says why a ManifestWork's current generation is not applied, or
// "".
func applied(w *unstructured.Unstructured) string {
	conditions, _, _ := unstructured.NestedSlice(w.Object, "status", "conditions")
	for _, raw := range conditions {
		cond, ok := raw.(map[string]any)
		if !ok || cond["type"] != "Applied" {
			continue
		}
		observed, _, _ := unstructured.NestedInt64(cond, "observedGeneration")
		if cond["status"] != string(metav1.ConditionTrue) || observed != w.GetGeneration() {
			return fmt.Sprintf("generation %d is not applied yet", w.GetGeneration())
		}
		return ""
	}
	return "not applied yet"
}
