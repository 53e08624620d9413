package example

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// valid is the local environment's hello Service over HTTPS.
func valid() *UserServerService {
	return &UserServerService{Kubeconfig: "cluster1-via-user-server.kubeconfig", Namespace: "cpx-test", Service: "hello", Port: 8443, Scheme: "https", Timeout: time.Second}
}

func TestServiceURL(t *testing.T) {
	g := NewWithT(t)
	g.Expect(valid().ServiceURL("https://198.18.0.1:9092/cluster1")).
		To(Equal("https://198.18.0.1:9092/cluster1/api/v1/namespaces/cpx-test/services/https:hello:8443/proxy-service"))
	s := &UserServerService{Namespace: "monitoring", Service: "prometheus", Port: 9090, Scheme: "http"}
	g.Expect(s.ServiceURL("https://user.hub.example.com/cluster2/")).
		To(Equal("https://user.hub.example.com/cluster2/api/v1/namespaces/monitoring/services/http:prometheus:9090/proxy-service"))
}

func TestValidate(t *testing.T) {
	g := NewWithT(t)
	g.Expect(valid().Validate()).To(Succeed())
	g.Expect(valid().Validate(nil)).To(Succeed())

	// Every error, in flag order, the caller's before --timeout's.
	err := (&UserServerService{}).Validate(nil, errors.New("--query is required"))
	g.Expect(err).To(HaveOccurred())
	g.Expect(strings.Split(err.Error(), "\n")).To(HaveExactElements(
		"--kubeconfig is required",
		HavePrefix(`invalid --namespace "": `),
		HavePrefix(`invalid --service "": `),
		"invalid --port 0: must be 1-65535",
		`invalid --scheme "": must be http or https`,
		"--query is required",
		"invalid --timeout 0s: must be positive"))

	s := valid()
	s.Namespace, s.Service, s.Port, s.Scheme, s.Timeout = "Cpx", "prometheus_k8s", 65536, "grpc", -time.Second
	err = s.Validate()
	g.Expect(err).To(HaveOccurred())
	g.Expect(strings.Split(err.Error(), "\n")).To(HaveExactElements(
		HavePrefix(`invalid --namespace "Cpx": `),
		HavePrefix(`invalid --service "prometheus_k8s": `),
		"invalid --port 65536: must be 1-65535",
		`invalid --scheme "grpc": must be http or https`,
		"invalid --timeout -1s: must be positive"))
}

func TestClient(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer viewer-token" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	s := valid()
	var err error
	s.Kubeconfig, err = WriteKubeconfig(t.TempDir(), srv.URL+"/cluster1", srv.Certificate(), "viewer-token")
	g.Expect(err).NotTo(HaveOccurred())

	url, httpClient, err := s.Client()
	g.Expect(err).NotTo(HaveOccurred())
	defer httpClient.CloseIdleConnections()
	g.Expect(url).To(Equal(srv.URL + "/cluster1/api/v1/namespaces/cpx-test/services/https:hello:8443/proxy-service"))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/greet", nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := httpClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s", body)
	g.Expect(string(body)).To(Equal("/cluster1/api/v1/namespaces/cpx-test/services/https:hello:8443/proxy-service/greet"))

	s.Kubeconfig = "/nonexistent/kubeconfig"
	_, _, err = s.Client()
	g.Expect(err).To(MatchError(ContainSubstring("failed to load --kubeconfig")))
}
