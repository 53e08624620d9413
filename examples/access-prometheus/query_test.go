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

func TestPrometheusAddress(t *testing.T) {
	g := NewWithT(t)
	g.Expect(prometheusAddress("https://198.18.0.1:9092/cluster1/", "cpx-test", "prometheus", "http", 9090)).
		To(Equal("https://198.18.0.1:9092/cluster1/api/v1/namespaces/cpx-test/services/http:prometheus:9090/proxy-service"))
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
	const queryPath = "/cluster1/api/v1/namespaces/cpx-test/services/http:prometheus:9090/proxy-service/api/v1/query"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer viewer-token" || r.URL.Path != queryPath {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.Form.Get("query") {
		case "up":
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[` +
				`{"metric":{"__name__":"up","cluster":"cluster1","instance":"localhost:9090","job":"prometheus"},"value":[1700000000,"1"]}]}}`))
		case "absent_metric":
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
		default:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": not supported"}`))
		}
	}))
	t.Cleanup(srv.Close)
	o := NewOptions()
	o.Kubeconfig = writeKubeconfig(t, srv, srv.URL+"/cluster1")
	o.Timeout = 10 * time.Second

	var out bytes.Buffer
	g.Expect(run(t.Context(), o, &out)).To(Succeed())
	g.Expect(out.String()).To(MatchRegexp(`^query up at \S+ \(` + srv.URL + `/cluster1/api/v1/namespaces/cpx-test/services/http:prometheus:9090/proxy-service\)\n` +
		`up\{cluster="cluster1", instance="localhost:9090", job="prometheus"\} => 1 @\[1700000000\]\n$`))

	out.Reset()
	o.Query = "absent_metric"
	g.Expect(run(t.Context(), o, &out)).To(Succeed())
	g.Expect(out.String()).To(HaveSuffix("\nno series matched\n"))

	o.Query = "sum(up)"
	g.Expect(run(t.Context(), o, &out)).To(MatchError(ContainSubstring("bad_data")))
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		errs   []string
	}{
		{name: "valid", change: func(*Options) {}},
		{name: "nothing", change: func(o *Options) { *o = Options{} },
			errs: []string{"--kubeconfig is required", `invalid --namespace ""`, `invalid --service ""`, "invalid --port 0", `invalid --scheme ""`, "--query is required", "invalid --timeout 0s"}},
		{name: "bad service", change: func(o *Options) { o.Service = "prometheus_k8s" }, errs: []string{`invalid --service "prometheus_k8s"`}},
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
