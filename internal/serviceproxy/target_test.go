package serviceproxy

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

func headers(proto, namespace, service, port string) http.Header {
	h := http.Header{}
	for name, v := range map[string]string{
		proxyv1alpha1.HeaderProto: proto, proxyv1alpha1.HeaderNamespace: namespace,
		proxyv1alpha1.HeaderService: service, proxyv1alpha1.HeaderPort: port,
	} {
		if v != "-" {
			h.Set(name, v)
		}
	}
	return h
}

func TestResolveTarget(t *testing.T) {
	tests := []struct {
		name       string
		h          http.Header
		wantURL    string
		wantKube   bool
		wantHeader string
		wantReason string
	}{
		{name: "kube-apiserver", h: headers("https", "default", "kubernetes", "443"), wantURL: KubeAPIServerURL, wantKube: true},
		{name: "kube-apiserver, any case, scheme and port", h: headers("http", "Default", "KUBERNETES", "6443"), wantURL: KubeAPIServerURL, wantKube: true},
		{name: "a Service over https", h: headers("https", "monitoring", "prometheus", "9091"), wantURL: "https://prometheus.monitoring.svc:9091"},
		{name: "a Service over http, upper-case scheme", h: headers("HTTP", "ns", "svc", "80"), wantURL: "http://svc.ns.svc:80"},
		{name: "missing proto", h: headers("-", "ns", "svc", "80"), wantHeader: proxyv1alpha1.HeaderProto, wantReason: "missing"},
		{name: "missing namespace", h: headers("http", "-", "svc", "80"), wantHeader: proxyv1alpha1.HeaderNamespace, wantReason: "missing"},
		{name: "missing service", h: headers("http", "ns", "-", "80"), wantHeader: proxyv1alpha1.HeaderService, wantReason: "missing"},
		{name: "missing port", h: headers("http", "ns", "svc", "-"), wantHeader: proxyv1alpha1.HeaderPort, wantReason: "missing"},
		{name: "blank port", h: headers("http", "ns", "svc", " "), wantHeader: proxyv1alpha1.HeaderPort, wantReason: "missing"},
		{name: "unknown scheme", h: headers("ftp", "ns", "svc", "21"), wantHeader: proxyv1alpha1.HeaderProto, wantReason: `"ftp" is not http or https`},
		{name: "namespace with a dot", h: headers("http", "a.b", "svc", "80"), wantHeader: proxyv1alpha1.HeaderNamespace, wantReason: "is not a namespace name"},
		{name: "service with a slash", h: headers("http", "ns", "svc/x", "80"), wantHeader: proxyv1alpha1.HeaderService, wantReason: "is not a Service name"},
		{name: "host injection in service", h: headers("http", "ns", "evil.com:80#", "80"), wantHeader: proxyv1alpha1.HeaderService, wantReason: "is not a Service name"},
		{name: "port zero", h: headers("http", "ns", "svc", "0"), wantHeader: proxyv1alpha1.HeaderPort, wantReason: "is not a port number"},
		{name: "port too large", h: headers("http", "ns", "svc", "65536"), wantHeader: proxyv1alpha1.HeaderPort, wantReason: "is not a port number"},
		{name: "named port", h: headers("http", "ns", "svc", "web"), wantHeader: proxyv1alpha1.HeaderPort, wantReason: "is not a port number"},
		{
			name: "a header given twice",
			h: func() http.Header {
				h := headers("http", "ns", "svc", "80")
				h.Add(proxyv1alpha1.HeaderService, "other")
				return h
			}(),
			wantHeader: proxyv1alpha1.HeaderService, wantReason: "given more than once",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			target, err := ResolveTarget(tt.h)
			if tt.wantHeader != "" {
				var te *TargetError
				g.Expect(errors.As(err, &te)).To(BeTrue(), "error %v", err)
				g.Expect(te.Header).To(Equal(tt.wantHeader))
				g.Expect(te.Reason).To(ContainSubstring(tt.wantReason))
				g.Expect(err.Error()).To(HavePrefix("header " + tt.wantHeader + ": "))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(target.URL.String()).To(Equal(tt.wantURL))
			g.Expect(target.KubeAPIServer).To(Equal(tt.wantKube))
		})
	}
}

// FuzzResolveTarget holds the invariants for any header values: either a
// TargetError naming one of the four headers, or a target whose host is a
// Service DNS name in the cluster (never anything a header could smuggle in).
func FuzzResolveTarget(f *testing.F) {
	f.Add("https", "default", "kubernetes", "443")
	f.Add("http", "monitoring", "prometheus", "9090")
	f.Add("https", "ns", "svc.other.com", "443")
	f.Add("http", "ns\r\nX: y", "svc", "80")
	f.Add("https", "ns", "svc", "+80")
	f.Fuzz(func(t *testing.T, proto, namespace, service, port string) {
		target, err := ResolveTarget(headers(proto, namespace, service, port))
		if err != nil {
			var te *TargetError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TargetError", err)
			}
			switch te.Header {
			case proxyv1alpha1.HeaderProto, proxyv1alpha1.HeaderNamespace, proxyv1alpha1.HeaderService, proxyv1alpha1.HeaderPort:
			default:
				t.Fatalf("error names header %q", te.Header)
			}
			return
		}
		if target.KubeAPIServer {
			if target.URL.String() != KubeAPIServerURL {
				t.Fatalf("kube-apiserver target %s", target.URL)
			}
			return
		}
		if target.URL.Scheme != "http" && target.URL.Scheme != "https" {
			t.Fatalf("scheme %q", target.URL.Scheme)
		}
		host := target.URL.Hostname()
		// Header values arrive trimmed of surrounding white space, and DNS
		// names are case-insensitive: the host is the lower-cased names.
		if want := strings.TrimSpace(service) + "." + strings.TrimSpace(namespace) + ".svc"; host != toLower(want) {
			t.Fatalf("host %q is not %q", host, want)
		}
		if target.URL.Path != "" || target.URL.User != nil || target.URL.RawQuery != "" || target.URL.Fragment != "" {
			t.Fatalf("target %s carries more than scheme and host", target.URL)
		}
	})
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
