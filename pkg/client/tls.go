package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/generated/clientset/versioned"
)

// NewTLSConfig returns the client side of the proxy-server's mutual TLS: it
// trusts only the CA certificates in caPEM, presents the client certificate
// certPEM with its private key keyPEM, and verifies that the proxy-server's
// certificate is valid for serverName. TLS 1.2 is the minimum version.
func NewTLSConfig(caPEM, certPEM, keyPEM []byte, serverName string) (*tls.Config, error) {
	if serverName == "" {
		return nil, errors.New("failed to build the proxy-server TLS configuration: the server name is empty")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("failed to build the proxy-server TLS configuration: the CA bundle holds no PEM certificate")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to load the proxy client certificate and key: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		ServerName:   serverName,
	}, nil
}

// TLSConfigFromSecrets reads, in the proxy-server namespace of mpc, the CA
// Secret (proxyv1alpha1.CASecretName) and the proxy-client Secret the addon-manager writes,
// and returns the TLS configuration of a proxy-server client: the result of
// NewTLSConfig with the server name "<inClusterServiceName>.<namespace>",
// which every proxy-server certificate carries whatever address the client
// dials. Unset MPC fields take their API defaults.
func TLSConfigFromSecrets(ctx context.Context, kubeClient kubernetes.Interface, mpc *proxyv1alpha1.ManagedProxyConfiguration) (*tls.Config, error) {
	if mpc == nil {
		return nil, errors.New("failed to build the proxy-server TLS configuration: the ManagedProxyConfiguration is nil")
	}
	mpc = defaulted(mpc)
	namespace := mpc.Spec.ProxyServer.Namespace
	caSecret, err := kubeClient.CoreV1().Secrets(namespace).Get(ctx, proxyv1alpha1.CASecretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to get Secret %s/%s: %w", namespace, proxyv1alpha1.CASecretName, err)
	}
	caPEM, err := secretValue(caSecret, proxyv1alpha1.CASecretKey)
	if err != nil {
		return nil, err
	}
	clientSecretName := mpc.Spec.Authentication.Dump.Secrets.SigningProxyClientSecretName
	clientSecret, err := kubeClient.CoreV1().Secrets(namespace).Get(ctx, clientSecretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to get Secret %s/%s: %w", namespace, clientSecretName, err)
	}
	certPEM, err := secretValue(clientSecret, corev1.TLSCertKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := secretValue(clientSecret, corev1.TLSPrivateKeyKey)
	if err != nil {
		return nil, err
	}
	cfg, err := NewTLSConfig(caPEM, certPEM, keyPEM, ProxyServerName(mpc))
	if err != nil {
		return nil, fmt.Errorf("failed to use Secrets %s/%s and %s/%s: %w", namespace, proxyv1alpha1.CASecretName, namespace, clientSecretName, err)
	}
	return cfg, nil
}

// TLSConfigForHub reads the ManagedProxyConfiguration mpcName from the hub
// that hubConfig reaches and returns TLSConfigFromSecrets for it. The
// identity of hubConfig needs get on that ManagedProxyConfiguration and on
// Secrets in its proxy-server namespace.
func TLSConfigForHub(ctx context.Context, hubConfig *rest.Config, mpcName string) (*tls.Config, error) {
	proxyClient, err := versioned.NewForConfig(hubConfig)
	if err != nil {
		return nil, fmt.Errorf("failed to create the ManagedProxyConfiguration client: %w", err)
	}
	mpc, err := proxyClient.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, mpcName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to get ManagedProxyConfiguration %s: %w", mpcName, err)
	}
	kubeClient, err := kubernetes.NewForConfig(hubConfig)
	if err != nil {
		return nil, fmt.Errorf("failed to create the Kubernetes client: %w", err)
	}
	return TLSConfigFromSecrets(ctx, kubeClient, mpc)
}

// ProxyServerName is the name the proxy-server certificates of mpc are
// verified against: "<inClusterServiceName>.<namespace>".
func ProxyServerName(mpc *proxyv1alpha1.ManagedProxyConfiguration) string {
	mpc = defaulted(mpc)
	return mpc.Spec.ProxyServer.InClusterServiceName + "." + mpc.Spec.ProxyServer.Namespace
}

// ProxyServerAddress is the in-cluster address of the proxy-servers of mpc,
// "<inClusterServiceName>.<namespace>:8090", for clients that run in the hub
// cluster. Clients outside it dial whatever exposes that Service to them.
func ProxyServerAddress(mpc *proxyv1alpha1.ManagedProxyConfiguration) string {
	return net.JoinHostPort(ProxyServerName(mpc), strconv.Itoa(int(proxyv1alpha1.ProxyServerPort)))
}

// defaulted returns a copy of mpc with the API defaults of unset fields.
func defaulted(mpc *proxyv1alpha1.ManagedProxyConfiguration) *proxyv1alpha1.ManagedProxyConfiguration {
	mpc = mpc.DeepCopy()
	mpc.Default()
	return mpc
}

// secretValue returns the non-empty value of key in secret.
func secretValue(secret *corev1.Secret, key string) ([]byte, error) {
	value := secret.Data[key]
	if len(value) == 0 {
		return nil, fmt.Errorf("failed to read Secret %s/%s: key %s is missing or empty", secret.Namespace, secret.Name, key)
	}
	return value, nil
}
