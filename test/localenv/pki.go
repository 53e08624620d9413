package localenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// pkiValidity is how long the environment's certificates last.
const pkiValidity = 365 * 24 * time.Hour

// KubeletClientName is the common name of the kube-apiserver's client
// certificate for the kubelet API, the only client the kubelet stand-in
// admits.
const KubeletClientName = "kube-apiserver-kubelet-client"

// PKI is where a cluster's certificates and keys are.
type PKI struct {
	Dir string
}

// File names inside a PKI directory.
const (
	caCert            = "ca.crt"
	caKey             = "ca.key"
	apiserverCert     = "apiserver.crt"
	apiserverKey      = "apiserver.key"
	adminCert         = "admin.crt"
	adminKey          = "admin.key"
	saKey             = "sa.key"
	saPub             = "sa.pub"
	kubeletCert       = "kubelet.crt"
	kubeletKey        = "kubelet.key"
	kubeletClientCert = "kubelet-client.crt"
	kubeletClientKey  = "kubelet-client.key"
	webhookCert       = "webhook/tls.crt"
	webhookKey        = "webhook/tls.key"
)

// Path returns the path of a PKI file.
func (p PKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// NewPKI creates a cluster's CA, the kube-apiserver's serving certificate
// (for sans plus the kubernetes Service names), an admin client
// certificate (group system:masters), the kubelet stand-in's serving
// certificate (for sans) and the kube-apiserver's client certificate for it
// (KubeletClientName), the service-account signing key and,
// for the hub, the OCM addon webhook's serving certificate.
func NewPKI(dir, cluster string, sans []string, webhook bool) (PKI, error) {
	p := PKI{Dir: dir}
	now := time.Now()
	ca, err := certs.NewCA(cluster+"-ca", now, pkiValidity)
	if err != nil {
		return p, err
	}
	files := map[string][]byte{caCert: ca.CertPEM, caKey: ca.KeyPEM}
	leaves := map[string]certs.LeafSpec{
		"apiserver": {
			CommonName: "kube-apiserver",
			SANs: append([]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local", "localhost", "127.0.0.1", "198.19.0.1"}, sans...),
			Usage: certs.UsageServing, Validity: pkiValidity,
		},
		"admin":          {CommonName: "admin", Organizations: []string{"system:masters"}, Usage: certs.UsageClient, Validity: pkiValidity},
		"kubelet":        {CommonName: cluster + "-kubelet", SANs: sans, Usage: certs.UsageServing, Validity: pkiValidity},
		"kubelet-client": {CommonName: KubeletClientName, Usage: certs.UsageClient, Validity: pkiValidity},
	}
	if webhook {
		leaves["webhook/tls"] = certs.LeafSpec{CommonName: "addon-webhook", SANs: []string{"127.0.0.1", "localhost"},
			Usage: certs.UsageServing, Validity: pkiValidity}
	}
	for name, spec := range leaves {
		certPEM, keyPEM, err := ca.Issue(spec, now)
		if err != nil {
			return p, fmt.Errorf("issue %s certificate of %s: %w", name, cluster, err)
		}
		files[name+".crt"], files[name+".key"] = certPEM, keyPEM
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate service-account key of %s: %w", cluster, err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return p, fmt.Errorf("encode service-account key of %s: %w", cluster, err)
	}
	files[saKey] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return p, fmt.Errorf("encode service-account public key of %s: %w", cluster, err)
	}
	files[saPub] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	for name, data := range files {
		if err := writeFile(p.Path(name), data, 0o600); err != nil {
			return p, err
		}
	}
	return p, nil
}

// WriteKubeconfig writes an admin kubeconfig for server, authenticated
// with the PKI's admin certificate; serverName, when set, is the name the
// server certificate is checked against.
func (p PKI) WriteKubeconfig(path, cluster, server, serverName string) error {
	ca, err := os.ReadFile(p.Path(caCert))
	if err != nil {
		return fmt.Errorf("read CA of %s: %w", cluster, err)
	}
	cert, err := os.ReadFile(p.Path(adminCert))
	if err != nil {
		return fmt.Errorf("read admin certificate of %s: %w", cluster, err)
	}
	key, err := os.ReadFile(p.Path(adminKey))
	if err != nil {
		return fmt.Errorf("read admin key of %s: %w", cluster, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca, TLSServerName: serverName}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: "admin"}
	cfg.CurrentContext = cluster
	return writeKubeconfig(path, cfg)
}

// WriteTokenKubeconfig writes a kubeconfig that authenticates with a bearer
// token (the managed clusters' bootstrap kubeconfig).
func (p PKI) WriteTokenKubeconfig(path, cluster, server, token string) error {
	ca, err := os.ReadFile(p.Path(caCert))
	if err != nil {
		return fmt.Errorf("read CA of %s: %w", cluster, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["bootstrap"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: "bootstrap"}
	cfg.CurrentContext = cluster
	return writeKubeconfig(path, cfg)
}

func writeKubeconfig(path string, cfg *clientcmdapi.Config) error {
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode kubeconfig %s: %w", path, err)
	}
	return writeFile(path, data, 0o600)
}

// writeFile writes data to path, creating its directory.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory of %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
