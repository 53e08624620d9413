package main

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestOptionsValidate(t *testing.T) {
	valid := func() *Options {
		o := NewOptions()
		o.CAFile, o.CertFile, o.KeyFile = "ca.crt", "tls.crt", "tls.key"
		o.Cluster, o.ManagedKubeconfig = "cluster1", "cluster1.kubeconfig"
		return o
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		errs   []string
	}{
		{name: "valid", change: func(*Options) {}},
		{name: "no port", change: func(o *Options) { o.ProxyServer = "198.18.0.1" }, errs: []string{`invalid --proxy-server "198.18.0.1"`}},
		{name: "nothing given", change: func(o *Options) { *o = *NewOptions() },
			errs: []string{"--ca-cert is required", "--client-cert is required", "--client-key is required", "--managed-kubeconfig is required", "--cluster is required"}},
		{name: "bad cluster", change: func(o *Options) { o.Cluster = "Cluster_1" }, errs: []string{`invalid --cluster "Cluster_1"`}},
		{name: "no server names", change: func(o *Options) { o.ProxyServerName, o.ManagedServerName = "", "" },
			errs: []string{"--proxy-server-name is required", "--managed-server-name is required"}},
		{name: "zero timeout", change: func(o *Options) { o.Timeout = 0 * time.Second }, errs: []string{"invalid --timeout 0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := valid()
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
