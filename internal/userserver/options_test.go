package userserver

import (
	"testing"

	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
)

func TestValidateMetricsBindAddress(t *testing.T) {
	for _, tt := range []struct {
		name, flag, wantErr string
	}{
		{name: "default"},
		{name: "off", flag: "--metrics-bind-address=0"},
		{name: "an address", flag: "--metrics-bind-address=127.0.0.1:9100"},
		{name: "a port alone", flag: "--metrics-bind-address=9100", wantErr: `invalid --metrics-bind-address "9100"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := NewOptions()
			fs := pflag.NewFlagSet("user-server", pflag.ContinueOnError)
			o.AddFlags(fs)
			args := []string{
				"--host=proxy-entrypoint.ns.svc", "--proxy-ca-cert=ca.crt", "--proxy-cert=tls.crt", "--proxy-key=tls.key",
				"--server-cert=s.crt", "--server-key=s.key", "--service-proxy-ca-cert=ca.crt",
			}
			if tt.flag != "" {
				args = append(args, tt.flag)
			}
			g.Expect(fs.Parse(args)).To(Succeed())
			o.PodNamespace = "ns"
			if tt.wantErr == "" {
				g.Expect(o.Validate()).To(Succeed())
				return
			}
			g.Expect(o.Validate()).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
	g := NewWithT(t)
	g.Expect(NewOptions().MetricsBindAddress).To(Equal(":8002"), "not the service-proxy's :8001")
}
