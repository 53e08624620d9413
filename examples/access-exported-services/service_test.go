package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/examples/internal/example"
)

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
	var err error
	o.Kubeconfig, err = example.WriteKubeconfig(t.TempDir(), srv.URL+"/cluster1", srv.Certificate(), "viewer-token")
	g.Expect(err).NotTo(HaveOccurred())
	o.Path = "/greet"
	o.Timeout = 10 * time.Second

	var out bytes.Buffer
	g.Expect(o.Run(t.Context(), &out)).To(Succeed())
	g.Expect(out.String()).To(Equal("GET " + srv.URL + "/cluster1/api/v1/namespaces/cpx-test/services/https:hello:8443/proxy-service/greet\n" +
		"200 OK\nhello from cluster1 over https: GET /greet\n"))

	o.Port = 8080
	out.Reset()
	g.Expect(o.Run(t.Context(), &out)).To(MatchError(ContainSubstring("403 Forbidden: " +
		`{"kind":"Status","message":"service cpx-test/hello (https, port 8080) is not exposed by the user-server"}`)))
	g.Expect(out.String()).To(BeEmpty())
}

func TestOptionsValidate(t *testing.T) {
	g := NewWithT(t)
	o := NewOptions()
	o.Kubeconfig = "cluster1-via-user-server.kubeconfig"
	g.Expect(o.Validate()).To(Succeed())
	// The Service's flags are example.UserServerService's, tested there;
	// their errors come first.
	o.Service, o.Path, o.Timeout = "Hello", "greet", 0
	g.Expect(o.Validate()).To(MatchError(And(
		HavePrefix(`invalid --service "Hello": `),
		HaveSuffix("\ninvalid --path \"greet\": must start with /\ninvalid --timeout 0s: must be positive"))))
}
