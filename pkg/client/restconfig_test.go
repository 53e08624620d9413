package client

import (
	"net/http"
	"net/url"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
)

func TestRESTConfigForCluster(t *testing.T) {
	pki := newTestPKI(t)
	managedCA := newTestPKI(t).caPEM
	dialer, err := NewDialer("127.0.0.1:8090", pki.clientTLS(t))
	if err != nil {
		t.Fatalf("failed to create the dialer: %v", err)
	}
	t.Cleanup(func() { _ = dialer.Close() })

	base := func() *rest.Config {
		return &rest.Config{
			Host:        "https://managed.example:6443",
			BearerToken: "token",
			TLSClientConfig: rest.TLSClientConfig{
				CAData: pki.caPEM,
			},
			Proxy: func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.example:3128") },
		}
	}
	tests := []struct {
		name           string
		base           *rest.Config
		cluster        string
		opts           ClusterOptions
		wantHost       string
		wantCA         []byte
		wantServerName string
		wantInsecure   bool
		wantErr        string
	}{
		{
			name: "defaults", base: base(), cluster: "cluster1",
			wantHost: "https://cluster1:443", wantCA: pki.caPEM, wantServerName: DefaultAPIServerName,
		},
		{
			name: "CA and server name given", base: base(), cluster: "cluster1",
			opts:     ClusterOptions{CAData: managedCA, ServerName: "localhost"},
			wantHost: "https://cluster1:443", wantCA: managedCA, wantServerName: "localhost",
		},
		{
			name: "base server name kept",
			base: func() *rest.Config { c := base(); c.ServerName = "api.managed.example"; return c }(), cluster: "cluster1",
			wantHost: "https://cluster1:443", wantCA: pki.caPEM, wantServerName: "api.managed.example",
		},
		{
			name: "address", base: base(), cluster: "cluster1", opts: ClusterOptions{Address: "cluster1:6443"},
			wantHost: "https://cluster1:6443", wantCA: pki.caPEM, wantServerName: DefaultAPIServerName,
		},
		{
			name: "insecure drops the CA", base: base(), cluster: "cluster1", opts: ClusterOptions{Insecure: true},
			wantHost: "https://cluster1:443", wantInsecure: true,
		},
		{name: "insecure with CA", base: base(), cluster: "cluster1", opts: ClusterOptions{Insecure: true, CAData: []byte("x")}, wantErr: "exclude each other"},
		{name: "no cluster", base: base(), wantErr: "cluster name is empty"},
		{name: "no base", cluster: "cluster1", wantErr: "base configuration is nil"},
		{name: "bad address", base: base(), cluster: "cluster1", opts: ClusterOptions{Address: "cluster1"}, wantErr: "invalid address"},
		{
			name: "own transport", cluster: "cluster1", wantErr: "own Transport",
			base: func() *rest.Config { c := base(); c.Transport = http.DefaultTransport; return c }(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			var original *rest.Config
			if tt.base != nil {
				original = rest.CopyConfig(tt.base)
			}
			cfg, err := RESTConfigForCluster(dialer, tt.base, tt.cluster, tt.opts)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cfg.Host).To(Equal(tt.wantHost))
			g.Expect(cfg.CAData).To(Equal(tt.wantCA))
			g.Expect(cfg.ServerName).To(Equal(tt.wantServerName))
			g.Expect(cfg.Insecure).To(Equal(tt.wantInsecure))
			g.Expect(cfg.BearerToken).To(Equal("token"))
			g.Expect(cfg.Dial).NotTo(BeNil())
			g.Expect(cfg.Proxy).To(BeNil())
			// The base configuration is left alone.
			g.Expect(tt.base.Host).To(Equal(original.Host))
			g.Expect(tt.base.Dial).To(BeNil())
			g.Expect(tt.base.CAData).To(Equal(original.CAData))
			// client-go accepts the result.
			_, err = rest.HTTPClientFor(cfg)
			g.Expect(err).NotTo(HaveOccurred())
		})
	}
	g := NewWithT(t)
	_, err = RESTConfigForCluster(nil, base(), "cluster1", ClusterOptions{})
	g.Expect(err).To(MatchError(ContainSubstring("dialer is nil")))
}
