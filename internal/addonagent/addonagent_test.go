package addonagent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

func TestOptionsValidate(t *testing.T) {
	valid := func() *Options {
		o := NewOptions()
		o.PodNamespace, o.HubKubeconfig, o.ClusterName = "open-cluster-management-cluster-proxy", "/etc/kubeconfig/kubeconfig", "cluster1"
		return o
	}
	tests := []struct {
		name    string
		change  func(*Options)
		wantErr string
	}{
		{name: "defaults with the required values", change: func(*Options) {}},
		{name: "no POD_NAMESPACE", change: func(o *Options) { o.PodNamespace = "" }, wantErr: "POD_NAMESPACE"},
		{name: "no hub kubeconfig", change: func(o *Options) { o.HubKubeconfig = "" }, wantErr: "--hub-kubeconfig is required"},
		{name: "bad cluster name", change: func(o *Options) { o.ClusterName = "Cluster_1" }, wantErr: `invalid --cluster-name "Cluster_1"`},
		{name: "bad relay port", change: func(o *Options) { o.PortForwardProxyPort = 0 }, wantErr: "--port-forward-proxy-port"},
		{name: "bad relay target port", change: func(o *Options) { o.PortForwardTargetPort = 70000 }, wantErr: "--port-forward-target-port 70000"},
		{name: "bad health address", change: func(o *Options) { o.HealthBindAddress = "8888" }, wantErr: "--health-bind-address"},
		{name: "short lease", change: func(o *Options) { o.LeaseDuration = 0 }, wantErr: "--lease-duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := valid()
			tt.change(o)
			err := o.Validate()
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestHealthFailsWhenCertificatesChange(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	cert := filepath.Join(dir, "tls.crt")
	g.Expect(os.WriteFile(cert, []byte("one"), 0o600)).To(Succeed())
	unchanged, err := FilesUnchanged(cert)
	g.Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewServer(&HealthServer{Checks: map[string]func(context.Context) error{"certificates": unchanged}})
	defer srv.Close()

	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/healthz")
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		body := make([]byte, 512)
		n, _ := resp.Body.Read(body)
		return resp.StatusCode, string(body[:n])
	}
	code, _ := get()
	g.Expect(code).To(Equal(http.StatusOK))

	g.Expect(os.WriteFile(cert, []byte("two"), 0o600)).To(Succeed())
	code, body := get()
	g.Expect(code).To(Equal(http.StatusInternalServerError))
	g.Expect(body).To(ContainSubstring("certificates: " + cert + " changed since the agent started"))

	_, err = FilesUnchanged(filepath.Join(dir, "missing"))
	g.Expect(err).To(MatchError(ContainSubstring("failed to read")))
}

func TestReadyCheck(t *testing.T) {
	g := NewWithT(t)
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	check := ReadyCheck(srv.Client(), srv.URL+"/readyz")
	g.Expect(check(t.Context())).To(Succeed())
	status = http.StatusInternalServerError
	g.Expect(check(t.Context())).To(MatchError(ContainSubstring("proxy-agent not ready")))
	srv.Close()
	g.Expect(check(t.Context())).To(MatchError(ContainSubstring("unreachable")))
}
