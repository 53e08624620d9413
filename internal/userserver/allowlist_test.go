package userserver

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseAllowlist(t *testing.T) {
	g := NewWithT(t)
	list, err := ParseAllowlist(map[string]string{
		"services": "- namespace: default\n  service: hello\n  port: 8000\n  protocol: http\n- namespace: monitoring\n  service: prometheus\n",
		"more":     "[]",
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list.Len()).To(Equal(2))
	for _, c := range []struct {
		target Target
		want   bool
	}{
		{Target{Proto: "http", Namespace: "default", Name: "hello", Port: 8000}, true},
		{Target{Proto: "https", Namespace: "default", Name: "hello", Port: 8000}, false},
		{Target{Proto: "http", Namespace: "default", Name: "hello", Port: 8001}, false},
		{Target{Proto: "http", Namespace: "other", Name: "hello", Port: 8000}, false},
		// No port or protocol: any.
		{Target{Proto: "https", Namespace: "monitoring", Name: "prometheus", Port: 9091}, true},
		{Target{Proto: "http", Namespace: "monitoring", Name: "prometheus", Port: 80}, true},
	} {
		g.Expect(list.Allows(c.target)).To(Equal(c.want), "%+v", c.target)
	}
	g.Expect(Allowlist{}.Allows(Target{Proto: "http", Namespace: "default", Name: "hello", Port: 8000})).To(BeFalse(), "the zero list allows nothing")
}

func TestParseAllowlistRefusals(t *testing.T) {
	for _, c := range []struct {
		name, data, wantErr string
	}{
		{name: "unknown field", data: "- namespace: a\n  service: b\n  ports: 80\n", wantErr: `key "services": not a YAML list`},
		{name: "not a list", data: "namespace: a\n", wantErr: `key "services": not a YAML list`},
		{name: "missing service", data: "- namespace: a\n", wantErr: `key "services", entry 1: service is required`},
		{name: "bad namespace", data: "- namespace: A\n  service: b\n", wantErr: `invalid namespace "A"`},
		{name: "bad port", data: "- namespace: a\n  service: b\n  port: 70000\n", wantErr: `invalid port 70000`},
		{name: "bad protocol", data: "- namespace: a\n  service: b\n  protocol: grpc\n", wantErr: `invalid protocol "grpc"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := ParseAllowlist(map[string]string{"services": c.data})
			g.Expect(err).To(MatchError(ContainSubstring(c.wantErr)))
		})
	}
}
