package agentaddon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"open-cluster-management.io/addon-framework/pkg/agent"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
)

// AddonName is the name of the cluster-proxy addon.
const AddonName = "cluster-proxy"

// AgentCertificateValidity is the lifetime of signed proxy-agent
// certificates.
const AgentCertificateValidity = 180 * 24 * time.Hour

// klusterletUserPrefix starts the hub user of every klusterlet:
// system:open-cluster-management:<cluster>:<agent id>.
const klusterletUserPrefix = "system:open-cluster-management:"

// CALoader returns the CA that signs proxy-agent certificates.
type CALoader interface {
	LoadOrCreate(ctx context.Context) (*certs.CA, error)
}

// Registration decides what the agents of a managed cluster register with
// the hub as, approves their certificate requests and signs the proxy-agent
// ones.
type Registration struct {
	// CA signs proxy-agent certificates; its hash is part of their subject.
	CA CALoader
	// Clock dates signed certificates.
	Clock clock.PassiveClock
}

// Configurations returns the two registrations of a cluster's agents: the
// addon-agent's hub client (signed by the hub's kube-apiserver-client
// signer) and the proxy-agent's certificate (signed by us).
func (r *Registration) Configurations(ctx context.Context, cluster *clusterv1.ManagedCluster, _ *addonapiv1beta1.ManagedClusterAddOn) ([]agent.RegistrationConfig, error) {
	ca, err := r.CA.LoadOrCreate(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to load the CA for the registration of cluster %s: %w", cluster.Name, err)
	}
	return []agent.RegistrationConfig{
		&agent.KubeClientRegistration{User: identity.AddonAgentUser, Groups: []string{identity.AgentGroup}},
		&agent.CustomSignerRegistration{
			SignerName:        identity.SignerName,
			User:              identity.ProxyAgentUser,
			Groups:            []string{identity.AgentGroup},
			OrganizationUnits: []string{identity.SignerOU(ca.Cert), identity.ClusterOU(cluster.Name)},
		},
	}, nil
}

// Approve decides whether csr may be approved and returns why not, or ""
// when it may: the cluster is accepted by the hub, the request comes from
// that cluster's own klusterlet (exact match, no prefixes), and it asks for
// exactly the subject and usages the registration defines for that cluster.
// The decision is logged; the caller reports a refusal where users see it.
func (r *Registration) Approve(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonapiv1beta1.ManagedClusterAddOn, csr *certificatesv1.CertificateSigningRequest) (refusal string) {
	if _, why := r.verify(ctx, cluster, addon, csr); why != "" {
		klog.FromContext(ctx).Info("not approving certificate request", "csr", klog.KObj(csr), "cluster", cluster.Name, "reason", why)
		return why
	}
	klog.FromContext(ctx).V(2).Info("approving certificate request", "csr", klog.KObj(csr), "cluster", cluster.Name)
	return ""
}

// RefusedError is returned by Sign for a request it will never sign.
type RefusedError struct {
	// Request is the name of the CertificateSigningRequest.
	Request string
	// Reason says why.
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing to sign certificate request %s: %s", e.Request, e.Reason)
}

