package clusterkubeconfig

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"
)

func TestBuild(t *testing.T) {
	g := NewWithT(t)
	data, err := clientcmd.Write(*Build("cluster1", "https://user.example:9092/", []byte("ca"), "tok"))
	g.Expect(err).NotTo(HaveOccurred())
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Host).To(Equal("https://user.example:9092/cluster1"))
	g.Expect(cfg.BearerToken).To(Equal("tok"))
	g.Expect(cfg.CAData).To(Equal([]byte("ca")))
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name    string
		change  func(*Options)
		wantErr string
	}{
		{name: "valid", change: func(o *Options) { o.Cluster = "cluster1" }},
		{name: "no cluster", change: func(*Options) {}, wantErr: "--cluster is required"},
		{name: "bad cluster", change: func(o *Options) { o.Cluster = "Cluster_1" }, wantErr: `invalid --cluster "Cluster_1"`},
		{name: "http server", change: func(o *Options) { o.Cluster, o.Server = "c", "http://x:9092" }, wantErr: `invalid --server "http://x:9092"`},
		{name: "server with a path", change: func(o *Options) { o.Cluster, o.Server = "c", "https://x/c" }, wantErr: "no path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			o := NewOptions()
			c.change(o)
			err := o.Validate()
			if c.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(c.wantErr)))
		})
	}
}
