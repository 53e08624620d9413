package proxyconfig

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

func testMPC() *proxyv1alpha1.ManagedProxyConfiguration {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	mpc.Name = "cluster-proxy"
	mpc.Spec.ProxyServer = proxyv1alpha1.ManagedProxyConfigurationProxyServer{
		Image: "img", Replicas: 3, InClusterServiceName: "proxy-entrypoint", Namespace: "ns",
	}
	mpc.Spec.Authentication.Dump.Secrets = proxyv1alpha1.CertificateSigningSecrets{
		SigningProxyServerSecretName: "proxy-server", SigningProxyClientSecretName: "proxy-client", SigningAgentServerSecretName: "agent-server",
	}
	return mpc
}

func TestNormalizeSANs(t *testing.T) {
	g := NewWithT(t)
	g.Expect(normalizeSANs([]string{"b.example.com", " 127.0.0.1", "B.example.com", "", "::ffff:127.0.0.1", "a"})).
		To(Equal([]string{"127.0.0.1", "a", "b.example.com"}))
}

func TestDesiredCertificates(t *testing.T) {
	g := NewWithT(t)
	mpc := testMPC()
	mpc.Spec.Authentication.Signer.SelfSigned = &proxyv1alpha1.SelfSignedSigner{AdditionalSANs: []string{"extra.example.com"}}

	got := desiredCertificates(mpc, []string{"198.18.0.1"})
	g.Expect(got).To(HaveLen(3))
	byName := map[string]certificate{}
	for _, c := range got {
		byName[c.secretName] = c
	}
	want := []string{"127.0.0.1", "198.18.0.1", "extra.example.com", "localhost", "proxy-entrypoint.ns", "proxy-entrypoint.ns.svc"}
	for _, n := range []string{"proxy-server", "agent-server", "proxy-client"} {
		g.Expect(byName[n].spec.SANs).To(Equal(want), n)
	}
	g.Expect(byName["proxy-client"].spec.Usage).To(Equal(certs.UsageClient))
	g.Expect(byName["agent-server"].condition).To(Equal(proxyv1alpha1.ConditionTypeAgentServerSecretSigned))

	mpc.Spec.UserServer = &proxyv1alpha1.UserServerConfiguration{AdditionalSANs: []string{"users.example.com"}}
	got = desiredCertificates(mpc, nil)
	g.Expect(got).To(HaveLen(4))
	g.Expect(got[3].secretName).To(Equal(UserServerSecretName))
	g.Expect(got[3].spec.SANs).To(ContainElements("users.example.com", "cluster-proxy-addon-user.ns.svc.cluster.local"))
}

func TestCertificateSecrets(t *testing.T) {
	g := NewWithT(t)
	mpc := testMPC()
	mpc.Spec.Authentication.Dump.Secrets.SigningProxyClientSecretName = "my-client"
	g.Expect(CertificateSecrets(mpc)).To(Equal([]CertificateSecret{
		{Certificate: "proxy-server", Namespace: "ns", Name: "proxy-server"},
		{Certificate: "agent-server", Namespace: "ns", Name: "agent-server"},
		{Certificate: "proxy-client", Namespace: "ns", Name: "my-client"},
	}))
	mpc.Spec.UserServer = &proxyv1alpha1.UserServerConfiguration{}
	g.Expect(CertificateSecrets(mpc)).To(ContainElement(CertificateSecret{Certificate: "user-server", Namespace: "ns", Name: UserServerSecretName}))
}

