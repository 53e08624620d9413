package client

import (
	"crypto/tls"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

func TestNewTLSConfig(t *testing.T) {
	pki := newTestPKI(t)
	other := newTestPKI(t)
	tests := []struct {
		name       string
		ca         []byte
		cert, key  []byte
		serverName string
		wantErr    string
	}{
		{name: "valid", ca: pki.caPEM, cert: pki.clientCertPEM, key: pki.clientKeyPEM, serverName: testServerName},
		{name: "empty server name", ca: pki.caPEM, cert: pki.clientCertPEM, key: pki.clientKeyPEM, wantErr: "server name is empty"},
		{name: "no CA", cert: pki.clientCertPEM, key: pki.clientKeyPEM, serverName: testServerName, wantErr: "no PEM certificate"},
		{name: "CA not PEM", ca: []byte("not a certificate"), cert: pki.clientCertPEM, key: pki.clientKeyPEM, serverName: testServerName, wantErr: "no PEM certificate"},
		{name: "key of another certificate", ca: pki.caPEM, cert: pki.clientCertPEM, key: other.clientKeyPEM, serverName: testServerName, wantErr: "failed to load the proxy client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg, err := NewTLSConfig(tt.ca, tt.cert, tt.key, tt.serverName)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cfg.ServerName).To(Equal(tt.serverName))
			g.Expect(cfg.MinVersion).To(BeEquivalentTo(tls.VersionTLS12))
			g.Expect(cfg.Certificates).To(HaveLen(1))
			g.Expect(cfg.RootCAs).NotTo(BeNil())
			g.Expect(cfg.InsecureSkipVerify).To(BeFalse())
		})
	}
}

func TestTLSConfigFromSecrets(t *testing.T) {
	pki := newTestPKI(t)
	caSecret := func(ns string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: proxyv1alpha1.CASecretName},
			Data:       map[string][]byte{proxyv1alpha1.CASecretKey: pki.caPEM},
		}
	}
	clientSecret := func(ns, name string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: pki.clientCertPEM, corev1.TLSPrivateKeyKey: pki.clientKeyPEM},
		}
	}
	customMPC := &proxyv1alpha1.ManagedProxyConfiguration{Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
		ProxyServer: proxyv1alpha1.ManagedProxyConfigurationProxyServer{Namespace: "proxy", InClusterServiceName: "entry"},
		Authentication: proxyv1alpha1.ManagedProxyConfigurationAuthentication{Dump: proxyv1alpha1.ManagedProxyConfigurationCertificateDump{
			Secrets: proxyv1alpha1.CertificateSigningSecrets{SigningProxyClientSecretName: "my-client"},
		}},
	}}
	tests := []struct {
		name           string
		mpc            *proxyv1alpha1.ManagedProxyConfiguration
		objects        []runtime.Object
		wantServerName string
		wantErr        string
		wantNotFound   bool
	}{
		{
			name:           "defaults",
			mpc:            &proxyv1alpha1.ManagedProxyConfiguration{},
			objects:        []runtime.Object{caSecret(proxyv1alpha1.DefaultProxyServerNamespace), clientSecret(proxyv1alpha1.DefaultProxyServerNamespace, proxyv1alpha1.DefaultProxyClientSecretName)},
			wantServerName: "proxy-entrypoint.open-cluster-management-cluster-proxy",
		},
		{
			name:           "names from the MPC",
			mpc:            customMPC,
			objects:        []runtime.Object{caSecret("proxy"), clientSecret("proxy", "my-client")},
			wantServerName: "entry.proxy",
		},
		{
			name:         "CA Secret missing",
			mpc:          customMPC,
			objects:      []runtime.Object{clientSecret("proxy", "my-client")},
			wantErr:      "failed to get Secret proxy/proxy-server-ca",
			wantNotFound: true,
		},
		{
			name:         "client Secret in another namespace",
			mpc:          customMPC,
			objects:      []runtime.Object{caSecret("proxy"), clientSecret(proxyv1alpha1.DefaultProxyServerNamespace, "my-client")},
			wantErr:      "failed to get Secret proxy/my-client",
			wantNotFound: true,
		},
		{
			name: "client key missing",
			mpc:  customMPC,
			objects: []runtime.Object{caSecret("proxy"), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: "proxy", Name: "my-client"},
				Data:       map[string][]byte{corev1.TLSCertKey: pki.clientCertPEM},
			}},
			wantErr: "key tls.key is missing or empty",
		},
		{
			name:    "nil MPC",
			wantErr: "ManagedProxyConfiguration is nil",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			kubeClient := fake.NewClientset(tt.objects...)
			cfg, err := TLSConfigFromSecrets(t.Context(), kubeClient, tt.mpc)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(apierrors.IsNotFound(err)).To(Equal(tt.wantNotFound))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cfg.ServerName).To(Equal(tt.wantServerName))
			g.Expect(cfg.Certificates).To(HaveLen(1))
		})
	}
}

func TestProxyServerAddress(t *testing.T) {
	tests := []struct {
		name string
		spec proxyv1alpha1.ManagedProxyConfigurationProxyServer
		want string
	}{
		{name: "defaults", want: "proxy-entrypoint.open-cluster-management-cluster-proxy:8090"},
		{name: "namespace", spec: proxyv1alpha1.ManagedProxyConfigurationProxyServer{Namespace: "proxy"}, want: "proxy-entrypoint.proxy:8090"},
		{name: "service and namespace", spec: proxyv1alpha1.ManagedProxyConfigurationProxyServer{Namespace: "proxy", InClusterServiceName: "entry"}, want: "entry.proxy:8090"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			mpc := &proxyv1alpha1.ManagedProxyConfiguration{Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{ProxyServer: tt.spec}}
			g.Expect(ProxyServerAddress(mpc)).To(Equal(tt.want))
		})
	}
}
