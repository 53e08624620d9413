package addonmanager

import (
	"testing"

	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"

	"open-cluster-management.io/cluster-proxy/internal/command"
)

func TestOptionsDefaultsAndFlags(t *testing.T) {
	g := NewWithT(t)
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)

	// The existing addon's flag names and defaults.
	for flag, def := range map[string]string{
		"metrics-bind-address":      ":58080",
		"health-probe-bind-address": ":58081",
		"leader-elect":              "false",
		"signer-secret-namespace":   "default",
		"signer-secret-name":        "cluster-proxy-signer",
		"enable-kube-api-proxy":     "true",
		"enable-service-proxy":      "true",
		"enable-network-policies":   "false",
		"agent-install-namespace":   "open-cluster-management-cluster-proxy",
		"image-pull-policy":         "IfNotPresent",
	} {
		f := fs.Lookup(flag)
		g.Expect(f).NotTo(BeNil(), "flag --%s", flag)
		g.Expect(f.DefValue).To(Equal(def), "default of --%s", flag)
	}
	// Ours: the hub chart's enableImpersonation.
	g.Expect(fs.Lookup("enable-impersonation").DefValue).To(Equal("true"))
	g.Expect(fs.Lookup("agent-image-name")).NotTo(BeNil())
	g.Expect(fs.Lookup("feature-gates")).NotTo(BeNil())

	g.Expect(fs.Parse([]string{"--feature-gates=ClusterProfile=true", "--leader-elect"})).To(Succeed())
	g.Expect(o.FeatureGates.Enabled(FeatureClusterProfile)).To(BeTrue())
	g.Expect(o.LeaderElect).To(BeTrue())
	g.Expect(fs.Parse([]string{"--feature-gates=NoSuchGate=true"})).To(MatchError(ContainSubstring("NoSuchGate")))
}

func TestOptionsComplete(t *testing.T) {
	g := NewWithT(t)
	t.Setenv(command.PodNamespaceEnv, "from-env")
	o := NewOptions()
	g.Expect(o.Complete()).To(Succeed())
	g.Expect(o.PodNamespace).To(Equal("from-env"))
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Options)
		wantErr []string
	}{
		{name: "defaults with a namespace", change: func(*Options) {}},
		{name: "disabled endpoints", change: func(o *Options) { o.MetricsBindAddress, o.HealthProbeBindAddress = "0", "0" }},
		{name: "missing POD_NAMESPACE", change: func(o *Options) { o.PodNamespace = "" }, wantErr: []string{"POD_NAMESPACE must be set"}},
		{name: "bad POD_NAMESPACE", change: func(o *Options) { o.PodNamespace = "Bad_NS" }, wantErr: []string{`invalid POD_NAMESPACE "Bad_NS"`}},
		{name: "bad metrics address", change: func(o *Options) { o.MetricsBindAddress = "58080" }, wantErr: []string{`invalid --metrics-bind-address "58080"`}},
		{name: "bad probe address", change: func(o *Options) { o.HealthProbeBindAddress = "localhost" }, wantErr: []string{"--health-probe-bind-address"}},
		{name: "bad signer namespace", change: func(o *Options) { o.SignerSecretNamespace = "" }, wantErr: []string{"--signer-secret-namespace"}},
		{name: "bad signer name", change: func(o *Options) { o.SignerSecretName = "Signer!" }, wantErr: []string{`invalid --signer-secret-name "Signer!"`}},
		{name: "bad agent namespace", change: func(o *Options) { o.AgentInstallNamespace = "a.b" }, wantErr: []string{"--agent-install-namespace"}},
		{name: "empty agent image", change: func(o *Options) { o.AgentImageName = " " }, wantErr: []string{"--agent-image-name must not be empty"}},
		{name: "bad pull policy", change: func(o *Options) { o.ImagePullPolicy = "Sometimes" }, wantErr: []string{`invalid --image-pull-policy "Sometimes": must be Always, IfNotPresent or Never`}},
		{
			name: "ClusterProfile on",
			change: func(o *Options) {
				if err := o.FeatureGates.Set("ClusterProfile=true"); err != nil {
					panic(err)
				}
			},
		},
		{
			name:    "every problem is reported at once",
			change:  func(o *Options) { o.PodNamespace, o.ImagePullPolicy = "", "x" },
			wantErr: []string{"POD_NAMESPACE", "--image-pull-policy"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := NewOptions()
			o.PodNamespace = "open-cluster-management-addon"
			tt.change(o)
			err := o.Validate()
			if len(tt.wantErr) == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred())
			for _, s := range tt.wantErr {
				g.Expect(err.Error()).To(ContainSubstring(s))
			}
		})
	}
}