func TestArgsHonourDeployPortsAndOrder(t *testing.T) {
	g := NewWithT(t)
	mpc := testMPC()
	mpc.Spec.ProxyServer.AdditionalArgs = []string{"--server-port=9999"}
	mpc.Spec.Deploy = &proxyv1alpha1.ManagedProxyConfigurationDeploy{Ports: proxyv1alpha1.ManagedProxyConfigurationDeployPorts{AgentServer: 18091}}
	r := &render{mpc: mpc, tlsArgs: []string{"--tls-min-version=VersionTLS13"}}

	args := r.args()
	g.Expect(args).To(ContainElements("--server-port=8090", "--agent-port=18091", "--health-port=8092", "--admin-port=8095"))
	// TLS profile after ours, additionalArgs last so they win.
	g.Expect(args[len(args)-2:]).To(Equal([]string{"--tls-min-version=VersionTLS13", "--server-port=9999"}))

	svc := r.service()
	g.Expect(*svc.Spec.Ports[1].Port).To(BeEquivalentTo(8091))
	g.Expect(svc.Spec.Ports[1].TargetPort.IntVal).To(BeEquivalentTo(18091))
}

func TestLoadBalancerServicePorts(t *testing.T) {
	tests := []struct {
		port      int32
		wantNames []string
	}{
		{port: 0, wantNames: []string{"proxy-server", "agent-server"}},
		{port: 443, wantNames: []string{"proxy-server", "agent-server"}},
		{port: 8090, wantNames: []string{"agent-server"}},
	}
	for _, tt := range tests {
		g := NewWithT(t)
		mpc := testMPC()
		mpc.Spec.ProxyServer.Entrypoint = &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
			Type: proxyv1alpha1.EntryPointTypeLoadBalancerService, Port: tt.port,
		}
		svc := (&render{mpc: mpc}).loadBalancerService()
		var names []string
		for _, p := range svc.Spec.Ports {
			names = append(names, *p.Name)
		}
		g.Expect(names).To(Equal(tt.wantNames), "port %d", tt.port)
		g.Expect(*svc.Name).To(Equal("proxy-agent-entrypoint"))
	}
}

func TestProfileArgs(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string]string
		absent  bool
		want    []string
		wantErr []string
	}{
		{name: "no ConfigMap: the defaults the existing addon passes", absent: true, want: []string{"--tls-min-version=VersionTLS12"}},
		{name: "empty ConfigMap: the defaults", data: map[string]string{}, want: []string{"--tls-min-version=VersionTLS12"}},
		{name: "minimum version only", data: map[string]string{"minTLSVersion": "VersionTLS13"}, want: []string{"--tls-min-version=VersionTLS13"}},
		{
			name: "cipher suites only: the default minimum version with them",
			data: map[string]string{"cipherSuites": " TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 , TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"},
			want: []string{"--tls-min-version=VersionTLS12", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
		},
		{
			name: "both",
			data: map[string]string{"minTLSVersion": "VersionTLS11", "cipherSuites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
			want: []string{"--tls-min-version=VersionTLS11", "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
		},
		{
			name: "sdk-go's alias spelling is passed as the proxy-server spells it",
			data: map[string]string{"minTLSVersion": "TLSv1.3"},
			want: []string{"--tls-min-version=VersionTLS13"},
		},
		{name: "blank values: the defaults", data: map[string]string{"minTLSVersion": " ", "cipherSuites": " , "}, want: []string{"--tls-min-version=VersionTLS12"}},
		{name: "unknown version", data: map[string]string{"minTLSVersion": "TLS9000"}, wantErr: []string{"ns/ocm-tls-profile", "minTLSVersion", `"TLS9000"`}},
		{
			name:    "unknown cipher suite",
			data:    map[string]string{"cipherSuites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_NOPE"},
			wantErr: []string{"cipherSuites", `"TLS_NOPE"`, "unknown cipher suite"},
		},
		{
			name:    "insecure cipher suite (the proxy-server would refuse to start)",
			data:    map[string]string{"cipherSuites": "TLS_RSA_WITH_RC4_128_SHA"},
			wantErr: []string{"cipherSuites", `"TLS_RSA_WITH_RC4_128_SHA"`, "insecure"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			var cm *corev1.ConfigMap
			if !tt.absent {
				cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: TLSProfileConfigMapName}, Data: tt.data}
			}
			got, err := profileArgs(cm)
			if len(tt.wantErr) > 0 {
				g.Expect(err).To(HaveOccurred())
				for _, s := range tt.wantErr {
					g.Expect(err.Error()).To(ContainSubstring(s))
				}
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}
