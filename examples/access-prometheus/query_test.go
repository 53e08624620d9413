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
	var err error
	o.Kubeconfig, err = example.WriteKubeconfig(t.TempDir(), srv.URL+"/cluster1", srv.Certificate(), "viewer-token")
	g.Expect(err).NotTo(HaveOccurred())
	o.Timeout = 10 * time.Second

	var out bytes.Buffer
	g.Expect(o.Run(t.Context(), &out)).To(Succeed())
	g.Expect(out.String()).To(MatchRegexp(`^query up at \S+ \(` + srv.URL + `/cluster1/api/v1/namespaces/cpx-test/services/http:prometheus:9090/proxy-service\)\n` +
		`up\{cluster="cluster1", instance="localhost:9090", job="prometheus"\} => 1 @\[1700000000\]\n$`))

	out.Reset()
	o.Query = "absent_metric"
	g.Expect(o.Run(t.Context(), &out)).To(Succeed())
	g.Expect(out.String()).To(HaveSuffix("\nno series matched\n"))

	o.Query = "sum(up)"
	g.Expect(o.Run(t.Context(), &out)).To(MatchError(ContainSubstring("bad_data")))
}

func TestOptionsValidate(t *testing.T) {
	g := NewWithT(t)
	o := NewOptions()
	o.Kubeconfig = "cluster1-via-user-server.kubeconfig"
	g.Expect(o.Validate()).To(Succeed())
	// The Prometheus Service's flags are example.UserServerService's,
	// tested there; their errors come first.
	o.Kubeconfig, o.Query, o.Timeout = "", " ", -time.Second
	g.Expect(o.Validate()).To(MatchError("--kubeconfig is required\n--query is required\ninvalid --timeout -1s: must be positive"))
}
