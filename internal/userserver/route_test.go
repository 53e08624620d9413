package userserver

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseRoute(t *testing.T) {
	for _, c := range []struct {
		name, path string
		want       Route
		wantErr    string
	}{
		{name: "kube API path", path: "/cluster1/api/v1/namespaces/default/pods",
			want: Route{Cluster: "cluster1", Target: kubeAPIServer, Path: "/api/v1/namespaces/default/pods"}},
		{name: "cluster root", path: "/cluster1", want: Route{Cluster: "cluster1", Target: kubeAPIServer, Path: "/"}},
		{name: "cluster root with slash", path: "/cluster1/", want: Route{Cluster: "cluster1", Target: kubeAPIServer, Path: "/"}},
		{name: "kube's own service proxy stays a kube API path", path: "/c/api/v1/namespaces/ns/services/web:80/proxy/x",
			want: Route{Cluster: "c", Target: kubeAPIServer, Path: "/api/v1/namespaces/ns/services/web:80/proxy/x"}},
		{name: "escaped characters stay escaped", path: "/c/apis/x/v1/things/a%2Fb",
			want: Route{Cluster: "c", Target: kubeAPIServer, Path: "/apis/x/v1/things/a%2Fb"}},
		{name: "service, defaults https:443", path: "/c/api/v1/namespaces/ns/services/web/proxy-service/metrics",
			want: Route{Cluster: "c", Service: true, Path: "/metrics", Target: Target{Proto: "https", Namespace: "ns", Name: "web", Port: 443}}},
		{name: "service with proto, http defaults to 80", path: "/c/api/v1/namespaces/ns/services/http:web/proxy-service/",
			want: Route{Cluster: "c", Service: true, Path: "/", Target: Target{Proto: "http", Namespace: "ns", Name: "web", Port: 80}}},
		{name: "service with port", path: "/c/api/v1/namespaces/ns/services/web:8080/proxy-service/a/b",
			want: Route{Cluster: "c", Service: true, Path: "/a/b", Target: Target{Proto: "https", Namespace: "ns", Name: "web", Port: 8080}}},
		{name: "service with proto and port", path: "/c/api/v1/namespaces/ns/services/http:web:8000/proxy-service",
			want: Route{Cluster: "c", Service: true, Path: "/", Target: Target{Proto: "http", Namespace: "ns", Name: "web", Port: 8000}}},
		{name: "no cluster", path: "/", wantErr: `the path "/" names no cluster`},
		{name: "empty", path: "", wantErr: `does not start with /`},
		{name: "invalid cluster", path: "/Cluster_1/api", wantErr: `names an invalid cluster "Cluster_1"`},
		{name: "bad protocol", path: "/c/api/v1/namespaces/ns/services/ftp:web:21/proxy-service/", wantErr: `protocol "ftp" is neither http nor https`},
		{name: "bad port", path: "/c/api/v1/namespaces/ns/services/web:99999/proxy-service/", wantErr: `invalid port "99999"`},
		{name: "too many colons", path: "/c/api/v1/namespaces/ns/services/a:b:1:2/proxy-service/", wantErr: `expected [proto:]name[:port]`},
		{name: "bad namespace", path: "/c/api/v1/namespaces/NS/services/web/proxy-service/", wantErr: `invalid namespace "NS"`},
		{name: "bad service name", path: "/c/api/v1/namespaces/ns/services/Web/proxy-service/", wantErr: `name "Web"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseRoute(c.path)
			if c.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(c.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(c.want))
		})
	}
}

func TestTargetHeaders(t *testing.T) {
	g := NewWithT(t)
	g.Expect(kubeAPIServer.Headers()).To(Equal(map[string]string{
		"Cluster-Proxy-Proto": "https", "Cluster-Proxy-Namespace": "default", "Cluster-Proxy-Service": "kubernetes", "Cluster-Proxy-Port": "443",
	}))
}

// FuzzParseRoute: any path either parses into a route whose cluster is the
// first segment and whose path starts with "/", or fails with an error
// that quotes the path.
func FuzzParseRoute(f *testing.F) {
	for _, seed := range []string{
		"/cluster1/api/v1/namespaces/default/pods", "/c/api/v1/namespaces/ns/services/http:web:8000/proxy-service/x",
		"/c/api/v1/namespaces/ns/services/:::/proxy-service/", "//", "/c//", "/c/api/v1/namespaces//services//proxy-service",
		"/c/%2F", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := ParseRoute(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "path") {
				t.Fatalf("error %q does not name the path %q", err, path)
			}
			return
		}
		if !strings.HasPrefix(path, "/"+r.Cluster) || !strings.HasPrefix(r.Path, "/") {
			t.Fatalf("ParseRoute(%q) = %+v", path, r)
		}
		if r.Target.Port < 1 || r.Target.Port > 65535 || (r.Target.Proto != "http" && r.Target.Proto != "https") {
			t.Fatalf("ParseRoute(%q) gave an invalid target %+v", path, r.Target)
		}
		if !r.Service && r.Target != kubeAPIServer {
			t.Fatalf("ParseRoute(%q): a kube API route must target the kube-apiserver, got %+v", path, r.Target)
		}
	})
}
