package main

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestServiceURL(t *testing.T) {
	g := NewWithT(t)
	g.Expect(serviceURL("https://198.18.0.1:9092/cluster1", "cpx-test", "hello", "https", 8443, "/")).
		To(Equal("https://198.18.0.1:9092/cluster1/api/v1/namespaces/cpx-test/services/https:hello:8443/proxy-service/"))
	g.Expect(serviceURL("https://user.hub.example.com/cluster2/", "monitoring", "web", "http", 80, "/a/b")).
		To(Equal("https://user.hub.example.com/cluster2/api/v1/namespaces/monitoring/services/http:web:80/proxy-service/a/b"))
}

// writeKubeconfig writes a kubeconfig like `cluster-proxy kubeconfig`'s for
// server (https://<user-server>/<cluster>), trusting srv's certificate.
func writeKubeconfig(t *testing.T, srv *httptest.Server, server string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["c"] = &clientcmdapi.AuthInfo{Token: "viewer-token"}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "c"}
	cfg.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRun(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer viewer-token" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/cluster1/api/v1/namespaces/cpx-test/services/https:hello:8443/proxy-service/greet":
			_, _ = w.Write([]byte("hello from cluster1 over https: GET /greet\n"))
		default:
			http.Error(w, `{"kind":"Status","message":"service cpx-test/hello (https, port 8080) is not exposed by the user-server"}`, http.StatusForbidden)
		}
	}))
	t.Cleanup(srv.Close)
	o := NewOptions()
	o.Kubeconfig = writeKubeconfig(t, srv, srv.URL+"/cluster1")
	o.Path = "/greet"
	o.Timeout = 10 * time.Second

	var out bytes.Buffer
	g.Expect(run(t.Context(), o, &out)).To(Succeed())
	g.Expect(out.String()).To(Equal("GET " + srv.URL + "/cluster1/api/v1/namespaces/cpx-test/services/https:hello:8443/proxy-service/greet\n" +
		"200 OK\nhello from cluster1 over https: GET /greet\n"))

	o.Port = 8080
	out.Reset()
	g.Expect(run(t.Context(), o, &out)).To(MatchError(ContainSubstring("403 Forbidden: " +
		`{"kind":"Status","message":"service cpx-test/hello (https, port 8080) is not exposed by the user-server"}`)))
	g.Expect(out.String()).To(BeEmpty())
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		errs   []string
	}{
		{name: "valid", change: func(*Options) {}},
		{name: "no kubeconfig", change: func(o *Options) { o.Kubeconfig = "" }, errs: []string{"--kubeconfig is required"}},
		{name: "bad names", change: func(o *Options) { o.Namespace, o.Service = "", "Hello" },
			errs: []string{`invalid --namespace ""`, `invalid --service "Hello"`}},
		{name: "bad port and scheme", change: func(o *Options) { o.Port, o.Scheme = 0, "grpc" },
			errs: []string{"invalid --port 0", `invalid --scheme "grpc"`}},
		{name: "relative path", change: func(o *Options) { o.Path = "greet" }, errs: []string{`invalid --path "greet"`}},
		{name: "zero timeout", change: func(o *Options) { o.Timeout = 0 }, errs: []string{"invalid --timeout 0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := NewOptions()
			o.Kubeconfig = "cluster1-via-user-server.kubeconfig"
			tc.change(o)
			err := o.Validate()
			if len(tc.errs) == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			for _, e := range tc.errs {
				g.Expect(err).To(MatchError(ContainSubstring(e)))
			}
		})
	}
}