// Sign signs an approved proxy-agent csr after verifying it again: only our
// signer name, only the subject and usages the registration defines, with
// our lifetime. Anything else stays unsigned with a *RefusedError saying why;
// other errors (loading the CA) are worth retrying.
func (r *Registration) Sign(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonapiv1beta1.ManagedClusterAddOn, csr *certificatesv1.CertificateSigningRequest) ([]byte, error) {
	if csr.Spec.SignerName != identity.SignerName {
		return nil, &RefusedError{Request: csr.Name, Reason: fmt.Sprintf("signer %q is not %s", csr.Spec.SignerName, identity.SignerName)}
	}
	req, why := r.verify(ctx, cluster, addon, csr)
	if why != "" {
		klog.FromContext(ctx).Info("not signing certificate request", "csr", klog.KObj(csr), "cluster", cluster.Name, "reason", why)
		return nil, &RefusedError{Request: csr.Name, Reason: why}
	}
	ca, err := r.CA.LoadOrCreate(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to load the CA to sign certificate request %s: %w", csr.Name, err)
	}
	// The subject is the verified request's, in the request's order, so the
	// agent finds exactly what it asked for and does not ask again.
	subject := pkix.Name{
		CommonName:         req.Subject.CommonName,
		Organization:       req.Subject.Organization,
		OrganizationalUnit: req.Subject.OrganizationalUnit,
	}
	certPEM, err := ca.Sign(subject, req.PublicKey, certs.UsageClient, AgentCertificateValidity, r.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("failed to sign certificate request %s: %w", csr.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("signed proxy-agent certificate", "csr", klog.KObj(csr), "cluster", cluster.Name)
	return certPEM, nil
}

// verify returns the parsed request, or why csr must not be approved or
// signed for cluster.
func (r *Registration) verify(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonapiv1beta1.ManagedClusterAddOn, csr *certificatesv1.CertificateSigningRequest) (*x509.CertificateRequest, string) {
	if !cluster.Spec.HubAcceptsClient {
		return nil, "the hub does not accept cluster " + cluster.Name + " (spec.hubAcceptsClient is false)"
	}
	if addon == nil || addon.Name != AddonName || addon.Namespace != cluster.Name {
		return nil, "the request is not for the " + AddonName + " addon of cluster " + cluster.Name
	}
	if got := csr.Labels[clusterv1.ClusterNameLabelKey]; got != cluster.Name {
		return nil, fmt.Sprintf("label %s is %q, not %q", clusterv1.ClusterNameLabelKey, got, cluster.Name)
	}
	if why := checkRequester(cluster.Name, csr.Spec.Username, csr.Spec.Groups); why != "" {
		return nil, why
	}
	req, why := parseRequest(csr.Spec.Request)
	if why != "" {
		return nil, why
	}

	configs, err := r.Configurations(ctx, cluster, addon)
	if err != nil {
		return nil, err.Error()
	}
	var want *addonapiv1beta1.Subject
	for _, c := range configs {
		api := c.RegistrationAPI()
		switch {
		case api.Type == addonapiv1beta1.KubeClient && csr.Spec.SignerName == certificatesv1.KubeAPIServerClientSignerName:
			want = &addonapiv1beta1.Subject{BaseSubject: api.KubeClient.Subject.BaseSubject}
		case api.Type == addonapiv1beta1.CustomSigner && csr.Spec.SignerName == api.CustomSigner.SignerName:
			want = &api.CustomSigner.Subject
		}
	}
	if want == nil {
		return nil, fmt.Sprintf("signer %q is not one the %s addon registers with", csr.Spec.SignerName, AddonName)
	}
	if why := checkSubject(req, want); why != "" {
		return nil, why
	}
	if why := checkUsages(csr.Spec.Usages); why != "" {
		return nil, why
	}
	return req, ""
}

// RegistrationDNSName is the only subject alternative name a registration
// request may ask for: OCM's registration agent puts
// <addon>.addon.open-cluster-management.io into every addon CSR.
const RegistrationDNSName = AddonName + ".addon.open-cluster-management.io"

// checkRequester verifies that the request was made by cluster's own
// klusterlet: user system:open-cluster-management:<cluster>:<agent> with the
// cluster's group. The cluster part must match exactly.
func checkRequester(cluster, username string, groups []string) string {
	rest, ok := strings.CutPrefix(username, klusterletUserPrefix)
	requester, _, hasAgent := strings.Cut(rest, ":")
	if !ok || !hasAgent || requester != cluster {
		return fmt.Sprintf("requester %q is not the klusterlet of cluster %s", username, cluster)
	}
	if !slices.Contains(groups, klusterletUserPrefix+cluster) {
		return fmt.Sprintf("requester %q is not in group %s", username, klusterletUserPrefix+cluster)
	}
	return ""
}

func parseRequest(data []byte) (*x509.CertificateRequest, string) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, "the request is not a PEM CERTIFICATE REQUEST"
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "the request does not parse: " + err.Error()
	}
	if err := req.CheckSignature(); err != nil {
		return nil, "the request's signature does not verify: " + err.Error()
	}
	switch key := req.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() && key.Curve != elliptic.P384() {
			return nil, "the request's ECDSA key is not on curve P-256 or P-384"
		}
	case *rsa.PublicKey:
		if key.N.BitLen() < 2048 {
			return nil, fmt.Sprintf("the request's RSA key has %d bits, fewer than 2048", key.N.BitLen())
		}
	default:
		return nil, fmt.Sprintf("the request's key type %T is not accepted", req.PublicKey)
	}
	// OCM's registration agent names the addon in one DNS SAN; the signed
	// certificate carries no SANs (Sign copies only the key).
	extraDNS := len(req.DNSNames) > 1 || (len(req.DNSNames) == 1 && req.DNSNames[0] != RegistrationDNSName)
	if extraDNS || len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
		return nil, "the request asks for subject alternative names other than " + RegistrationDNSName
	}
	return req, ""
}

// checkSubject verifies that the request's subject is exactly want: same
// common name, same organizations and organizational units (as sets), and
// nothing else.
func checkSubject(req *x509.CertificateRequest, want *addonapiv1beta1.Subject) string {
	s := req.Subject
	if s.CommonName != want.User {
		return fmt.Sprintf("the request's common name %q is not %q", s.CommonName, want.User)
	}
	if !sameSet(s.Organization, want.Groups) {
		return fmt.Sprintf("the request's organizations %v are not %v", s.Organization, want.Groups)
	}
	if !sameSet(s.OrganizationalUnit, want.OrganizationUnits) {
		return fmt.Sprintf("the request's organizational units %v are not %v", s.OrganizationalUnit, want.OrganizationUnits)
	}
	if n := 1 + len(s.Organization) + len(s.OrganizationalUnit); len(s.Names) != n {
		return "the request's subject has attributes beyond common name, organizations and organizational units"
	}
	return ""
}

// checkUsages allows a client certificate's usages only.
func checkUsages(usages []certificatesv1.KeyUsage) string {
	allowed := []certificatesv1.KeyUsage{
		certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth,
	}
	for _, u := range usages {
		if !slices.Contains(allowed, u) {
			return fmt.Sprintf("the request asks for usage %q; only client certificates are issued", u)
		}
	}
	if !slices.Contains(usages, certificatesv1.UsageClientAuth) {
		return "the request does not ask for client auth"
	}
	return ""
}

func sameSet(a, b []string) bool {
	as, bs := slices.Clone(a), slices.Clone(b)
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(slices.Compact(as), slices.Compact(bs))
}
